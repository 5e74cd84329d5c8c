"""How late the event loop runs: stalls measured while probe attempts are timed.

A phase is timed with ``perf_counter_ns`` around an ``await``. When the network event it waits
for arrives while the loop is busy elsewhere (a TLS handshake's crypto for another attempt, an
import, rendering, a lab server in the same process, or the whole process waiting for a CPU), the
callback runs late and the phase is billed for the wait. The figures cannot tell; the loop can.

:class:`LoopLagMonitor` schedules a callback every ``interval`` and records how late it runs.
A callback due at ``t`` that runs at ``t + d`` means the loop ran nothing new for ``d``: a stall
``(t, t + d)``. Attempts open a :class:`LagWindow` over the span their clocks run; every stall
that overlaps the window raises its peak, which the attempt reports as ``loop_lag_ms``.

Resolution and cost: a stall is seen to within one interval (1 ms by default); a stall shorter
than the interval can fall between two ticks and be seen in part or not at all. The monitor's
own work is one timer callback per tick (a few microseconds, counted in :attr:`cost_ns`) and
the loop iteration that runs it; ``bench/looplag_bench.py`` measures what it adds to a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

#: Seconds between ticks.
DEFAULT_INTERVAL = 0.001
#: Stalls kept in :attr:`LoopLagMonitor.stalls` (the most recent ones).
DEFAULT_CAPACITY = 4096
#: Lateness (ms) below which a tick is not kept as a stall in the buffer: the wake-up latency of
#: a quiet loop (the selector's millisecond rounding, the kernel's scheduling) is of this order.
#: Open windows still see every tick's lateness, however small.
STALL_FLOOR_MS = 0.5


@dataclass(frozen=True, slots=True)
class Stall:
    """The loop ran nothing new from ``start_ns`` (a tick's due time) to ``end_ns``."""

    start_ns: int
    end_ns: int

    @property
    def ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


class LagWindow:
    """The span of one attempt's clocks, and the longest stall seen overlapping it so far."""

    __slots__ = ("_settled", "end_ns", "peak_ns", "start_ns")

    def __init__(self, start_ns: int) -> None:
        self.start_ns = start_ns
        self.end_ns: int | None = None
        self.peak_ns = 0
        self._settled: asyncio.Future[None] | None = None

    @property
    def peak_ms(self) -> float:
        return self.peak_ns / 1e6


class LoopLagMonitor:
    """Measures the running loop's scheduling delay with a chain of timer callbacks.

    Use ``async with LoopLagMonitor() as monitor:`` (or :func:`shared_monitor`, which lets
    concurrent runs on one loop share a single monitor). Then, per attempt::

        window = monitor.open_window()
        ...                                 # the attempt's clocks run
        lag_ms = await monitor.settle(window)  # closes it, waits for the next tick

    Args:
        interval: seconds between ticks.
        capacity: stalls kept in :attr:`stalls`.
        floor_ms: lateness below which a tick is not kept in :attr:`stalls`.
        clock: nanoseconds, monotonic (``time.perf_counter_ns``, the clock phases are timed
            with).
    """

    def __init__(
        self,
        *,
        interval: float = DEFAULT_INTERVAL,
        capacity: int = DEFAULT_CAPACITY,
        floor_ms: float = STALL_FLOOR_MS,
        clock: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive, not {interval}")
        self.interval = interval
        self._interval_ns = round(interval * 1e9)
        self._floor_ns = round(floor_ms * 1e6)
        self._clock = clock
        self.stalls: deque[Stall] = deque(maxlen=capacity)
        #: Ticks run, and nanoseconds spent inside them (the monitor's own cost on the loop).
        self.ticks = 0
        self.cost_ns = 0
        self._open: set[LagWindow] = set()
        self._closing: list[LagWindow] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        """Start ticking on the running loop (no-op when already started)."""
        if self._handle is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(
            self.interval, self._tick, self._clock() + self._interval_ns
        )

    def stop(self) -> None:
        """Stop ticking; windows still waiting for a tick settle with what they have."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._settle_closing()

    async def __aenter__(self) -> LoopLagMonitor:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()

    def open_window(self) -> LagWindow:
        """Start a window now: every stall from here until :meth:`settle` can count."""
        window = LagWindow(self._clock())
        self._open.add(window)
        return window

    def close(self, window: LagWindow) -> None:
        """End ``window`` now (the end of the attempt's clocks); :meth:`settle` gives its lag."""
        if window.end_ns is not None:
            return
        window.end_ns = self._clock()
        self._open.discard(window)
        if self._loop is not None and self._handle is not None:
            window._settled = self._loop.create_future()
            self._closing.append(window)

    async def settle(self, window: LagWindow) -> float | None:
        """Close ``window`` (if still open) and return its loop lag in ms, once known.

        A stall that began before the close is only seen at the tick that ends it, so this
        waits for the next tick (at most about one interval; the window's span is not
        lengthened by the wait). Returns None when the monitor was not running.
        """
        self.close(window)
        if window._settled is None:
            return None
        if not window._settled.done():
            await window._settled
        return window.peak_ms

    def lag_between(self, start_ns: int, end_ns: int) -> float:
        """The longest kept stall (ms) that overlaps ``start_ns..end_ns``; 0 when none."""
        return max(
            (s.ms for s in self.stalls if s.start_ns < end_ns and s.end_ns > start_ns),
            default=0.0,
        )

    def _tick(self, due_ns: int) -> None:
        now = self._clock()
        late = max(0, now - due_ns)
        self.ticks += 1
        for window in self._open:
            if late > window.peak_ns:
                window.peak_ns = late
        for window in self._closing:
            # Closed before this tick ran: the stall counts if it began before the close.
            assert window.end_ns is not None
            if due_ns < window.end_ns and late > window.peak_ns:
                window.peak_ns = late
        self._settle_closing()
        if late >= self._floor_ns:
            self.stalls.append(Stall(due_ns, now))
        assert self._loop is not None
        self._handle = self._loop.call_later(self.interval, self._tick, now + self._interval_ns)
        self.cost_ns += self._clock() - now

    def _settle_closing(self) -> None:
        closing, self._closing = self._closing, []
        for window in closing:
            if window._settled is not None and not window._settled.done():
                window._settled.set_result(None)


_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[LoopLagMonitor, list[int]]] = (
    weakref.WeakKeyDictionary()
)


def acquire_shared_monitor() -> LoopLagMonitor:
    """The running loop's monitor, started on first use; give it back with
    :func:`release_shared_monitor`. Concurrent probe runs on one loop (``serve``'s scrapes)
    share it, so they pay for one monitor."""
    loop = asyncio.get_running_loop()
    entry = _shared.get(loop)
    if entry is None:
        entry = (LoopLagMonitor(), [0])
        _shared[loop] = entry
    monitor, users = entry
    users[0] += 1
    monitor.start()
    return monitor


def release_shared_monitor(monitor: LoopLagMonitor) -> None:
    """Stop the shared monitor when its last user gives it back."""
    for loop, (shared, users) in list(_shared.items()):
        if shared is monitor:
            users[0] -= 1
            if users[0] == 0:
                monitor.stop()
                del _shared[loop]
            return
    monitor.stop()


@contextlib.asynccontextmanager
async def shared_monitor() -> AsyncIterator[LoopLagMonitor]:
    """``async with`` form of :func:`acquire_shared_monitor`."""
    monitor = acquire_shared_monitor()
    try:
        yield monitor
    finally:
        release_shared_monitor(monitor)


__all__ = [
    "LagWindow",
    "LoopLagMonitor",
    "Stall",
    "acquire_shared_monitor",
    "release_shared_monitor",
    "shared_monitor",
]
