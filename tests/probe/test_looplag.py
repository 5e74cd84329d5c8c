"""The loop-lag monitor on its own: a stall blocks the loop, the windows that overlap it see it.

Stalls are made with ``time.sleep`` inside a callback (the loop can run nothing else meanwhile),
so every lower bound here is a fact about the loop, not about the machine's speed. Upper bounds
are loose: a shared machine can deschedule the process at any time.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from mpnet.probe.looplag import LoopLagMonitor, shared_monitor

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
