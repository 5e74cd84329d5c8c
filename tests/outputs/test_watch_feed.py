"""mpnet watch's long-lived WebSocket feeds, driven in-process against the lab.

The runner's sleep between cycles is replaced by a wait for data messages, so every cycle
boundary is an event, not a span of time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from mpnet.config.layers import NetworkOptions
from mpnet.config.model import ConfigFile, Profile
from mpnet.config.profiles import load_profiles
from mpnet.core.watch import WatchState
from mpnet.lab import Lab
from mpnet.probe import feed as feed_module
from mpnet.probe.feed import FeedMonitor
from mpnet.probe.plan import ProbePlan, build_plan
from mpnet.probe.watch_runner import WatchRunner

PROFILES = load_profiles()
#: A bound on how long a test waits for the lab before giving up; not a measurement.
PATIENCE_S = 15.0
TIMEOUT_S = 5.0


def plan_for(profiles: Sequence[Profile], ca_file: str | None, *, rest: bool = False) -> ProbePlan:
    return build_plan(
        profiles,
        config=ConfigFile(),
        options=NetworkOptions(ca_bundle=ca_file),
        env={},
        rest=rest,
        ws=True,
        count=1,
        timeout=TIMEOUT_S,
        system_store=False,
    )


def state_for(plan: ProbePlan) -> WatchState:
    return WatchState([(t.profile.name, t.target) for t in plan.targets])


def runner_for(plan: ProbePlan, state: WatchState, messages: int, **options: Any) -> WatchRunner:
    """A runner whose next cycle starts once ``messages`` more data messages have arrived on
    its first feed, instead of after the interval."""
    runner: WatchRunner

    async def between_cycles(_interval: float) -> None:
        feed = next(f for f in runner.feeds if f is not None)
        await feed.wait_for_data(feed.data_messages + messages)

    runner = WatchRunner(plan, state, sleep=between_cycles, **options)
    return runner


def only_feed(runner: WatchRunner) -> FeedMonitor:
    [feed] = runner.feeds
    assert feed is not None
    return feed


@asynccontextmanager
async def lab_for(*names: str, **options: Any) -> AsyncIterator[Lab]:
    async with asyncio.timeout(PATIENCE_S), Lab([PROFILES.get(n) for n in names], **options) as lab:
        yield lab


def feed_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("mpnet feed")]


async def test_drops_are_counted_as_reconnects_and_gaps_and_the_feed_resubscribes() -> None:
    async with lab_for("okx", faults={"okx": "drop_after:3"}) as lab:
        plan = plan_for([lab.profile("okx")], lab.ca_file)
        state = state_for(plan)
        # 10 data messages, at most 3 per connection: at least 4 connections between cycles.
        async with runner_for(plan, state, 10, reconnect_delay=0.01) as runner:
            feed = only_feed(runner)
            seen: list[tuple[int, int, int]] = []

            def note() -> None:
                sample = state.rows()[0].feed
                assert sample is not None
                seen.append((sample.reconnects, sample.gaps, sample.messages))

            await runner.run(interval=1.0, count=3, on_cycle=note)
            connections = lab.connections("okx")
            total = feed.data_messages
        assert feed_tasks() == []
    [row] = state.rows()
    assert row.attempts == 3 and state.cycles == 3
    reconnects, gaps, _ = seen[-1]
    # Each connection carried at most 3 data messages, so the 20+ that arrived needed the
    # subscription replayed on every new connection.
    assert total >= 1 + 10 + 10
    assert reconnects >= 6 and gaps >= 6
    assert connections >= reconnects + 1
    assert [r for r, _, _ in seen] == sorted(r for r, _, _ in seen)
    assert sum(m for _, _, m in seen) <= total
    assert all(m >= 10 for _, _, m in seen[1:])
    assert row.feed is not None and row.feed.longest_gap_ms is not None
    assert row.feed.longest_gap_ms > 0
    assert row.feed.last_error is not None
    # The server's close, seen by the reader (first_message) or under a ping (ping_rtt).
    assert row.feed.last_error.kind == "closed" and row.feed.last_error_dropped
    assert row.last_error in ("first_message closed", "ping_rtt closed")
    # A drop is not diagnosed as a subscription that never gave data.
    assert row.last_finding is None


async def test_an_interval_with_a_drop_and_reconnect_is_flapping_then_steady_is_ok() -> None:
    """Each connection carries 20 data messages (1 s). Cycle 2 starts on the first message of
    the second connection (so the feed is up, just back); cycle 3 three messages later, on the
    same connection."""
    async with lab_for("okx", faults={"okx": "drop_after:20"}) as lab:
        plan = plan_for([lab.profile("okx")], lab.ca_file)
        state = state_for(plan)
        statuses: list[str] = []
        runner: WatchRunner

        async def between_cycles(_interval: float) -> None:
            feed = only_feed(runner)
            await feed.wait_for_data(21 if state.cycles == 1 else feed.data_messages + 3)

        runner = WatchRunner(plan, state, sleep=between_cycles, reconnect_delay=0.01)
        async with runner:
            await runner.run(
                interval=1.0, count=3, on_cycle=lambda: statuses.append(state.rows()[0].status)
            )
    assert statuses == ["ok", "flapping", "ok"]
    [row] = state.rows()
    assert row.loss_pct == pytest.approx(100 / 3) and row.drops == 1
    assert state.troubled


async def test_the_ping_time_is_the_feeds_latency_and_a_steady_feed_never_reconnects() -> None:
    async with lab_for("deribit", "okx") as lab:
        plan = plan_for([lab.profile("deribit"), lab.profile("okx")], lab.ca_file, rest=True)
        state = state_for(plan)
        async with runner_for(plan, state, 3) as runner:
            await runner.run(interval=1.0, count=3)
    rows = {(r.exchange, r.target): r for r in state.rows()}
    for name in ("deribit", "okx"):
        ws, rest = rows[(name, "ws")], rows[(name, "rest")]
        assert ws.feed is not None and rest.feed is None
        assert ws.last_ok and ws.loss_pct == 0, ws
        assert (ws.feed.reconnects, ws.feed.gaps, ws.feed.last_error) == (0, 0, None)
        assert ws.feed.ping_ms is not None and ws.last_ms == ws.feed.ping_ms
        assert ws.last_phases["ping_rtt"] == ws.feed.ping_ms
        assert {"tcp", "tls", "ws_upgrade", "first_message"} <= set(ws.last_phases)
        assert ws.p50_ms is not None and ws.p95_ms is not None
        assert rest.last_ok and rest.last_ms is not None and "http" in rest.last_phases


async def test_server_pings_are_answered_on_a_gzip_feed_so_it_stays_up() -> None:
    # HTX closes a connection after two unanswered {"ping": ts}, here 0.3 s after it opened
    # without answers; 15 data messages take 0.75 s.
    async with lab_for("htx", server_ping_interval=0.1) as lab:
        plan = plan_for([lab.profile("htx")], lab.ca_file)
        state = state_for(plan)
        async with runner_for(plan, state, 15) as runner:
            await runner.run(interval=1.0, count=2)
            connections = lab.connections("htx")
    [row] = state.rows()
    assert row.feed is not None
    assert (row.feed.reconnects, connections) == (0, 1)
    assert row.feed.messages >= 15  # gzip frames decoded and matched
    assert row.last_ok and row.feed.ping_ms is not None  # a ping frame


async def test_the_bootstrap_runs_again_before_every_reconnect(monkeypatch) -> None:
    calls: list[str] = []
    real = feed_module.run_bootstrap

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append("bootstrap")
        return await real(*args, **kwargs)

    monkeypatch.setattr(feed_module, "run_bootstrap", counted)
    async with lab_for("kucoin", faults={"kucoin": "drop_after:2"}) as lab:
        plan = plan_for([lab.profile("kucoin")], lab.ca_file)
        state = state_for(plan)
        async with runner_for(plan, state, 5, reconnect_delay=0.01) as runner:
            await runner.run(interval=1.0, count=2)
            connections = lab.connections("kucoin")
    [row] = state.rows()
    assert row.feed is not None and row.feed.reconnects >= 2
    assert len(calls) >= connections >= row.feed.reconnects + 1
    assert "bootstrap" in row.last_phases


async def test_a_feed_that_cannot_connect_is_down_with_the_diagnosed_error() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    okx = PROFILES.get("okx")
    assert okx.websocket is not None
    closed_port = f"ws://127.0.0.1:{port}/ws/v5/public"
    profile = dataclasses.replace(
        okx, websocket=dataclasses.replace(okx.websocket, url=closed_port), network=None
    )
    plan = plan_for([profile], None)
    state = state_for(plan)
    async with asyncio.timeout(PATIENCE_S), WatchRunner(plan, state) as runner:
        await runner.cycle()
    [row] = state.rows()
    assert row.last_ok is False and row.loss_pct == 100
    assert row.feed is not None and not row.feed.connected
    assert (row.feed.reconnects, row.feed.gaps, row.feed.messages) == (0, 0, 0)
    assert row.last_error == "tcp refused"
    assert row.last_finding == "CONNECT_REFUSED"
    assert not row.feed.last_error_dropped


def test_a_feed_needs_a_websocket_target() -> None:
    plan = build_plan(
        [PROFILES.get("okx")],
        config=ConfigFile(),
        options=NetworkOptions(),
        env={},
        ws=False,
        count=1,
        timeout=1,
        system_store=False,
    )
    with pytest.raises(ValueError, match="WebSocket target"):
        FeedMonitor(plan.targets[0], timeout=1)


def test_the_runner_refuses_a_state_that_does_not_line_up() -> None:
    plan = plan_for([PROFILES.get("okx")], None)
    with pytest.raises(ValueError, match="line up"):
        WatchRunner(plan, WatchState([("binance", "ws")]))


async def test_a_feed_reports_its_lags_and_its_pongs_clock() -> None:
    """Kraken's simulator stamps its data 1.5 s in the past; its pong carries its clock."""
    async with lab_for("kraken", faults={"kraken": "feed_lag:1500"}) as lab:
        plan = plan_for([lab.profile("kraken")], lab.ca_file)
        state = state_for(plan)
        async with runner_for(plan, state, 5) as runner:
            await runner.run(interval=1.0, count=2)
    [row] = state.rows()
    assert row.feed is not None and row.feed.lags_ms
    assert row.clock is not None and row.clock.source == "websocket.ping.server_time"
    assert row.clock.offset_ms is not None and row.clock.error_ms is not None
    assert abs(row.clock.offset_ms) <= row.clock.error_ms
    assert row.lag_corrected and row.lag_p50_ms is not None
    assert row.lag_p50_ms >= 1500 - row.clock.error_ms
