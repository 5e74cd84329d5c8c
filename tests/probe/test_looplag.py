"""The loop-lag monitor on its own: a stall blocks the loop, the windows that overlap it see it.

Stalls are made with ``time.sleep`` inside a callback (the loop can run nothing else meanwhile),
so every lower bound here is a fact about the loop, not about the machine's speed. Upper bounds
are loose: a shared machine can deschedule the process at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import selectors
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

from mpnet.net.stamps import arrival_ns, stamp_arrivals
from mpnet.probe import looplag
from mpnet.probe.looplag import (
    BusySelector,
    LagWindow,
    LoopLagMonitor,
    attempt_window,
    new_event_loop,
    shared_monitor,
)

T = TypeVar("T")

STALL_S = 0.02
#: A 20 ms stall is seen to within one tick (1 ms) and the selector's rounding (1 ms).
SEEN_MS = 15.0


async def _stall() -> None:
    """Block the loop for STALL_S, as a blocking call inside a callback would."""
    time.sleep(STALL_S)
    await asyncio.sleep(0)


async def test_a_stall_during_a_window_is_its_lag() -> None:
    async with LoopLagMonitor() as monitor:
        await asyncio.sleep(0.005)
        window = monitor.open_window()
        await _stall()
        lag = await monitor.settle(window)
    assert lag is not None and lag >= SEEN_MS


async def test_a_window_after_the_stall_does_not_see_it() -> None:
    async with LoopLagMonitor() as monitor:
        await asyncio.sleep(0.005)
        await _stall()
        await asyncio.sleep(0.005)  # a few ticks: the stall is over and recorded
        window = monitor.open_window()
        await asyncio.sleep(0.005)
        lag = await monitor.settle(window)
        kept = max(s.ms for s in monitor.stalls)
    assert kept >= SEEN_MS  # the monitor did see it...
    assert lag is not None and lag < SEEN_MS  # ...before this window opened


async def test_a_stall_that_outlasts_the_window_still_counts() -> None:
    """The window closes inside the stall; the tick that ends it comes after the close."""
    async with LoopLagMonitor() as monitor:
        await asyncio.sleep(0.005)
        window = monitor.open_window()
        time.sleep(0.003)  # a tick falls due in here, before the close...
        monitor.close(window)
        time.sleep(STALL_S)  # ...and runs only after this
        assert window.peak_ms < SEEN_MS  # not seen yet: no tick has run since
        lag = await monitor.settle(window)
    assert lag is not None and lag >= SEEN_MS


async def test_stalls_buffer_is_bounded_and_queryable() -> None:
    monitor = LoopLagMonitor(capacity=3)
    async with monitor:
        start = time.perf_counter_ns()
        for _ in range(5):
            await asyncio.sleep(0.003)
            await _stall()
        await asyncio.sleep(0.003)
        end = time.perf_counter_ns()
    assert len(monitor.stalls) == 3
    assert all(s.start_ns < s.end_ns for s in monitor.stalls)
    assert monitor.lag_between(start, end) >= SEEN_MS
    assert monitor.lag_between(end, end + 10**9) == 0.0


async def test_not_running_means_not_measured() -> None:
    monitor = LoopLagMonitor()
    window = monitor.open_window()
    assert await monitor.settle(window) is None
    assert monitor.ticks == 0


async def test_monitor_counts_its_own_cost() -> None:
    async with LoopLagMonitor() as monitor:
        await asyncio.sleep(0.05)
    assert monitor.ticks >= 5
    assert monitor.cost_ns > 0
    # Stopped: no tick is pending any more.
    ticks = monitor.ticks
    await asyncio.sleep(0.01)
    assert monitor.ticks == ticks and not monitor.running


async def test_concurrent_users_share_one_monitor() -> None:
    async with shared_monitor() as first:
        async with shared_monitor() as second:
            assert first is second and first.running
        assert first.running  # the outer user still holds it
    assert not first.running
    async with shared_monitor() as third:
        assert third is not first


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        LoopLagMonitor(interval=0)


async def test_a_window_closed_without_settling_is_forgotten_at_the_next_tick() -> None:
    """A cancelled attempt closes its window but never settles it: nothing may keep it."""
    async with LoopLagMonitor() as monitor:
        window = monitor.open_window()
        monitor.close(window)
        await asyncio.sleep(0.005)
        assert monitor._open == set() and monitor._closing == []


# -- on a loop made by new_event_loop(): the selector reports what waited, no ticks ----------


def _on_busy_loop(body: Callable[[], Awaitable[T]]) -> T:
    loop = new_event_loop()
    try:
        return loop.run_until_complete(body())
    finally:
        loop.close()


@contextlib.contextmanager
def _stamped_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(sender, receiver) over TCP on loopback; the receiver's packets carry arrival stamps."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        sender = socket.create_connection(server.getsockname())
        receiver, _ = server.accept()
    sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stamp_arrivals(receiver)
    receiver.setblocking(False)
    try:
        yield sender, receiver
    finally:
        sender.close()
        receiver.close()


async def _answer_during_stall(
    receiver: socket.socket,
    sender: socket.socket,
    owner: LagWindow | None,
    *,
    before_s: float = 0.0,
    stall_s: float = STALL_S,
) -> None:
    """An answer for ``owner`` arrives ``before_s`` into a stall of ``stall_s`` and is read
    once the loop is free."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    def read() -> None:
        loop.remove_reader(receiver)
        got.set_result(receiver.recv(16))

    token = attempt_window.set(owner)
    try:
        loop.add_reader(receiver, read)  # the reader works for owner (its context)
    finally:
        attempt_window.reset(token)
    await asyncio.sleep(0.002)  # the loop waits in its selector again

    def stall() -> None:
        time.sleep(before_s)
        sender.send(b"x")
        time.sleep(stall_s - before_s)

    loop.call_soon(stall)
    assert await got == b"x"


def test_a_busy_loop_watches_its_selector_instead_of_ticking() -> None:
    async def body() -> tuple[float | None, int]:
        with _stamped_pair() as (sender, receiver):
            async with LoopLagMonitor() as monitor:
                window = monitor.open_window()
                await _answer_during_stall(receiver, sender, window)
                lag = await monitor.settle(window)
        return lag, monitor.ticks

    lag, ticks = _on_busy_loop(body)
    assert ticks == 0
    # The answer waited for the whole stall, measured whole (no tick resolution to lose).
    assert lag is not None and lag >= STALL_S * 1e3 * 0.95


def test_the_wait_counts_from_the_kernels_arrival_stamp() -> None:
    """An answer that arrives halfway through a stall waited half of it, not all of it."""

    async def body() -> float | None:
        with _stamped_pair() as (sender, receiver):
            async with LoopLagMonitor() as monitor:
                window = monitor.open_window()
                await _answer_during_stall(receiver, sender, window, before_s=0.03, stall_s=0.06)
                return await monitor.settle(window)

    lag = _on_busy_loop(body)
    assert lag is not None and 30 * 0.9 <= lag < 55


def test_own_work_with_nothing_waiting_is_not_a_stall() -> None:
    """A callback that works for 20 ms while nothing has arrived delayed nobody."""

    async def body() -> float | None:
        async with LoopLagMonitor() as monitor:
            await asyncio.sleep(0.002)
            window = monitor.open_window()
            await _stall()
            await asyncio.sleep(0.002)
            return await monitor.settle(window)

    lag = _on_busy_loop(body)
    assert lag is not None and lag < STALL_S * 1e3 / 2


def test_a_stall_is_billed_to_the_attempt_whose_answer_waited() -> None:
    async def body() -> tuple[float | None, float | None, float | None]:
        with _stamped_pair() as (sender, receiver):
            async with LoopLagMonitor() as monitor:
                waiting, bystander = monitor.open_window(), monitor.open_window()
                await _answer_during_stall(receiver, sender, waiting)
                unknown = monitor.open_window()
                # An answer no attempt owns (the loop cannot tell whose): every window counts it.
                await _answer_during_stall(receiver, sender, None)
                lags = [await monitor.settle(w) for w in (waiting, bystander, unknown)]
        return lags[0], lags[1], lags[2]

    waiting, bystander, unknown = _on_busy_loop(body)
    assert waiting is not None and waiting >= STALL_S * 1e3 * 0.95
    assert unknown is not None and unknown >= STALL_S * 1e3 * 0.95
    # The bystander only saw the second, unowned stall's wait.
    assert bystander is not None and bystander >= STALL_S * 1e3 * 0.95


def test_an_owned_stall_is_not_billed_to_another_attempt() -> None:
    async def body() -> tuple[float | None, float | None]:
        with _stamped_pair() as (sender, receiver):
            async with LoopLagMonitor() as monitor:
                waiting, bystander = monitor.open_window(), monitor.open_window()
                await _answer_during_stall(receiver, sender, waiting)
                return await monitor.settle(waiting), await monitor.settle(bystander)

    waiting, bystander = _on_busy_loop(body)
    assert waiting is not None and waiting >= STALL_S * 1e3 * 0.95
    assert bystander is not None and bystander < STALL_S * 1e3 / 2


def test_a_callback_queued_behind_a_stall_waited_for_it() -> None:
    async def body() -> float | None:
        async with LoopLagMonitor() as monitor:
            await asyncio.sleep(0.002)
            window = monitor.open_window()
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()
            token = attempt_window.set(window)
            try:
                owned = contextvars.copy_context()
            finally:
                attempt_window.reset(token)

            def work_then_stall() -> None:
                # The attempt's callback is queued first, then the loop is held.
                loop.call_soon(done.set_result, None, context=owned)
                time.sleep(STALL_S)

            loop.call_soon(work_then_stall)
            await done
            return await monitor.settle(window)

    lag = _on_busy_loop(body)
    assert lag is not None and lag >= STALL_S * 1e3 * 0.95


def _context_of(window: LagWindow) -> contextvars.Context:
    token = attempt_window.set(window)
    try:
        return contextvars.copy_context()
    finally:
        attempt_window.reset(token)


Scene = Callable[[asyncio.AbstractEventLoop, LagWindow, LagWindow], Awaitable[object]]


def _lag_after(scene: Scene) -> float | None:
    """The lag of a window whose whole span is one phase, once ``scene`` has queued callbacks
    for it (and for another window) and what it returned has been awaited."""

    async def body() -> float | None:
        async with LoopLagMonitor() as monitor:
            await asyncio.sleep(0.002)
            window, other = monitor.open_window(), monitor.open_window()
            await scene(asyncio.get_running_loop(), window, other)
            window.phase(window.start_ns, time.perf_counter_ns())
            await monitor.settle(other)
            return await monitor.settle(window)

    return _on_busy_loop(body)


def test_a_callback_queued_behind_its_own_attempts_work_did_not_wait() -> None:
    """An attempt's callback that queues its next step and then works (a TLS handshake's
    crypto): the step waited for the attempt's own work, which its phase truly took, not for
    anybody else's. (It was billed as a stall from the queueing to the end of the stretch.)"""

    def scene(loop: asyncio.AbstractEventLoop, window: LagWindow, _: LagWindow) -> Awaitable[None]:
        done: asyncio.Future[None] = loop.create_future()
        owned = _context_of(window)

        def step_then_work() -> None:
            loop.call_soon(done.set_result, None, context=owned)
            time.sleep(STALL_S)

        loop.call_soon(step_then_work, context=owned)
        return done

    lag = _lag_after(scene)
    assert lag is not None and lag < STALL_S * 1e3 / 2


def test_a_callback_that_ran_before_a_stall_did_not_wait_for_it() -> None:
    """A callback that ran at the start of a busy stretch is not billed for the stall that came
    after it in the same stretch."""
    ran: list[int] = []

    def scene(loop: asyncio.AbstractEventLoop, window: LagWindow, _: LagWindow) -> Awaitable[None]:
        loop.call_soon(lambda: ran.append(time.perf_counter_ns()), context=_context_of(window))
        loop.call_soon(time.sleep, STALL_S)  # nobody's, after it
        return asyncio.sleep(0.002)

    lag = _lag_after(scene)
    assert ran
    assert lag is not None and lag < STALL_S * 1e3 / 2


def test_a_callback_queued_behind_another_attempts_work_waited_for_it() -> None:
    """Two callbacks queued in one loop iteration run in the next: the second waited for the
    first, of another attempt. (Only callbacks queued during a stretch were checked, at its end,
    so this wait went unseen.)"""

    def scene(
        loop: asyncio.AbstractEventLoop, window: LagWindow, other: LagWindow
    ) -> Awaitable[None]:
        done: asyncio.Future[None] = loop.create_future()
        loop.call_soon(time.sleep, STALL_S, context=_context_of(other))
        loop.call_soon(done.set_result, None, context=_context_of(window))
        return done

    lag = _lag_after(scene)
    assert lag is not None and lag >= STALL_S * 1e3 * 0.95


def test_a_callback_queued_with_an_empty_context_is_nobodys() -> None:
    """A callback queued with its own (empty) context works for no attempt: its wait counts for
    every window, not for the attempt that happened to queue it."""

    async def body() -> float | None:
        async with LoopLagMonitor() as monitor:
            await asyncio.sleep(0.002)
            queuing, other = monitor.open_window(), monitor.open_window()
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()

            def work_then_stall() -> None:
                loop.call_soon(done.set_result, None, context=contextvars.Context())
                time.sleep(STALL_S)

            token = attempt_window.set(queuing)
            try:
                loop.call_soon(work_then_stall)
            finally:
                attempt_window.reset(token)
            await done
            await monitor.settle(queuing)
            return await monitor.settle(other)

    lag = _on_busy_loop(body)
    assert lag is not None and lag >= STALL_S * 1e3 * 0.95


def test_answers_of_one_wait_each_wait_for_the_callbacks_before_them() -> None:
    """Two answers ready at once: whichever callback runs second waited for the first."""

    async def body() -> tuple[float | None, float | None]:
        with _stamped_pair() as (s1, r1), _stamped_pair() as (s2, r2):
            async with LoopLagMonitor() as monitor:
                loop = asyncio.get_running_loop()
                windows = [monitor.open_window(), monitor.open_window()]
                both = [loop.create_future() for _ in windows]
                for receiver, window, fut in zip((r1, r2), windows, both, strict=True):

                    def read(r: socket.socket = receiver, f: asyncio.Future[None] = fut) -> None:
                        loop.remove_reader(r)
                        r.recv(16)
                        time.sleep(STALL_S)
                        f.set_result(None)

                    token = attempt_window.set(window)
                    try:
                        loop.add_reader(receiver, read)
                    finally:
                        attempt_window.reset(token)
                await asyncio.sleep(0.002)
                # Both arrive while the loop is in one short callback: one wait returns both.
                loop.call_soon(lambda: (s1.send(b"x"), s2.send(b"y")))
                await asyncio.gather(*both)
                lags = [await monitor.settle(w) for w in windows]
        return lags[0], lags[1]

    first, second = _on_busy_loop(body)
    assert first is not None and second is not None
    assert max(first, second) >= STALL_S * 1e3 * 0.95


def test_the_loop_hooks_it_extends_are_still_there() -> None:
    """new_event_loop() extends three private methods of asyncio's selector loop and reads
    ``Handle._context`` and ``SelectorKey.data`` as asyncio sets them (3.11 to 3.13). If a
    Python release moves them, this fails here rather than the figures going quietly wrong."""
    base = asyncio.selector_events.BaseSelectorEventLoop
    for name in ("_process_events", "_add_writer", "_remove_writer"):
        assert callable(getattr(base, name, None)), f"asyncio moved {name}: revisit looplag"
    loop = new_event_loop()
    try:
        assert hasattr(loop, "_ready"), "asyncio moved the loop's ready queue: revisit looplag"
        handle = loop.call_soon(lambda: None)
        assert isinstance(getattr(handle, "_context", None), contextvars.Context)
        handle.cancel()
        a, b = socket.socketpair()
        with a, b:
            loop.add_reader(a, lambda: None)
            key = loop._selector.get_key(a)  # type: ignore[attr-defined]
            assert isinstance(key.data, tuple) and len(key.data) == 2
            loop.remove_reader(a)
    finally:
        loop.close()


def test_the_selector_reports_waits_the_kernel_ended_late_where_it_cannot_say_more() -> None:
    """Without schedstat: a timed-out wait that came back after its (rounded-up) timeout means
    the process had no CPU, and an answer would have waited as long."""
    seen: list[tuple[int, int, object]] = []
    now = iter([0, 50_000_000, 50_000_100])  # entered at 0, back 50 ms later for a 10 ms wait
    selector = BusySelector(clock=lambda: next(now), run_delay=False)
    selector.listener = lambda start, end, owner: seen.append((start, end, owner))
    try:
        assert selector.select(0.0094) == []  # nothing registered: a plain timed wait
    finally:
        selector.close()
    assert seen == [(10_000_000, 50_000_000, None)]


def test_a_wait_that_ended_without_a_cpu_is_a_stall_of_the_run_delay() -> None:
    seen: list[tuple[int, int, object]] = []
    delays = iter([1_000_000, 4_000_000])  # 3 ms runnable without a CPU during the wait
    now = iter([0, 5_000_000, 5_000_100])  # entered at 0, back 5 ms later
    selector = BusySelector(clock=lambda: next(now), run_delay=lambda: next(delays))
    selector.listener = lambda start, end, owner: seen.append((start, end, owner))
    a, b = socket.socketpair()
    try:
        selector.register(a, selectors.EVENT_READ)
        b.send(b"x")
        assert len(selector.select(1.0)) == 1
    finally:
        selector.close()
        a.close()
        b.close()
    assert seen == [(2_000_000, 5_000_000, None)]


def test_a_stretch_with_nothing_waiting_after_it_is_not_reported() -> None:
    seen: list[tuple[int, int, object]] = []
    selector = BusySelector(run_delay=False)
    selector.listener = lambda start, end, owner: seen.append((start, end, owner))
    try:
        selector.select(0)
        time.sleep(0.005)  # the loop's own work; nothing arrives
        selector.select(0)
    finally:
        selector.close()
    assert seen == []


def test_arrival_stamps_from_the_kernel() -> None:
    with _stamped_pair() as (sender, receiver):
        before = time.perf_counter_ns()
        sender.send(b"x")
        time.sleep(0.01)
        arrived = arrival_ns(receiver.fileno())
        after = time.perf_counter_ns()
        assert receiver.recv(1) == b"x"
        assert arrival_ns(receiver.fileno()) is None  # nothing waiting: nothing to stamp
    if sys.platform.startswith("linux"):
        assert arrived is not None
        # Wall and perf clocks are read a few microseconds apart: allow that much.
        assert before - 200_000 <= arrived <= after - 5_000_000
    a, b = socket.socketpair()
    with a, b:
        b.send(b"x")
        assert arrival_ns(a.fileno()) is None  # not stamped
    r, w = os.pipe()
    try:
        assert arrival_ns(r) is None  # not a socket
    finally:
        os.close(r)
        os.close(w)


def test_two_monitors_on_one_busy_loop_the_second_ticks() -> None:
    async def body() -> tuple[int, int]:
        async with LoopLagMonitor() as first, LoopLagMonitor() as second:
            await asyncio.sleep(0.01)
        return first.ticks, second.ticks

    first_ticks, second_ticks = _on_busy_loop(body)
    assert first_ticks == 0 and second_ticks > 0


# -- only waits inside the attempt's phases count -------------------------------------------------


def _phase_around_stall(*, stall_inside_a_phase: bool) -> float | None:
    """An answer waits through a stall; the window's phases either cover the stall or end
    before it and start after it (the stall falls between two phases)."""

    async def body() -> float | None:
        with _stamped_pair() as (sender, receiver):
            async with LoopLagMonitor() as monitor:
                window = monitor.open_window()
                first = time.perf_counter_ns()
                await asyncio.sleep(0.002)
                if not stall_inside_a_phase:
                    window.phase(first, time.perf_counter_ns())
                await _answer_during_stall(receiver, sender, window)
                second = time.perf_counter_ns()
                await asyncio.sleep(0.002)
                window.phase(first if stall_inside_a_phase else second, time.perf_counter_ns())
                return await monitor.settle(window)

    return _on_busy_loop(body)


def test_a_wait_inside_a_phase_is_its_lag() -> None:
    lag = _phase_around_stall(stall_inside_a_phase=True)
    assert lag is not None and lag >= STALL_S * 1e3 * 0.95


def test_a_wait_between_two_phases_is_not_their_lag() -> None:
    """The wait delayed when the second phase started, not either figure."""
    lag = _phase_around_stall(stall_inside_a_phase=False)
    assert lag is not None and lag < STALL_S * 1e3 / 2


def test_phases_that_touch_are_one_span_for_a_wait() -> None:
    window = LagWindow(0)
    window.waits = [(900, 1300)]
    window.phase(0, 1000)
    window.phase(1000, 2000)
    # The wait straddles the border: 400 ns of it inside the joined phases, not 300 or 100.
    assert window.phase_peak_ns() == 400


def test_without_phases_or_kept_waits_the_whole_span_counts() -> None:
    window = LagWindow(0)
    window.waits = [(100, 200)]
    assert window.phase_peak_ns() is None  # no phases reported
    window.phase(0, 50)
    window.waits = None  # ticks, or too many waits to keep
    assert window.phase_peak_ns() is None


def test_a_window_with_too_many_waits_counts_its_whole_span() -> None:
    async def body() -> LagWindow:
        async with LoopLagMonitor() as monitor:
            window = monitor.open_window()
            for index in range(looplag.MAX_WINDOW_WAITS + 1):
                monitor._observe(window.start_ns + index, window.start_ns + index + 1, window)
            return window

    window = _on_busy_loop(body)
    assert window.waits is None
