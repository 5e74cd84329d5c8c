"""The loop-lag monitor on its own: a stall blocks the loop, the windows that overlap it see it.

Stalls are made with ``time.sleep`` inside a callback (the loop can run nothing else meanwhile),
so every lower bound here is a fact about the loop, not about the machine's speed. Upper bounds
are loose: a shared machine can deschedule the process at any time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from mpnet.probe.looplag import BusySelector, LoopLagMonitor, new_event_loop, shared_monitor

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


# -- on a loop made by new_event_loop(): the selector reports busy stretches, no ticks --------


def _on_busy_loop(body: Callable[[], Awaitable[T]]) -> T:
    loop = new_event_loop()
    try:
        return loop.run_until_complete(body())
    finally:
        loop.close()


def test_a_busy_loop_watches_its_selector_instead_of_ticking() -> None:
    async def body() -> tuple[float | None, int]:
        async with LoopLagMonitor() as monitor:
            window = monitor.open_window()
            await _stall()
            lag = await monitor.settle(window)
        return lag, monitor.ticks

    lag, ticks = _on_busy_loop(body)
    assert ticks == 0
    # The stretch holding the stall is measured whole (no tick resolution to lose).
    assert lag is not None and lag >= STALL_S * 1e3


def test_a_busy_stretch_before_the_window_is_not_its_lag() -> None:
    async def body() -> tuple[float | None, float]:
        async with LoopLagMonitor() as monitor:
            await _stall()
            await asyncio.sleep(0.002)
            window = monitor.open_window()
            await asyncio.sleep(0.002)
            lag = await monitor.settle(window)
            kept = max(s.ms for s in monitor.stalls)
        return lag, kept

    lag, kept = _on_busy_loop(body)
    assert kept >= STALL_S * 1e3  # seen...
    assert lag is not None and lag < STALL_S * 1e3  # ...but before the window


def test_callbacks_that_run_before_the_closing_one_count() -> None:
    """An answer's callback that ran after other callbacks of the same iteration waited for them:
    the stretch up to the close counts even though the loop has not waited again yet."""

    async def body() -> float | None:
        async with LoopLagMonitor() as monitor:
            await asyncio.sleep(0.002)
            window = monitor.open_window()
            loop = asyncio.get_running_loop()
            closed: asyncio.Future[float | None] = loop.create_future()

            def close_after_a_stall() -> None:
                monitor.close(window)
                closed.set_result(None)

            # Both run in the same iteration: the stall first, then the close.
            loop.call_soon(time.sleep, STALL_S)
            loop.call_soon(close_after_a_stall)
            await closed
            return await monitor.settle(window)

    lag = _on_busy_loop(body)
    assert lag is not None and lag >= STALL_S * 1e3


def test_the_selector_reports_waits_the_kernel_ended_late() -> None:
    """A timed-out wait that came back after its (rounded-up) timeout: the process had no CPU."""
    seen: list[tuple[int, int]] = []
    now = iter([0, 50_000_000, 50_000_100])  # entered at 0, back 50 ms later for a 10 ms wait
    selector = BusySelector(clock=lambda: next(now))
    selector.listener = lambda start, end: seen.append((start, end))
    try:
        assert selector.select(0.0094) == []  # nothing registered: a plain timed wait
    finally:
        selector.close()
    assert seen == [(10_000_000, 50_000_000)]


def test_the_selector_reports_the_stretch_between_two_waits() -> None:
    seen: list[tuple[int, int]] = []
    now = iter([0, 1_000, 1_050, 9_000_000, 9_001_000, 9_001_050])
    selector = BusySelector(clock=lambda: next(now))
    selector.listener = lambda start, end: seen.append((start, end))
    try:
        selector.select(0)  # returns at 1_000: busy from there...
        selector.select(0)  # ...until this wait at 9 ms
    finally:
        selector.close()
    assert seen == [(1_000, 9_000_000)]
    assert selector.cost_ns == 100


def test_two_monitors_on_one_busy_loop_the_second_ticks() -> None:
    async def body() -> tuple[int, int]:
        async with LoopLagMonitor() as first, LoopLagMonitor() as second:
            await asyncio.sleep(0.01)
        return first.ticks, second.ticks

    first_ticks, second_ticks = _on_busy_loop(body)
    assert first_ticks == 0 and second_ticks > 0
