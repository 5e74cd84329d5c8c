"""The rate-limit gate against a real local HTTP server that counts what reaches it.

The server answers what each test asks (429 with Retry-After: 7, a Binance weight header, ...)
and records the monotonic time of every request. No test waits for a Retry-After to run out:
attempts inside the wait are skipped at once, and the counts at the server prove nothing was
sent. Timing assertions are lower bounds only (requests at least so far apart).
"""

from __future__ import annotations

import itertools
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from mpnet.config.layers import NetworkOptions
from mpnet.config.model import ConfigFile, Profile
from mpnet.config.profiles import parse_profile_text
from mpnet.core.result import ProbeReport
from mpnet.core.watch import WatchState
from mpnet.net.prepare import prepare_network
from mpnet.probe.engine import run_probes
from mpnet.probe.exporter import ProbeExporter
from mpnet.probe.plan import ProbePlan, build_plan
from mpnet.probe.watch_runner import WatchRunner
from mpnet.render.junit import junit_xml
from mpnet.render.probe_table import probe_view
from mpnet.render.prometheus import prometheus_text
from mpnet.serve.app import build_app

REASON = "not sent: demo asked to wait (HTTP 429 with Retry-After: 7)"
#: Request starts are paced exactly; what the server sees also includes each request's
#: connection set-up on loopback, which may differ between two requests by a few milliseconds.
SETUP_JITTER_S = 0.05


@dataclass
class Exchange:
    """A local stand-in for an exchange: every path answers ``status`` with ``headers``."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hits: list[tuple[str, float]] = field(default_factory=list)
    port: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits.append((request.path, time.monotonic()))
        if self.status != 200:
            return web.json_response({"code": -1003}, status=self.status, headers=self.headers)
        if request.path == "/bullet":
            return web.json_response(
                {"data": {"token": "t", "endpoint": f"ws://127.0.0.1:{self.port}/ws"}},
                headers=self.headers,
            )
        return web.json_response({"serverTime": 1}, headers=self.headers)

    def times(self, path: str) -> list[float]:
        return [at for hit, at in self.hits if hit == path]


@pytest.fixture
async def exchange() -> AsyncIterator[Exchange]:
    server = Exchange()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()


def profile_for(server: Exchange, rate_limit: str = "", *, bootstrap: bool = False) -> Profile:
    text = f"""\
name: demo
title: Demo
rest:
  base_url: http://127.0.0.1:{server.port}
  health: {{path: /api/time, expect_json_keys: [serverTime]}}
websocket:
  url: ws://127.0.0.1:{server.port}/ws
  data_match: {{e: ticker}}
"""
    if bootstrap:
        text += "  bootstrap: {path: /bullet, endpoint: data.endpoint, token: data.token}\n"
    if rate_limit:
        text += f"rate_limit: {rate_limit}\n"
    return parse_profile_text(text, "demo.yaml")


def plan_for(
    profile: Profile,
    *,
    count: int,
    rest: bool = True,
    ws: bool = False,
    interval: float | None = None,
) -> ProbePlan:
    plan = build_plan(
        [profile],
        config=ConfigFile(),
        options=NetworkOptions(),
        env={},
        rest=rest,
        ws=ws,
        count=count,
        timeout=5,
        system_store=False,
        interval=interval,
    )
    prepare_network(t.tls for t in plan.targets)
    return plan


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def table_text(report: ProbeReport) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(probe_view(report))
    return console.export_text()


async def test_429_retry_after_7_lets_one_request_through_and_skips_the_other_four(
    exchange: Exchange,
) -> None:
    exchange.status, exchange.headers = 429, {"Retry-After": "7"}
    report = await run_probes(plan_for(profile_for(exchange), count=5))

    assert len(exchange.hits) == 1  # counted at the server: nothing else was sent
    [result] = report.results
    assert len(result.attempts) == 5 and len(result.made) == 1
    assert result.made[0].error is not None and result.made[0].error.status == 429
    assert len(result.skips) == 4
    for skip in result.skips:
        assert skip.message.startswith(REASON) and skip.cause == "http_429"
        assert 0 < skip.remaining_s <= 7
    # The 429 is the failure; the skipped attempts are neither failures nor successes.
    assert not result.ok and not result.all_skipped
    assert [f.code for f in result.findings] == ["RATE_LIMITED"]
    assert "(in 1 of" not in result.findings[0].message

    document = report.to_dict()
    shown = document["results"][0]
    assert (shown["attempts"], shown["successes"], shown["skipped"]) == (1, 0, 4)
    assert shown["skip"]["cause"] == "http_429" and shown["skip"]["message"].startswith(REASON)
    assert shown["error"]["kind"] == "http_status"
    assert document["summary"] == {"total": 1, "ok": 0, "failed": 1, "skipped": 0}
    json.dumps(document)

    text = table_text(report)
    assert "0/1, 4 skipped" in text
    assert "demo rest: 4 attempt(s) skipped, " + REASON in text

    case = ET.fromstring(junit_xml(report)).find("testcase")
    assert case is not None and case.find("failure") is not None
    failure = case.find("failure")
    assert failure is not None and failure.text is not None
    assert "attempts: 0/1 ok; 4 skipped (" + REASON in failure.text

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(prometheus_text(report))
        for s in family.samples
    }
    base = (("exchange", "demo"), ("target", "rest"))
    assert samples["mpnet_probe_attempts", base] == 1
    assert samples["mpnet_probe_skipped", base] == 4
    assert samples["mpnet_probe_success", base] == 0
    wait = samples["mpnet_probe_rate_limit_wait_seconds", (("cause", "http_429"), *base)]
    assert 0 < wait <= 7
    assert "# mpnet: demo rest: 4 attempt(s) " + REASON in prometheus_text(report)


async def test_rest_and_websocket_share_the_exchanges_wait(exchange: Exchange) -> None:
    """The REST request gets the 429; the WebSocket target's turn comes a second later (the
    profile's 1 request/s), inside the wait: none of its 3 attempts is sent."""
    exchange.status, exchange.headers = 429, {"Retry-After": "7"}
    profile = profile_for(exchange, "{requests_per_s: 1}")
    report = await run_probes(plan_for(profile, count=3, ws=True))

    assert exchange.hits and [path for path, _ in exchange.hits] == ["/api/time"]
    rest, ws = report.results
    assert (len(rest.made), len(rest.skips)) == (1, 2)
    assert ws.all_skipped and len(ws.skips) == 3 and not ws.ok
    assert ws.error is None and ws.phases == {}
    assert report.to_dict()["summary"] == {"total": 2, "ok": 0, "failed": 1, "skipped": 1}
    assert "SKIP wait" in table_text(report)
    suite = ET.fromstring(junit_xml(report))
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "1", "1")
    ws_case = suite.findall("testcase")[1]
    skipped = ws_case.find("skipped")
    assert skipped is not None and ws_case.find("failure") is None
    assert (skipped.get("message") or "").startswith(REASON)


async def test_the_kucoin_bootstrap_is_a_request_to_the_exchange_too(exchange: Exchange) -> None:
    exchange.status, exchange.headers = 429, {"Retry-After": "30"}
    profile = profile_for(exchange, bootstrap=True)
    report = await run_probes(plan_for(profile, count=3, rest=False, ws=True))
    assert [path for path, _ in exchange.hits] == ["/bullet"]
    [ws] = report.results
    assert ws.made[0].error is not None and ws.made[0].error.phase == "bootstrap"
    assert len(ws.skips) == 2 and "Retry-After: 30" in ws.skips[0].reason


async def test_a_weight_header_near_the_limit_stops_further_requests(exchange: Exchange) -> None:
    exchange.headers = {"X-MBX-USED-WEIGHT-1M": "5500"}
    profile = profile_for(
        exchange,
        "{requests_per_s: 50, weight_header: X-MBX-USED-WEIGHT-1M, weight_limit: 6000}",
    )
    report = await run_probes(plan_for(profile, count=4))
    assert len(exchange.hits) == 1
    [result] = report.results
    # The one request succeeded: the result is ok, and says what it did not send and why.
    assert result.ok and len(result.made) == 1 and len(result.skips) == 3
    assert result.skips[0].cause == "weight"
    assert "is near its rate limit (X-MBX-USED-WEIGHT-1M: 5500 of 6000" in result.skips[0].message
    assert report.to_dict()["summary"]["ok"] == 1


async def test_under_the_weight_threshold_every_attempt_is_sent(exchange: Exchange) -> None:
    exchange.headers = {"X-MBX-USED-WEIGHT-1M": "12"}
    profile = profile_for(
        exchange,
        "{requests_per_s: 50, weight_header: X-MBX-USED-WEIGHT-1M, weight_limit: 6000}",
    )
    report = await run_probes(plan_for(profile, count=3))
    assert len(exchange.hits) == 3 and report.results[0].successes == 3


async def test_requests_per_s_2_puts_half_a_second_between_requests(exchange: Exchange) -> None:
    report = await run_probes(plan_for(profile_for(exchange, "{requests_per_s: 2}"), count=3))
    assert report.results[0].successes == 3
    times = exchange.times("/api/time")
    assert len(times) == 3
    assert all(gap >= 0.5 - SETUP_JITTER_S for gap in gaps(times)), gaps(times)


async def test_interval_spaces_the_attempts_of_a_target(exchange: Exchange) -> None:
    report = await run_probes(plan_for(profile_for(exchange), count=3, interval=0.3))
    assert report.results[0].successes == 3
    times = exchange.times("/api/time")
    assert all(gap >= 0.3 - SETUP_JITTER_S for gap in gaps(times)), gaps(times)


async def test_serve_answers_a_scrape_inside_the_wait_without_sending(exchange: Exchange) -> None:
    """blackbox_exporter-style: the scrape still answers, with probe_success 0 and why."""
    exchange.status, exchange.headers = 429, {"Retry-After": "7"}
    exporter = ProbeExporter(
        [profile_for(exchange)],
        config=ConfigFile(),
        options=NetworkOptions(),
        env={},
        timeout=5,
        system_store=False,
    )
    runner = web.AppRunner(build_app(exporter), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/probe?exchange=demo"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            bodies = []
            for query in ("&target=rest", "&target=ws", "&target=rest&debug=true"):
                async with session.get(base + query) as response:
                    assert response.status == 200
                    bodies.append(await response.text())
            async with session.get(base.replace("/probe?exchange=demo", "/metrics")) as response:
                metrics = await response.text()
    finally:
        await runner.cleanup()

    assert len(exchange.hits) == 1  # the first scrape's request, and nothing after it
    first, second, debug = bodies
    second_samples = {
        s.name: s.value
        for family in text_string_to_metric_families(second)
        for s in family.samples
        if s.labels.get("target") == "ws"
    }
    assert second_samples["mpnet_probe_success"] == 0
    assert second_samples["mpnet_probe_attempts"] == 0
    assert second_samples["mpnet_probe_skipped"] == 1
    assert 0 < second_samples["mpnet_probe_rate_limit_wait_seconds"] <= 7
    assert "# mpnet: demo ws: 1 attempt(s) " + REASON in second
    assert 'mpnet_probe_attempts{exchange="demo",target="rest"} 1.0' in first
    result = json.loads(debug)["results"][0]
    assert result["skipped"] == 1 and result["attempts"] == 0 and result["error"] is None
    assert result["skip"]["message"].startswith(REASON)
    assert 'mpnet_exporter_probes_total{exchange="demo",result="skipped"}' in metrics


async def test_watch_rest_rows_skip_while_the_wait_lasts(exchange: Exchange) -> None:
    exchange.status, exchange.headers = 429, {"Retry-After": "7"}
    plan = plan_for(profile_for(exchange), count=1)
    state = WatchState([(t.profile.name, t.target) for t in plan.targets])

    async def no_sleep(_seconds: float) -> None:
        return None

    async with WatchRunner(plan, state, sleep=no_sleep) as runner:
        await runner.run(interval=1.0, count=3)
    assert len(exchange.hits) == 1
    [row] = state.rows()
    assert row.status == "SKIP" and row.skips == 2 and row.attempts == 3
    assert row.skipped is not None and row.skipped.message.startswith(REASON)
    # The 429 itself was a failed cycle: the skipped ones are neither loss nor success.
    assert row.loss_pct == 100 and row.window == 1
    assert state.troubled


async def test_a_feed_waits_out_the_wait_and_its_turn_instead_of_skipping() -> None:
    """What a reconnecting feed does: no attempt to skip, so it sleeps until it may connect."""
    from mpnet.core.ratelimit import Wait
    from mpnet.probe.pacing import RateGate

    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    gate = RateGate(clock=lambda: now[0], sleep=sleep)
    server = Exchange(port=9)  # never contacted
    [target] = plan_for(profile_for(server, "{requests_per_s: 4}"), count=1).targets
    await gate.wait_turn(target)  # the first connection goes at once
    assert slept == []
    gate.budget(target).note(Wait(5.0, "http_429", "HTTP 429 with Retry-After: 5"), at=100.0)
    assert gate.skip(target) is not None
    await gate.wait_turn(target)
    # The rest of the wait (5 s; the 0.25 s spacing since the last connection is inside it).
    assert slept == [5.0] and now[0] == 105.0
    await gate.wait_turn(target)  # the next one keeps the profile's spacing
    assert slept == [5.0, 0.25]
    assert gate.skip(target) is None


@pytest.mark.parametrize(
    ("phase", "spaced"),
    [("dns", False), ("tcp", False), ("proxy", False), ("tls", True), ("http", True)],
)
async def test_an_attempt_that_never_reached_the_exchange_gives_its_turn_back(
    phase: str, spaced: bool
) -> None:
    """No address, no connection, or no tunnel from the proxy: nothing was sent, so the next
    attempt need not keep the exchange's distance. From TLS on the exchange saw something."""
    from mpnet.core.result import Attempt, ErrorInfo
    from mpnet.probe.pacing import RateGate

    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    gate = RateGate(clock=lambda: now[0], sleep=sleep)
    server = Exchange(port=9)  # never contacted: the attempts are made up
    [target] = plan_for(profile_for(server, "{requests_per_s: 0.25}"), count=1).targets

    async def failed() -> Attempt:
        now[0] += 0.5  # the attempt took half a second
        error = ErrorInfo(phase=phase, kind="test", message=f"failed at {phase}")
        return Attempt(ok=False, error=error)

    await gate.attempt(target, failed)
    await gate.attempt(target, failed)
    assert slept == ([3.5] if spaced else [])


async def test_a_turn_given_back_wakes_the_attempt_waiting_for_it() -> None:
    """The exchange's REST attempt fails at DNS while its WebSocket attempt waits out the
    spacing: the waiting one goes at once instead of sleeping the whole spacing for nothing."""
    import asyncio

    from mpnet.core.result import Attempt, ErrorInfo
    from mpnet.probe.pacing import RateGate

    asked: list[float] = []

    async def sleep_forever(seconds: float) -> None:
        asked.append(seconds)  # only a turn given back can end this wait
        await asyncio.Event().wait()

    gate = RateGate(sleep=sleep_forever)
    server = Exchange(port=9)  # never contacted: the attempts are made up
    [target] = plan_for(profile_for(server, "{requests_per_s: 0.25}"), count=1).targets
    first_running = asyncio.Event()
    release_first = asyncio.Event()

    async def fails_at_dns() -> Attempt:
        first_running.set()
        await release_first.wait()
        return Attempt(ok=False, error=ErrorInfo(phase="dns", kind="nxdomain", message="x"))

    async def succeeds() -> Attempt:
        return Attempt(ok=True)

    first = asyncio.create_task(gate.attempt(target, fails_at_dns))
    await first_running.wait()
    second = asyncio.create_task(gate.attempt(target, succeeds))
    while not asked:  # the second is now waiting for its turn
        await asyncio.sleep(0)
    release_first.set()
    # A guard against a hang, not a timing assertion: without the wake-up it never ends.
    async with asyncio.timeout(10):
        assert (await second).ok
    await first
    assert len(asked) == 1 and asked[0] > 3.9
