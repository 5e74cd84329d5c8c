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
the loop's selector (:class:`BusySelector`) and three of the loop's hooks record each wait of
something the loop had to run (an answer that arrived while callbacks ran, from the kernel's
arrival stamp; a queued callback; the process runnable without a CPU), and bill it to the
attempt whose work waited (:data:`attempt_window`). An attempt's own work, with nothing waiting,
is no stall. Ticks cannot tell waits from work, nor from the selector's own millisecond rounding
of a timer (a quiet loop's tick runs up to 1 ms late without any delay to I/O), so on such a loop
the figures are both finer and cheaper. Other loops (a library user's, uvloop) fall back to ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import os
import selectors
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from mpnet.net.stamps import arrival_ns

#: Seconds between ticks.
DEFAULT_INTERVAL = 0.001
#: Stalls kept in :attr:`LoopLagMonitor.stalls` (the most recent ones).
DEFAULT_CAPACITY = 4096
#: Lateness (ms) below which a tick is not kept as a stall in the buffer: the wake-up latency of
#: a quiet loop (the selector's millisecond rounding, the kernel's scheduling) is of this order.
#: Open windows still see every tick's lateness, however small.
STALL_FLOOR_MS = 0.5


#: A stretch shorter than this delayed nothing worth a figure; the selector does not check it.
MIN_STALL_NS = 50_000
_SCHEDSTAT = "/proc/thread-self/schedstat"

#: The lag window of the attempt whose work runs in this context: the engine sets it around an
#: attempt, and every callback and task that works for the attempt (its connection's
#: transports, its tasks) inherits it, so a stall is billed to the attempt whose work waited.
attempt_window: contextvars.ContextVar[LagWindow | None] = contextvars.ContextVar(
    "mpnet_attempt_window", default=None
)

#: ``listener(start_ns, end_ns, owner)``: something waited from start to end; ``owner`` is the
#: window of the attempt it worked for, None when that cannot be told (it counts for all).
StallListener = Callable[[int, int, "LagWindow | None"], None]


def _run_delay_reader() -> Callable[[], int] | None:
    """Nanoseconds the calling thread has spent runnable but waiting for a CPU, read from
    ``/proc/thread-self/schedstat`` (Linux), or None where the kernel does not say."""
    try:
        fd = os.open(_SCHEDSTAT, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None

    def read() -> int:
        return int(os.pread(fd, 64, 0).split()[1])

    try:
        read()
    except (OSError, IndexError, ValueError):
        os.close(fd)
        return None
    weakref.finalize(read, os.close, fd)
    return read


def _owner(handle: object) -> LagWindow | None:
    """The attempt window in the context a callback runs in (None: no attempt's, or unknown)."""
    context = getattr(handle, "_context", None)
    if isinstance(context, contextvars.Context):
        return context.get(attempt_window)
    return None


def _key_owner(key: selectors.SelectorKey, events: int) -> LagWindow | None:
    # asyncio registers (reader handle, writer handle) as the key's data.
    data = key.data
    if not isinstance(data, tuple) or len(data) != 2:
        return None
    return _owner(data[0] if events & selectors.EVENT_READ else data[1])


class BusySelector(selectors.DefaultSelector):
    """The platform's default selector, recording when something the loop had to run waited.

    Waiting is what can be billed to a phase: an answer from the network that the loop noticed
    late, or a callback (a task woken by an answer) that ran late. Between two ``select`` calls
    the loop runs callbacks; a stretch of that is a stall only for what waited in it:

    - an answer that arrived during the stretch (a zero-timeout poll at its end finds it ready),
      from the time the kernel stamped it (:mod:`mpnet.net.stamps`), else the stretch's start;
      a socket that became writable, from when the loop began to watch it;
    - a queued callback (a task woken by an answer), from when it was queued to when it ran,
      less the time the callbacks of its own attempt ran in between (:func:`new_event_loop`'s
      loop queues each ``call_soon`` through :meth:`run_queued`);
    - the callbacks of one wait's answers, each after the first waiting for those before it
      (the loop reports through :meth:`waited`).

    An attempt's own work (its TLS handshake's crypto, parsing its answer) is not a stall:
    nothing waited for it. A wait the kernel ended with answers ready while the thread was
    runnable without a CPU (``run_delay`` in ``/proc/thread-self/schedstat``) is a stall of that
    length. Where the kernel does not say, a timed wait that came back later than its
    (millisecond-rounded) timeout counts instead: the process was not given a CPU in time, and an
    answer would have waited as long.

    Each stall goes to ``listener`` with the window of the attempt that waited (the
    :data:`attempt_window` of the waiting callback's context). The recording's own time is added
    to :attr:`cost_ns`.
    """

    def __init__(
        self,
        clock: Callable[[], int] = time.perf_counter_ns,
        run_delay: Callable[[], int] | bool | None = True,
    ) -> None:
        super().__init__()
        self._clock = clock
        self._run_delay: Callable[[], int] | None
        self._run_delay = _run_delay_reader() if run_delay is True else run_delay or None
        self._last_run_delay = self._run_delay() if self._run_delay is not None else 0
        #: When the loop came back from its last wait (None before the first one).
        self.busy_since: int | None = None
        #: fd -> when the loop began to wait for it to become writable (a connect, a full
        #: send buffer).
        self.watched_since: dict[int, int] = {}
        self.listener: StallListener | None = None
        self.cost_ns = 0

    def run_queued(
        self,
        owner: LagWindow | None,
        queued_ns: int,
        own_before_ns: int,
        callback: Callable[..., object],
        args: tuple[Any, ...],
    ) -> None:
        """Run ``callback(*args)``, queued for ``owner`` at ``queued_ns`` (when ``owner``'s own
        callbacks had run for ``own_before_ns``), and report how long it waited for others.

        The time the attempt's own queued callbacks ran in between is its own work (a TLS
        handshake's ClientHello before the ``resume_reading`` asyncio queues with it), which
        its phase truly took, not a wait; a callback of nobody's (None) waited for everything.
        """
        start = self._clock()
        listener = self.listener
        if listener is not None:
            waited = start - queued_ns
            if owner is not None:
                waited -= owner.own_ns - own_before_ns
            if waited >= MIN_STALL_NS:
                listener(start - waited, start, owner)
        try:
            callback(*args)
        finally:
            if owner is not None:
                owner.own_ns += self._clock() - start

    def watching(self, fd: int) -> None:
        """The loop began to wait for ``fd`` to become writable (its ``_add_writer``)."""
        self.watched_since[fd] = self._clock()

    def waited(self, since_ns: int, owner: LagWindow | None) -> None:
        """A callback returned by the last wait starts now, having waited since ``since_ns``."""
        listener = self.listener
        if listener is not None:
            now = self._clock()
            if now - since_ns >= MIN_STALL_NS:
                listener(since_ns, now, owner)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        listener = self.listener
        if listener is None:
            ready: list[tuple[selectors.SelectorKey, int]] = super().select(timeout)
            self.busy_since = self._clock()
            return ready
        entered = self._clock()
        since = self.busy_since
        if since is not None and entered - since >= MIN_STALL_NS:
            ready = super().select(0)
            if ready or timeout == 0:
                returned = self._clock()
                for key, events in ready:
                    # It came during the stretch: when exactly, the kernel may say (an answer's
                    # arrival), or the loop (a socket writable no sooner than it was watched).
                    if events & selectors.EVENT_READ:
                        came = arrival_ns(key.fd)
                    else:
                        came = self.watched_since.get(key.fd)
                    start = since if came is None else max(since, came)
                    listener(start, entered, _key_owner(key, events))
                self.busy_since = returned
                self.cost_ns += self._clock() - returned
                return ready
        ready = super().select(timeout)
        returned = self._clock()
        self.busy_since = returned
        run_delay = self._run_delay
        if run_delay is not None:
            # Read only after a wait that slept (a wait that returned at once had no wake-up
            # to be late for); run delay from before then is in the next reading, which bills
            # it to that wait's answers: the conservative side.
            if returned - entered >= MIN_STALL_NS:
                now_delay = run_delay()
                waited, self._last_run_delay = now_delay - self._last_run_delay, now_delay
                if ready and waited >= MIN_STALL_NS:
                    waited = min(waited, returned - since) if since is not None else waited
                    for owner in {_key_owner(key, events) for key, events in ready}:
                        listener(returned - waited, returned, owner)
        elif not ready and timeout is not None and timeout > 0:
            # The selectors round a timeout up to whole milliseconds (epoll, poll).
            due = entered + math.ceil(timeout * 1e3) * 1_000_000
            if returned > due:
                listener(due, returned, None)
        self.cost_ns += self._clock() - returned
        return ready


_process_events = asyncio.selector_events.BaseSelectorEventLoop._process_events  # type: ignore[attr-defined]


def _fd_of(fileobj: Any) -> int:
    return fileobj if isinstance(fileobj, int) else int(fileobj.fileno())


class _WatchedLoop(asyncio.SelectorEventLoop):
    """A selector event loop that tells its :class:`BusySelector` when callbacks wait.

    Three of asyncio's private hooks (the same from 3.11 to 3.13) are extended: ``_add_writer``
    and ``_remove_writer`` (when the loop began to watch a socket for writing) and
    ``_process_events`` (the callbacks of one wait's answers). ``tests/probe/test_looplag.py``
    fails if they move.
    """

    def __init__(self, selector: BusySelector) -> None:
        super().__init__(selector)
        self._busy = selector

    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        busy = self._busy
        if busy.listener is not None:
            # An empty Context is falsy: test for None, or its callbacks would be billed to the
            # caller's attempt.
            owner = attempt_window.get() if context is None else context.get(attempt_window)
            return super().call_soon(
                busy.run_queued,
                owner,
                busy._clock(),
                owner.own_ns if owner is not None else 0,
                callback,
                args,
                context=context,
            )
        return super().call_soon(callback, *args, context=context)

    def _add_writer(self, fd: Any, callback: Callable[..., object], *args: Any) -> Any:
        if self._busy.listener is not None:
            self._busy.watching(_fd_of(fd))
        return super()._add_writer(fd, callback, *args)  # type: ignore[misc]

    def _remove_writer(self, fd: Any) -> bool:
        self._busy.watched_since.pop(_fd_of(fd), None)
        return bool(super()._remove_writer(fd))  # type: ignore[misc]

    def _process_events(self, event_list: list[tuple[selectors.SelectorKey, int]]) -> None:
        # The callbacks of one wait's answers run one after another: each after the first gets
        # a marker before it that reports how long it waited.
        if len(event_list) < 2:
            _process_events(self, event_list)
            return
        busy = self._busy
        returned = busy.busy_since
        if busy.listener is None or returned is None:
            _process_events(self, event_list)
            return
        ready: deque[asyncio.Handle] = self._ready  # type: ignore[attr-defined]
        first = True
        for key, events in event_list:
            if not first:
                marker = (returned, _key_owner(key, events))
                ready.append(asyncio.Handle(busy.waited, marker, self))
            count = len(ready)
            super()._process_events([(key, events)])  # type: ignore[misc]
            if len(ready) == count and not first:
                ready.pop()  # no callback came of it: no marker either
            elif len(ready) > count:
                first = False


_busy_selectors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BusySelector] = (
    weakref.WeakKeyDictionary()
)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new selector event loop whose waits and busy stretches a :class:`LoopLagMonitor` sees
    directly (no ticks). Use it where mpnet makes its own loop (the CLI)."""
    selector = BusySelector()
    loop = _WatchedLoop(selector)
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


#: Waits a window keeps for :meth:`LagWindow.phase_peak_ns`; past that it counts its whole span.
MAX_WINDOW_WAITS = 256


class LagWindow:
    """The span of one attempt's clocks, and the longest stall seen overlapping it so far.

    Where the attempt reports its timed phases (:meth:`phase`, ``(start_ns, end_ns)`` each) and
    the monitor knows each wait (the selector, not ticks), only a wait's overlap with a phase
    counts (:meth:`phase_peak_ns`): a wait between two phases (the task that starts the next
    phase, queued behind other work) delays when that phase starts, not its figure.
    """

    __slots__ = ("_settled", "end_ns", "own_ns", "peak_ns", "phases", "start_ns", "waits")

    def __init__(self, start_ns: int) -> None:
        self.start_ns = start_ns
        self.end_ns: int | None = None
        self.peak_ns = 0
        self._settled: asyncio.Future[None] | None = None
        #: The attempt's timed phases so far; None: count the whole span.
        self.phases: list[tuple[int, int]] | None = None
        #: The waits billed to this window (selector only); None: not kept (ticks, or too many).
        self.waits: list[tuple[int, int]] | None = None
        #: Nanoseconds the attempt's own queued callbacks have run (not a wait for its others).
        self.own_ns = 0

    @property
    def peak_ms(self) -> float:
        return self.peak_ns / 1e6

    def phase(self, start_ns: int, end_ns: int) -> None:
        """A timed phase of the attempt ran from ``start_ns`` to ``end_ns``."""
        if self.phases is None:
            self.phases = []
        self.phases.append((start_ns, end_ns))

    def phase_peak_ns(self) -> int | None:
        """The longest overlap of a kept wait with the attempt's phases (adjacent or overlapping
        phases joined), or None when either is unknown (then :attr:`peak_ns` stands)."""
        if self.phases is None or self.waits is None:
            return None
        joined: list[list[int]] = []
        for start, end in sorted(self.phases):
            if joined and start <= joined[-1][1]:
                joined[-1][1] = max(joined[-1][1], end)
            else:
                joined.append([start, end])
        peak = 0
        for wait_start, wait_end in self.waits:
            for start, end in joined:
                overlap = min(wait_end, end) - max(wait_start, start)
                if overlap > peak:
                    peak = overlap
        return peak


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
        if self._selector is not None:
            window.waits = []
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
        in_phases = window.phase_peak_ns()
        if in_phases is not None:
            window.peak_ns = in_phases
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

    def _observe(self, start_ns: int, end_ns: int, owner: LagWindow | None = None) -> None:
        """Something working for ``owner`` (None: for any attempt) waited from ``start_ns`` to
        ``end_ns`` (:class:`BusySelector`'s listener)."""
        if owner is None:
            for window in self._open:
                self._observe_in(window, start_ns, end_ns)
        elif owner in self._open:
            self._observe_in(owner, start_ns, end_ns)
        if end_ns - start_ns >= self._floor_ns:
            self.stalls.append(Stall(start_ns, end_ns))

    @staticmethod
    def _observe_in(window: LagWindow, start_ns: int, end_ns: int) -> None:
        # Only the part inside the window can delay what the window waits for.
        stop = end_ns if window.end_ns is None else min(end_ns, window.end_ns)
        begin = max(start_ns, window.start_ns)
        overlap = stop - begin
        if overlap <= 0:
            return
        if overlap > window.peak_ns:
            window.peak_ns = overlap
        waits = window.waits
        if waits is not None:
            if len(waits) < MAX_WINDOW_WAITS:
                waits.append((begin, stop))
            else:
                window.waits = None  # too many to keep: the whole span counts

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
    "attempt_window",
    "new_event_loop",
    "release_shared_monitor",
    "shared_monitor",
]
