"""Admission of scrapes to ``mpnet serve``'s probes: a few run at once, a few more wait, the
rest are refused at once.

Every probe costs sockets, TLS handshakes and CPU on the exporter's machine. Without a bound, a
burst of scrapes (many targets, a short interval, a retrying client) slows every probe until all
of them overrun their scrape timeout, and each one's memory is held the whole time. With
:class:`ProbeSlots`, at most ``limit`` probes run; up to ``queue`` more scrapes wait their turn,
first come first served; a scrape that finds the queue full is shed (``503``) without waiting,
and one that waits longer than its patience is shed too. A shed scrape is the exporter saying
it is overloaded, not a probe result: nothing about the exchange is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
from collections import deque

#: Probes each CPU may run at once by default: a probe mostly waits on the network, but its TLS
#: handshakes and the exporter's own work are CPU time.
PROBES_PER_CPU = 4


class Shed(enum.StrEnum):
    """Why a scrape was refused (the ``reason`` label of the shed counter)."""

    QUEUE_FULL = "queue_full"
    QUEUE_TIMEOUT = "queue_timeout"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_max_probes() -> int:
    """The default limit of concurrent probes: :data:`PROBES_PER_CPU` per usable CPU."""
    return PROBES_PER_CPU * usable_cpus()


class ProbeSlots:
    """At most ``limit`` holders at once, at most ``queue`` waiting, first come first served.

    Use :meth:`acquire`, and :meth:`release` exactly once after each successful acquire.

    Args:
        limit: probes that may run at once (at least 1).
        queue: scrapes that may wait for a slot (0: refuse whenever every slot is taken).

    Raises:
        ValueError: ``limit`` below 1 or ``queue`` below 0.
    """

    def __init__(self, limit: int, queue: int) -> None:
        if limit < 1:
            raise ValueError(f"the probe limit must be at least 1, not {limit}")
        if queue < 0:
            raise ValueError(f"the queue length must be 0 or more, not {queue}")
        self.limit = limit
        self.queue = queue
        self._running = 0
        # A waiter's future is resolved when a leaving holder hands its slot over.
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def running(self) -> int:
        """Slots taken now."""
        return self._running

    @property
    def waiting(self) -> int:
        """Scrapes waiting for a slot now."""
        return len(self._waiters)

    @property
    def free(self) -> bool:
        """True when :meth:`acquire` would take a slot without waiting."""
        return self._running < self.limit and not self._waiters

    async def acquire(self, patience: float) -> Shed | None:
        """Take a slot, waiting at most ``patience`` seconds behind earlier waiters.

        Returns:
            None when the caller holds a slot (and must :meth:`release` it), else why not.
        """
        if self.free:
            self._running += 1
            return None
        if len(self._waiters) >= self.queue:
            return Shed.QUEUE_FULL
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(max(0.0, patience)):
                await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed over just as the patience ran out: keep it.
                return None
            self._forget(waiter)
            return Shed.QUEUE_TIMEOUT
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # Cancelled just after a slot was handed over: pass it on.
                self.release()
            else:
                self._forget(waiter)
            raise
        return None

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        waiter.cancel()
        # release() may already have dropped it (it skips cancelled waiters).
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def release(self) -> None:
        """Give a slot back: to the longest waiter, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                # Handed over: the number of slots taken does not change.
                waiter.set_result(None)
                return
        if self._running <= 0:
            raise RuntimeError("release() without a slot taken")
        self._running -= 1


__all__ = ["PROBES_PER_CPU", "ProbeSlots", "Shed", "default_max_probes", "usable_cpus"]
