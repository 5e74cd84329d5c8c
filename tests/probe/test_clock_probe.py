"""Clock offset and feed lag end to end on loopback: the lab's clock moved by a known skew (in
every unit a profile may use), events stamped in the past, answers whose stamps are bad, and the
command line's JSON, table and Prometheus text."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from typer.testing import CliRunner

from mpnet.cli.app import get_app
from mpnet.config.layers import NetworkOptions
from mpnet.config.model import ConfigFile, Profile
from mpnet.config.profiles import load_profiles, parse_profile_text
from mpnet.core.clock import SOURCE_DATE, SOURCE_PONG, SOURCE_REST
from mpnet.core.result import ProbeReport, ProbeResult
from mpnet.lab import Lab
from mpnet.probe.engine import run_probes
from mpnet.probe.plan import build_plan

UNITS = ("s", "ms", "us", "ns", "iso8601")
SKEW_S = 3.7
LAG_MS = 1500.0

runner = CliRunner()


def demo_profile(name: str, unit: str) -> Profile:
    """A profile the lab serves with its generic dialect: stamps placed at the time fields."""
    return parse_profile_text(
        f"name: {name}\ntitle: {name}\n"
        "rest:\n"
        "  base_url: https://api.example.test\n"
        "  health: {path: /v1/time}\n"
        f"  server_time: {{path: result.now, unit: {unit}}}\n"
        "websocket:\n"
        "  url: wss://ws.example.test/ws\n"
        "  subscribe: {op: subscribe, channel: ticker}\n"
        "  data_match: {channel: ticker}\n"
        "  ping: {send: {op: ping}, expect: {op: pong}}\n"
        f"  event_time: {{path: data.0.ts, unit: {unit}}}\n"
    )


def result_of(report: ProbeReport, exchange: str, target: str) -> ProbeResult:
    [found] = [r for r in report.results if r.exchange == exchange and r.target == target]
    return found


@pytest.fixture(scope="module")
def skewed_report() -> ProbeReport:
    """Per unit, one simulator whose clock runs SKEW_S ahead and one whose events are stamped
    LAG_MS in the past, probed three times each with a short feed window."""
    profiles = [demo_profile(f"skew-{u}", u) for u in UNITS]
    profiles += [demo_profile(f"lag-{u}", u) for u in UNITS]
    faults = {f"skew-{u}": f"clock_skew:{SKEW_S}" for u in UNITS}
    faults |= {f"lag-{u}": f"feed_lag:{LAG_MS:g}" for u in UNITS}

    async def run() -> ProbeReport:
        async with Lab(profiles, tls=True, faults=faults, data_interval=0.02) as lab:
            plan = build_plan(
                lab.profiles(),
                config=ConfigFile(),
                options=NetworkOptions(ca_bundle=lab.ca_file),
                env={},
                count=3,
                timeout=10,
                feed_window=0.3,
            )
            return await run_probes(plan)

    return asyncio.run(run())


@pytest.mark.parametrize("unit", UNITS)
def test_the_offset_holds_a_known_skew_within_its_error(
    skewed_report: ProbeReport, unit: str
) -> None:
    result = result_of(skewed_report, f"skew-{unit}", "rest")
    assert result.ok, result.error
    clock = result.clock
    assert clock is not None and clock.known, clock
    assert clock.source == SOURCE_REST and clock.path == "result.now"
    assert clock.offset_ms is not None and clock.error_ms is not None
    assert abs(clock.offset_ms - SKEW_S * 1000) <= clock.error_ms
    # Three samples; the one kept has the smallest round trip.
    trips = [s.round_trip_ms for s in clock.samples]
    assert len(trips) == 3 and clock.round_trip_ms == min(t for t in trips if t is not None)
    if unit == "s":
        assert clock.error_ms >= 1000  # whole seconds: the stamp's resolution is in the error
    finding = [f for f in result.findings if f.code == "CLOCK_SKEW"]
    assert len(finding) == 1 and "behind" in finding[0].message
    as_json = result.to_dict()["clock"]
    assert as_json["offset_ms"] == pytest.approx(clock.offset_ms, abs=0.001)
    assert [s["skipped"] for s in as_json["samples"]] == [None, None, None]


@pytest.mark.parametrize("unit", UNITS)
def test_feed_lag_is_corrected_by_the_exchanges_offset(
    skewed_report: ProbeReport, unit: str
) -> None:
    result = result_of(skewed_report, f"skew-{unit}", "ws")
    assert result.ok, result.error
    feed = result.feed
    assert feed is not None and feed.corrected and feed.lag_ms is not None
    assert feed.offset_source == SOURCE_REST and feed.error_ms is not None
    # The events are stamped on the skewed clock as they leave: corrected, no message arrived
    # before it was stamped (by more than the offset's error).
    assert feed.lag_ms.p50 >= -feed.error_ms
    assert feed.messages >= 3 and feed.rate_per_s is not None and feed.rate_per_s > 0
    assert "FEED_LAGGING" not in [f.code for f in result.findings] or unit == "s"


@pytest.mark.parametrize("unit", UNITS)
def test_events_stamped_in_the_past_show_as_lag(skewed_report: ProbeReport, unit: str) -> None:
    result = result_of(skewed_report, f"lag-{unit}", "ws")
    feed = result.feed
    assert feed is not None and feed.corrected and feed.lag_ms is not None
    assert feed.error_ms is not None
    assert feed.lag_ms.p50 >= LAG_MS - feed.error_ms
    rest = result_of(skewed_report, f"lag-{unit}", "rest")
    assert rest.clock is not None and rest.clock.offset_ms is not None
    assert rest.clock.error_ms is not None
    # The server's clock itself is right: only the events are late.
    assert abs(rest.clock.offset_ms) <= rest.clock.error_ms
    if unit != "s":  # whole-second stamps leave an error too wide to be sure
        [finding] = [f for f in result.findings if f.code == "FEED_LAGGING"]
        assert "corrected by the clock offset" in finding.message
        assert "exchange's or the path's" in finding.hint


def test_without_an_offset_the_lag_is_uncorrected_and_says_so() -> None:
    async def run() -> ProbeReport:
        profile = demo_profile("skewed", "ms")
        async with Lab([profile], tls=True, faults={"skewed": "clock_skew:5"}) as lab:
            plan = build_plan(
                lab.profiles(),
                config=ConfigFile(),
                options=NetworkOptions(ca_bundle=lab.ca_file),
                env={},
                rest=False,  # no REST answer, so no offset for this exchange
                timeout=10,
            )
            return await run_probes(plan)

    report = asyncio.run(run())
    [result] = report.results
    feed = result.feed
    assert feed is not None and feed.lag_ms is not None and not feed.corrected
    assert feed.note is not None and "uncorrected" in feed.note
    # The simulator stamps 5 s ahead of this clock: uncorrected, the lag is about -5000 ms
    # (never less: the stamp was taken before the message left).
    assert feed.lag_ms.p50 >= -5000.0 - 1.0
    assert feed.lag_ms.p50 < 0
    assert result.to_dict()["feed"]["corrected"] is False


# -- the lab's own profiles and faults, through the command line -----------------------------------


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(get_app(), list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def faulty_json() -> dict[str, Any]:
    code, stdout, stderr = invoke(
        "probe",
        "--lab",
        "binance",
        "okx",
        "kucoin",
        "kraken",
        "bitfinex",
        "--fault",
        "binance=clock_skew:-4",
        "--fault",
        "okx=feed_lag:3000",
        "--feed-window",
        "0.5",
        "--format",
        "json",
    )
    assert code == 0, stderr
    return dict(json.loads(stdout))


def json_result(report: dict[str, Any], exchange: str, target: str) -> dict[str, Any]:
    [found] = [r for r in report["results"] if r["exchange"] == exchange and r["target"] == target]
    return dict(found)


def test_lab_clock_skew_reaches_clock_skew_in_ms(faulty_json: dict[str, Any]) -> None:
    rest = json_result(faulty_json, "binance", "rest")
    clock = rest["clock"]
    assert clock["source"] == SOURCE_REST and clock["path"] == "serverTime"
    assert abs(clock["offset_ms"] + 4000) <= clock["error_ms"]
    [finding] = [f for f in rest["findings"] if f["code"] == "CLOCK_SKEW"]
    assert (
        "this machine's clock is" in finding["message"]
        and "ahead of binance's" in finding["message"]
    )
    assert "Timestamp for this request was 1000ms ahead" in finding["message"]
    # The feed is stamped on the same skewed clock: corrected, it is not late.
    ws = json_result(faulty_json, "binance", "ws")
    assert ws["feed"]["corrected"] is True
    assert ws["feed"]["lag_ms"]["p50"] >= -ws["feed"]["error_ms"]
    assert "FEED_LAGGING" not in [f["code"] for f in ws["findings"]]


def test_lab_feed_lag_reaches_feed_lagging(faulty_json: dict[str, Any]) -> None:
    ws = json_result(faulty_json, "okx", "ws")
    feed = ws["feed"]
    assert feed["corrected"] is True and feed["offset_source"] == SOURCE_REST
    assert feed["lag_ms"]["p50"] >= 3000 - feed["error_ms"]
    assert feed["messages"] >= 2 and feed["window_s"] > 0
    [finding] = [f for f in ws["findings"] if f["code"] == "FEED_LAGGING"]
    assert finding["severity"] == "warning"
    rest = json_result(faulty_json, "okx", "rest")
    assert "CLOCK_SKEW" not in [f["code"] for f in rest["findings"]]
    # Per attempt: the clock sample of the REST attempt and the feed of the WebSocket one.
    assert rest["samples"][0]["clock"]["source"] == SOURCE_REST
    assert ws["samples"][0]["feed"]["messages"] == feed["messages"]


def test_lab_kucoin_reads_its_time_request_and_claims_no_lag(faulty_json: dict[str, Any]) -> None:
    rest = json_result(faulty_json, "kucoin", "rest")
    assert rest["clock"]["source"] == SOURCE_REST and rest["clock"]["path"] == "data"
    assert abs(rest["clock"]["offset_ms"]) <= rest["clock"]["error_ms"]
    feed = json_result(faulty_json, "kucoin", "ws")["feed"]
    assert feed["lag_ms"] is None and feed["messages"] >= 1
    assert "data.time is the last trade's time" in feed["note"]


def test_lab_pong_clocks_for_kraken_and_bitfinex(faulty_json: dict[str, Any]) -> None:
    for name in ("kraken", "bitfinex"):
        ws = json_result(faulty_json, name, "ws")
        assert ws["clock"]["source"] == SOURCE_PONG, name
        assert abs(ws["clock"]["offset_ms"]) <= ws["clock"]["error_ms"]
    # Kraken's REST time has whole seconds; its pong's is the finer one, and corrects its feed.
    kraken_rest = json_result(faulty_json, "kraken", "rest")["clock"]
    assert kraken_rest["error_ms"] >= 1000
    assert json_result(faulty_json, "kraken", "ws")["feed"]["offset_source"] == SOURCE_PONG
    # Bitfinex: no time in its REST answer, so the Date header, which says it is coarse.
    assert json_result(faulty_json, "bitfinex", "rest")["clock"]["source"] == SOURCE_DATE
    assert json_result(faulty_json, "bitfinex", "ws")["feed"]["lag_ms"] is None


def test_table_shows_offset_and_lag_when_wide_and_in_verbose_when_narrow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ("probe", "--lab", "okx", "--fault", "okx=feed_lag:2000", "--feed-window", "0.3")
    out = tmp_path / "table.txt"  # a file gets 160 columns
    code, _, stderr = invoke(*args, "--output", str(out))
    assert code == 0, stderr
    wide = out.read_text()
    assert "offset" in wide and "lag p50/p95" in wide
    assert "the exchange's clock minus this machine's" in wide
    [row] = [
        line for line in wide.splitlines() if line.lstrip().startswith("okx") and " ws " in line
    ]
    p50 = float(row.split()[-1].split("/")[0])
    assert p50 >= 1000  # 2000 ms less the offset's error (a few ms): clearly late
    from mpnet.cli import console

    monkeypatch.setattr(console.out, "width", 80)  # an 80-column terminal
    code, narrow, _ = invoke(*args)
    assert code == 0 and "lag p50/p95" not in narrow
    code, verbose, _ = invoke(*args, "-v")
    verbose = " ".join(verbose.split())  # the notes wrap at 80 columns
    assert "clock offset" in verbose and "positive: this machine is behind" in verbose
    assert "feed:" in verbose and "corrected by the offset" in verbose


def test_prometheus_series_pass_promtool() -> None:
    code, stdout, stderr = invoke(
        "probe", "--lab", "okx", "--feed-window", "0.3", "--format", "prometheus"
    )
    assert code == 0, stderr
    for name in (
        "mpnet_probe_clock_offset_seconds",
        "mpnet_probe_clock_offset_error_seconds",
        "mpnet_probe_feed_lag_p50_seconds",
        "mpnet_probe_feed_lag_p95_seconds",
        "mpnet_probe_feed_lag_max_seconds",
        "mpnet_probe_feed_messages",
        "mpnet_probe_feed_lag_corrected",
    ):
        assert f"# TYPE {name} gauge" in stdout, name
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=stdout, capture_output=True, text=True
    )
    problems = [
        line
        for line in (checked.stdout + checked.stderr).splitlines()
        if "clock" in line or "feed" in line
    ]
    assert problems == []


# -- bad stamps ------------------------------------------------------------------------------------

#: path -> (body, content type); every answer is HTTP 200 with a Date header.
BAD_ANSWERS: dict[str, tuple[str, str]] = {
    "/text": ('{"t": "soon"}', "application/json"),
    "/early": ('{"t": 12}', "application/json"),
    "/mapping": ('{"t": {"ms": 1796289266005}}', "application/json"),
    "/missing": ('{"x": 1}', "application/json"),
    "/nan": ('{"t": NaN}', "application/json"),
    "/future": ('{"t": 9999999999999999}', "application/json"),
    "/html": ("<html>down</html>", "text/html"),
}

BAD_REASONS = {
    "/text": "t is 'soon', not a number of ms",
    "/early": "t = 12 ms is before 2001: not a plausible time (wrong unit?)",
    "/mapping": "t is a mapping, not a time stamp",
    "/missing": "no value at t",
    "/nan": "t is nan, not a time stamp",
    "/future": "is after 2100",
    "/html": "the answer is not JSON: <html>down</html>",
}


@pytest.fixture
async def bad_server() -> AsyncIterator[str]:
    async def answer(request: web.Request) -> web.Response:
        body, kind = BAD_ANSWERS[request.path]
        return web.Response(text=body, content_type=kind)

    app = web.Application()
    for path in BAD_ANSWERS:
        app.router.add_get(path, answer)
    runner_ = web.AppRunner(app)
    await runner_.setup()
    site = web.TCPSite(runner_, "127.0.0.1", 0)
    await site.start()
    port = runner_.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner_.cleanup()


async def test_bad_stamps_are_skipped_samples_with_their_reason(bad_server: str) -> None:
    profiles = [
        parse_profile_text(
            f"name: bad{index}\ntitle: Bad\nrest:\n  base_url: {bad_server}\n"
            f"  health: {{path: {path}}}\n  server_time: {{path: t, unit: ms}}\n"
        )
        for index, path in enumerate(BAD_ANSWERS)
    ]
    profiles.append(
        parse_profile_text(
            f"name: badtime\ntitle: Bad\nrest:\n  base_url: {bad_server}\n"
            "  health: {path: /missing}\n  time: {path: /nowhere}\n"
            "  server_time: {path: t, unit: ms}\n"
        )
    )
    plan = build_plan(profiles, config=ConfigFile(), options=NetworkOptions(), env={}, ws=False)
    report = await run_probes(plan)
    reasons = dict(zip(BAD_ANSWERS, BAD_REASONS.values(), strict=True))
    for index, path in enumerate(BAD_ANSWERS):
        result = result_of(report, f"bad{index}", "rest")
        assert result.ok, (path, result.error)  # a bad stamp never fails the probe
        clock = result.to_dict()["clock"]
        skipped = clock["samples"][0]
        assert reasons[path] in skipped["skipped"], (path, skipped)
        assert skipped["offset_ms"] is None and skipped["error_ms"] is None
        # No offset is made up from it: the coarse Date header is what remains, and says so.
        assert clock["source"] == SOURCE_DATE
        assert "CLOCK_SKEW" not in [f.code for f in result.findings]
    time_failed = result_of(report, "badtime", "rest")
    assert time_failed.ok
    [sample, *_] = time_failed.to_dict()["clock"]["samples"]
    assert sample["skipped"] == "the time request /nowhere answered HTTP 404"


async def test_bad_event_times_are_counted_with_their_reason() -> None:
    okx = load_profiles().get("okx")
    assert okx.websocket is not None and okx.websocket.event_time is not None
    wrong = dataclasses.replace(
        okx,
        websocket=dataclasses.replace(
            okx.websocket,
            event_time=dataclasses.replace(okx.websocket.event_time, path="data.0.instId"),
        ),
    )
    async with Lab([wrong], tls=True, data_interval=0.02) as lab:
        plan = build_plan(
            lab.profiles(),
            config=ConfigFile(),
            options=NetworkOptions(ca_bundle=lab.ca_file),
            env={},
            rest=False,
            timeout=10,
            feed_window=0.3,
        )
        report = await run_probes(plan)
    [result] = report.results
    assert result.ok
    feed = result.to_dict()["feed"]
    assert feed["lag_ms"] is None
    assert feed["note"] == "no data message carried a readable event time"
    [skipped] = feed["skipped"]
    assert skipped["reason"] == "data.0.instId is 'BTC-USDT', not a number of ms"
    assert skipped["count"] == feed["messages"]


def test_clock_tolerance_from_the_flag_and_the_config_file(tmp_path: Path) -> None:
    base = ("probe", "--lab", "binance", "--no-ws", "--fault", "binance=clock_skew:2")

    def skew_codes(*extra: str) -> list[str]:
        code, stdout, stderr = invoke(*base, "--format", "json", *extra)
        assert code == 0, stderr
        [result] = json.loads(stdout)["results"]
        return [f["code"] for f in result["findings"]]

    assert skew_codes() == ["CLOCK_SKEW"]  # 2000 ms against the default 500
    assert skew_codes("--clock-tolerance", "3000") == []
    config = tmp_path / "mpnet.yaml"
    config.write_text("clock: {tolerance_ms: 3000}\n")
    assert skew_codes("--config", str(config)) == []
    # The flag wins over the config file.
    assert skew_codes("--config", str(config), "--clock-tolerance", "1000") == ["CLOCK_SKEW"]
