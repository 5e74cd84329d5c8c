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

On a loop made by :func:`new_event_loop` (every loop the CLI runs), the monitor needs no ticks:
the loop's selector (:class:`BusySelector`) records each stretch the loop spent running
callbacks between two waits, and each wait that the kernel ended later than its timeout asked
(the process did not get a CPU in time). Those are exactly the delays an answer arriving from the
network can suffer before its callback runs. Ticks cannot tell them from the selector's own
millisecond rounding of a timer (a quiet loop's tick runs up to 1 ms late without any delay to
I/O), so on such a loop the figures are both finer and cheaper. Other loops (a library user's,
uvloop) fall back to ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import selectors
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


class BusySelector(selectors.DefaultSelector):
    """The platform's default selector, recording when the loop was not waiting in it.

    Between two ``select`` calls the loop runs callbacks: a stretch during which an answer that
    arrives waits. A ``select`` that timed out with nothing ready but returned later than its
    (millisecond-rounded) timeout means the process was not given a CPU in time: an answer would
    have waited as long. Both are passed to ``listener(start_ns, end_ns)``, with the time the
    recording itself took added to :attr:`cost_ns`.
    """

    def __init__(self, clock: Callable[[], int] = time.perf_counter_ns) -> None:
        super().__init__()
        self._clock = clock
        #: When the loop came back from its last wait (None before the first one).
        self.busy_since: int | None = None
        self.listener: Callable[[int, int], None] | None = None
        self.cost_ns = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        listener = self.listener
        entered = self._clock()
        if listener is not None and self.busy_since is not None and entered > self.busy_since:
            listener(self.busy_since, entered)
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(timeout)
        returned = self._clock()
        self.busy_since = returned
        if listener is not None:
            if not ready and timeout is not None and timeout > 0:
                # The selectors round a timeout up to whole milliseconds (epoll, poll).
                due = entered + math.ceil(timeout * 1e3) * 1_000_000
                if returned > due:
                    listener(due, returned)
            self.cost_ns += self._clock() - returned
        return ready


_busy_selectors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BusySelector] = (
    weakref.WeakKeyDictionary()
)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new selector event loop whose waits and busy stretches a :class:`LoopLagMonitor` sees
    directly (no ticks). Use it where mpnet makes its own loop (the CLI)."""
    selector = BusySelector()
    loop = asyncio.SelectorEventLoop(selector)
    _busy_selectors[loop] = selector
    return loop


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
        self._tick_cost_ns = 0
        self._open: set[LagWindow] = set()
        self._closing: list[LagWindow] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        #: The loop's :class:`BusySelector` while this monitor listens to it (no ticks then).
        self._selector: BusySelector | None = None

    @property
    def running(self) -> bool:
        return self._handle is not None or self._selector is not None

    @property
    def cost_ns(self) -> int:
        """Nanoseconds the monitor's own work took on the loop (ticks, or the selector's
        recording)."""
        selector_cost = self._selector.cost_ns if self._selector is not None else 0
        return self._tick_cost_ns + selector_cost

    def start(self) -> None:
        """Start watching the running loop (no-op when already started): through its
        :class:`BusySelector` when it has one that no other monitor listens to, else with
        ticks."""
        if self.running:
            return
        self._loop = asyncio.get_running_loop()
        selector = _busy_selectors.get(self._loop)
        # The selector's clock is perf_counter_ns: a monitor on another clock (tests) ticks.
        if (
            selector is not None
            and selector.listener is None
            and self._clock is time.perf_counter_ns
        ):
            selector.listener = self._observe
            self._selector = selector
            return
        self._handle = self._loop.call_later(
            self.interval, self._tick, self._clock() + self._interval_ns
        )

    def stop(self) -> None:
        """Stop watching; windows still waiting for a tick settle with what they have."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._selector is not None:
            self._tick_cost_ns += self._selector.cost_ns
            self._selector.cost_ns = 0
            self._selector.listener = None
            self._selector = None
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
        if self._selector is not None and self._loop is not None:
            # The stretch the loop is in now, up to the close: callbacks that ran before the
            # one closing the window (an answer that ended it waited for them).
            since = self._selector.busy_since
            if since is not None:
                self._observe_in(window, since, window.end_ns)
            window._settled = self._loop.create_future()
            window._settled.set_result(None)
        elif self._loop is not None and self._handle is not None:
            window._settled = self._loop.create_future()
            self._closing.append(window)

    async def settle(self, window: LagWindow) -> float | None:
        """Close ``window`` (if still open) and return its loop lag in ms, once known.

        With ticks, a stall that began before the close is only seen at the tick that ends
        it, so this waits for the next tick (at most about one interval; the window's span is not
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
        self._tick_cost_ns += self._clock() - now

    def _observe(self, start_ns: int, end_ns: int) -> None:
        """The loop could not notice an answer from ``start_ns`` to ``end_ns``
        (:class:`BusySelector`'s listener)."""
        for window in self._open:
            self._observe_in(window, start_ns, end_ns)
        if end_ns - start_ns >= self._floor_ns:
            self.stalls.append(Stall(start_ns, end_ns))

    @staticmethod
    def _observe_in(window: LagWindow, start_ns: int, end_ns: int) -> None:
        # Only the part inside the window can delay what the window waits for.
        stop = end_ns if window.end_ns is None else min(end_ns, window.end_ns)
        overlap = stop - max(start_ns, window.start_ns)
        if overlap > window.peak_ns:
            window.peak_ns = overlap

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
    "BusySelector",
    "LagWindow",
    "LoopLagMonitor",
    "Stall",
    "acquire_shared_monitor",
    "new_event_loop",
    "release_shared_monitor",
    "shared_monitor",
]
