"""Issue "Truthful numbers": what the engine measures is what the network did, or says how
uncertain it is.

1. Nothing blocking runs on the loop while an attempt's clock runs (imports, SSL contexts).
2. Each attempt reports the loop lag that overlapped its timed span; over 1 ms it is marked.
3. JSON ``samples``: one per attempt; the result's ``phases`` are per-phase medians.
4. A timeout keeps the time of the phase it cut off.
5. The kernel's TCP RTT rides along per attempt and contradicts an inflated user-space ``tcp``.

Servers: the lab and small asyncio servers on 127.0.0.1 with trustme certificates. No
assertion bounds a duration from above except loosely; lower bounds are facts (a timeout of 1 s
cannot be reported as 27 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import mpnet.net.dial
import mpnet.net.prepare
import mpnet.probe.engine as engine
from fixtures_servers import direct_decision, lab_plan, make_tls_material
from mpnet.config.layers import NetworkOptions
from mpnet.config.model import ConfigFile
from mpnet.config.profiles import load_profiles, parse_profile_text
from mpnet.core.result import Attempt, ProbeReport
from mpnet.core.tls import TLSDecision
from mpnet.errors import ConfigError
from mpnet.probe.looplag import LagWindow, attempt_window, shared_monitor
from mpnet.probe.plan import ProbePlan, ProbeTarget, build_plan
from mpnet.render.junit import junit_xml
from mpnet.render.prometheus import prometheus_text

KNOWN = load_profiles()
STALL_S = 0.02
SEEN_MS = 15.0

SAMPLE_KEYS = {"phases", "ok", "error", "loop_lag_ms", "started_at", "tcp_rtt_kernel_ms"}


@pytest.fixture
def open_windows(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """``[n]``: attempts whose clocks are running now (run_attempt calls in progress)."""
    count = [0]
    real = engine.run_attempt

    async def counted(*args: Any, **kwargs: Any) -> Attempt:
        count[0] += 1
        try:
            return await real(*args, **kwargs)
        finally:
            count[0] -= 1

    monkeypatch.setattr(engine, "run_attempt", counted)
    yield count


# -- 1. nothing blocking inside a timed window ----------------------------------------------------

IMPORTS_PROGRAM = """
import asyncio, json, sys
import mpnet.probe.engine as engine
from mpnet.config.layers import NetworkOptions
from mpnet.config.model import ConfigFile
from mpnet.config.profiles import load_profiles
from mpnet.lab import Lab
from mpnet.probe.plan import build_plan

open_windows = 0
imported = []

class Recorder:
    def find_spec(self, name, path=None, target=None):
        if open_windows:
            imported.append(name)
        return None

sys.meta_path.insert(0, Recorder())
real = engine.run_attempt

async def counted(*args, **kwargs):
    global open_windows
    open_windows += 1
    try:
        return await real(*args, **kwargs)
    finally:
        open_windows -= 1

engine.run_attempt = counted

async def main():
    known = load_profiles()
    async with Lab([known.get(n) for n in sys.argv[1:]], tls=True) as lab:
        plan = build_plan(lab.profiles(), config=ConfigFile(),
                          options=NetworkOptions(ca_bundle=lab.ca_file), env={}, count=2)
        report = await engine.run_probes(plan)
    print(json.dumps({"ok": [r.ok for r in report.results], "imported": imported}))

asyncio.run(main())
"""


def test_no_module_is_imported_while_an_attempt_is_timed() -> None:
    """A fresh interpreter, so that nothing was imported by earlier tests: bootstrap (kucoin),
    gzip frames (htx), frame pings (binance), a welcome message (bitfinex)."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS_PROGRAM, "deribit", "kucoin", "htx", "binance", "bitfinex"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(outcome["ok"]), outcome
    assert outcome["imported"] == []


async def test_prepare_network_runs_once_before_any_attempt(
    monkeypatch: pytest.MonkeyPatch, open_windows: list[int]
) -> None:
    calls: list[tuple[list[TLSDecision], int]] = []
    real = mpnet.net.prepare.prepare_network

    def recording(decisions: Any) -> None:
        decisions = list(decisions)
        calls.append((decisions, open_windows[0]))
        real(decisions)

    monkeypatch.setattr(mpnet.net.prepare, "prepare_network", recording)
    async with lab_plan("okx", "deribit") as plan:
        report = await engine.run_probes(plan)
    assert report.ok
    assert len(calls) == 1
    decisions, windows_open = calls[0]
    assert windows_open == 0
    assert set(decisions) == {t.tls for t in plan.targets}


async def test_no_ssl_context_is_built_while_an_attempt_is_timed(
    monkeypatch: pytest.MonkeyPatch, open_windows: list[int]
) -> None:
    import mpnet.net.tls

    mpnet.net.tls.clear_context_cache()
    built_in_window: list[str] = []
    real = mpnet.net.tls.build_ssl_context

    def recording(decision: TLSDecision, **kwargs: Any) -> Any:
        if open_windows[0]:
            built_in_window.append(str(decision.ca))
        return real(decision, **kwargs)

    monkeypatch.setattr(mpnet.net.tls, "build_ssl_context", recording)
    if hasattr(mpnet.net.dial, "build_ssl_context"):
        monkeypatch.setattr(mpnet.net.dial, "build_ssl_context", recording)
    async with lab_plan("okx", "deribit") as plan:
        report = await engine.run_probes(plan)
    assert report.ok
    assert built_in_window == []


async def test_an_unreadable_ca_stops_the_run_before_any_attempt(
    tmp_path: Path, open_windows: list[int]
) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    started: list[int] = []
    plan = build_plan(
        [KNOWN.get("okx")],
        config=ConfigFile(),
        options=NetworkOptions(ca_bundle=str(bad)),
        env={},
    )
    real = engine.run_attempt

    async def never(*args: Any, **kwargs: Any) -> Attempt:
        started.append(1)
        return await real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "run_attempt", never)
        with pytest.raises(ConfigError, match=f"cannot load CA {bad}"):
            await engine.run_probes(plan)
    assert started == []


# -- 2. loop lag per attempt ----------------------------------------------------------------------


async def test_a_stall_inside_one_attempt_is_its_loop_lag_and_marked_everywhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """okx's attempt blocks the loop for 20 ms; deribit's runs before it (concurrency 1)."""
    real = engine._probe_rest

    async def stalling(target: ProbeTarget, progress: Any) -> Attempt:
        if target.profile.name == "okx":
            time.sleep(STALL_S)  # blocking, on the loop, while okx's clock runs
        return await real(target, progress)

    monkeypatch.setattr(engine, "_probe_rest", stalling)
    async with lab_plan("okx", "deribit", concurrency=1) as plan:
        plan = replace(plan, targets=tuple(t for t in plan.targets if t.target == "rest"))
        report = await engine.run_probes(plan)
    assert [r.exchange for r in report.results] == ["deribit", "okx"]
    deribit, okx = report.results
    [stalled] = okx.attempts
    [quiet] = deribit.attempts
    assert stalled.loop_lag_ms is not None and stalled.loop_lag_ms >= SEEN_MS
    assert stalled.uncertain
    # Not a bound on the machine: only that the stall did not spill into deribit's window.
    assert quiet.loop_lag_ms is not None and quiet.loop_lag_ms < stalled.loop_lag_ms
    assert stalled.window_ns is not None and quiet.window_ns is not None
    assert quiet.window_ns[1] <= stalled.window_ns[0]  # one after the other

    document = report.to_dict()["results"][1]
    assert document["exchange"] == "okx"
    assert document["loop_lag_ms"] >= SEEN_MS
    assert document["samples"][0]["loop_lag_ms"] >= SEEN_MS
    assert any("stalled" in w for w in document["timing_warnings"])

    metrics = _metrics(prometheus_text(report))
    okx_lag = metrics['mpnet_probe_loop_lag_seconds{exchange="okx",target="rest"}']
    assert okx_lag >= 0.015
    assert metrics['mpnet_probe_loop_lag_seconds{exchange="deribit",target="rest"}'] < okx_lag

    table = _table_text(report)
    okx_row = next(line for line in table if line.lstrip().startswith("okx"))
    assert "~" in okx_row
    assert any(line.startswith("~ uncertain") for line in table)

    assert "timings uncertain" in junit_xml(report)


async def test_attempts_without_a_monitor_report_no_loop_lag() -> None:
    async with lab_plan("okx") as plan:
        rest = next(t for t in plan.targets if t.target == "rest")
        attempt = await engine.run_attempt(rest, 5.0)
    assert attempt.ok and attempt.loop_lag_ms is None and not attempt.uncertain
    assert attempt.started_at is not None and attempt.window_ns is not None


async def _window_of_one_attempt(
    monkeypatch: pytest.MonkeyPatch, target_kind: str, timeout: float = 2.0, **faults: str
) -> tuple[Attempt, LagWindow]:
    """One okx attempt at ``target_kind`` ("rest" or "ws") under a monitor, and its window."""
    seen: list[LagWindow] = []
    real = engine._probe_rest if target_kind == "rest" else engine._probe_ws

    async def noting(target: ProbeTarget, progress: Any) -> Attempt:
        window = attempt_window.get()
        assert isinstance(window, LagWindow)
        seen.append(window)
        return await real(target, progress)

    monkeypatch.setattr(engine, "_probe_rest" if target_kind == "rest" else "_probe_ws", noting)
    async with (
        lab_plan("okx", timeout=timeout, faults=faults) as plan,
        shared_monitor() as monitor,
    ):
        target = next(t for t in plan.targets if t.target == target_kind)
        attempt = await engine.run_attempt(target, timeout, monitor=monitor)
    return attempt, seen[0]


async def test_an_attempts_work_runs_in_its_lag_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything an attempt does runs with its window as ``attempt_window`` (the helper checks
    it inside the attempt), so the monitor bills a wait to the attempt whose answer waited;
    outside the attempt no window is set."""
    attempt, window = await _window_of_one_attempt(monkeypatch, "rest")
    assert attempt.ok
    assert window.end_ns is not None  # closed with the attempt
    assert attempt_window.get() is None


async def test_only_a_few_attempts_connect_at_once_while_the_rest_wait_freely(
    monkeypatch: pytest.MonkeyPatch, open_windows: list[int]
) -> None:
    """Six slow REST targets, concurrency 6, two connecting at once: never more than two
    dials at the same time, yet all six attempts end up waiting for their answers together."""
    import mpnet.net.exchange

    monkeypatch.setattr(engine, "CONNECTING_AT_ONCE", 2)
    # A loaded machine can stretch a loopback handshake past the 5 ms default, which would
    # (rightly) pass the slot on; the 0.4 s answers still outlast this.
    monkeypatch.setattr(engine, "FAST_PHASE", 0.2)
    dialing = [0, 0]  # now, peak
    windows_peak = [0]
    real_dial = mpnet.net.exchange.dial

    async def counted_dial(*args: Any, **kwargs: Any) -> Any:
        dialing[0] += 1
        dialing[1] = max(dialing[1], dialing[0])
        windows_peak[0] = max(windows_peak[0], open_windows[0])
        try:
            return await real_dial(*args, **kwargs)
        finally:
            dialing[0] -= 1

    monkeypatch.setattr(mpnet.net.exchange, "dial", counted_dial)
    names = ("okx", "deribit", "binance", "bybit", "kraken", "gate")
    slow = {n: "slow:0.4" for n in names}
    async with lab_plan(*names, faults=slow, ws=False, concurrency=6) as plan:
        report = await engine.run_probes(plan)
    assert report.ok
    assert dialing[1] <= 2
    # Slots come back when a phase waits for the network, not when the attempt ends.
    assert windows_peak[0] > 2


async def test_one_set_up_at_a_time_from_dns_to_the_first_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With one connecting slot and phases that all end within FAST_PHASE, no REST attempt's
    timed span (DNS to the HTTP answer) overlaps another's: nobody's handshake or request is
    billed to anybody else. The HTTP exchange is timed without a measure() block, so this also
    shows that its end, set directly, hands the slot on."""
    monkeypatch.setattr(engine, "CONNECTING_AT_ONCE", 1)
    monkeypatch.setattr(engine, "FAST_PHASE", 5.0)  # every lab phase is "fast" here
    names = ("okx", "deribit", "binance", "bybit", "kraken", "gate")
    async with lab_plan(*names, ws=False, concurrency=6, count=2) as plan:
        report = await engine.run_probes(plan)
    assert report.ok
    # From each attempt's start to its HTTP answer (the sum of its phases, dns to http).
    spans = sorted(
        (a.window_ns[0], a.window_ns[0] + round(sum(a.phases.values()) * 1e6))
        for r in report.results
        for a in r.attempts
        if a.window_ns is not None
    )
    assert len(spans) == 12
    for (_, answered), (start, _) in itertools.pairwise(spans):
        assert start >= answered, "two attempts were setting up at the same time"


async def test_a_slow_phase_hands_the_slot_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same with phases that outlast FAST_PHASE (answers after 0.4 s): the attempts wait for
    their answers together instead of one after the other."""
    monkeypatch.setattr(engine, "CONNECTING_AT_ONCE", 1)
    names = ("okx", "deribit", "binance", "bybit")
    slow = {n: "slow:0.4" for n in names}
    async with lab_plan(*names, faults=slow, ws=False, concurrency=4) as plan:
        report = await engine.run_probes(plan)
    assert report.ok
    spans = sorted(a.window_ns for r in report.results for a in r.attempts if a.window_ns)
    # Every span started before the first one ended: all four waited at the same time.
    assert all(start < spans[0][1] for start, _ in spans)


async def test_a_connection_stuck_in_set_up_gives_its_slot_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that accepts TCP and never speaks TLS: with one connecting slot, the second
    attempt still starts while the first is stuck (after CONNECT_SLOT_HOLD)."""
    monkeypatch.setattr(engine, "CONNECTING_AT_ONCE", 1)
    monkeypatch.setattr(engine, "CONNECT_SLOT_HOLD", 0.05)
    held: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    targets = []
    for name in ("mute-a", "mute-b"):
        profile = parse_profile_text(
            f"name: {name}\ntitle: Mute\nrest:\n  base_url: https://127.0.0.1:{port}\n"
            "  health: {method: GET, path: /, expect_status: 200}\n"
        )
        url = profile.url_for("rest")
        assert url is not None
        tls = TLSDecision(verify=False, ca=None, ca_kind="none", layer="cli", reason="test")
        targets.append(
            ProbeTarget(
                profile=profile, target="rest", url=url, proxy=direct_decision(url), tls=tls
            )
        )
    try:
        report = await engine.run_probes(ProbePlan(targets=tuple(targets), timeout=1.0))
    finally:
        for writer in held:
            writer.transport.abort()
        server.close()
        await server.wait_closed()
    first, second = (r.attempts[0] for r in report.results)
    assert first.error is not None and first.error.phase == "tls"
    assert first.window_ns is not None and second.window_ns is not None
    a, b = sorted([first.window_ns, second.window_ns])
    assert b[0] < a[1]  # the second began before the first ended


# -- 3. samples and medians -----------------------------------------------------------------------


async def test_samples_one_per_attempt_and_phases_are_their_medians() -> None:
    async with lab_plan("okx", count=3) as plan:
        report = await engine.run_probes(plan)
    assert report.ok
    for result in report.to_dict()["results"]:
        samples = result["samples"]
        assert len(samples) == 3 == result["attempts"]
        for sample in samples:
            assert set(sample) >= SAMPLE_KEYS
            assert sample["ok"] is True and sample["error"] is None
            assert isinstance(sample["loop_lag_ms"], float) and sample["loop_lag_ms"] >= 0
            assert sample["tcp_rtt_kernel_ms"] is None or sample["tcp_rtt_kernel_ms"] >= 0
        starts = [datetime.fromisoformat(s["started_at"]) for s in samples]
        assert starts == sorted(starts) and all(s.tzinfo is not None for s in starts)
        assert set(result["phases"]) == set(samples[0]["phases"])
        for phase, value in result["phases"].items():
            expected = statistics.median(s["phases"][phase] for s in samples)
            assert value == pytest.approx(expected, abs=0.002), phase
        assert result["loop_lag_ms"] == max(s["loop_lag_ms"] for s in samples)


# -- 4. a timeout keeps the phase it cut off ------------------------------------------------------


@contextlib.asynccontextmanager
async def silent_tls_server(tmp_path: Path) -> AsyncIterator[ProbeTarget]:
    """Accepts, completes TLS, reads the request and never answers."""
    material = make_tls_material(tmp_path)
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(silent, "127.0.0.1", 0, ssl=material.server_context())
    port = server.sockets[0].getsockname()[1]
    profile = parse_profile_text(
        "name: silent\ntitle: Silent\nrest:\n"
        f"  base_url: https://127.0.0.1:{port}\n"
        "  health: {method: GET, path: /ping, expect_status: 200}\n"
    )
    url = profile.url_for("rest")
    assert url is not None
    try:
        yield ProbeTarget(
            profile=profile,
            target="rest",
            url=url,
            proxy=direct_decision(url),
            tls=material.verify_decision(),
        )
    finally:
        for writer in held:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


async def test_a_rest_timeout_keeps_the_http_wait(tmp_path: Path) -> None:
    timeout = 1.0
    async with silent_tls_server(tmp_path) as target:
        plan = ProbePlan(targets=(target,), timeout=timeout)
        report = await engine.run_probes(plan)
    [result] = report.results
    [attempt] = result.attempts
    assert attempt.error is not None
    assert (attempt.error.phase, attempt.error.kind) == ("http", "timeout")
    assert {"tcp", "tls"} <= set(attempt.phases)
    assert attempt.phases["http"] >= 0.8 * timeout * 1000
    assert attempt.total_ms >= 0.8 * timeout * 1000
    _assert_duration_everywhere(report, at_least_s=0.8 * timeout)


async def test_an_outer_timeout_names_and_keeps_the_phase_it_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outer guard fires first (before the request's own budget): the dial's phases and
    the HTTP wait it cut still show."""
    timeout = 1.2
    monkeypatch.setattr(engine, "OUTER_GRACE", -0.6)  # cut at 0.6 s, request budget 1.2 s
    async with silent_tls_server(tmp_path) as target:
        attempt = await engine.run_attempt(target, timeout)
    assert attempt.error is not None
    assert (attempt.error.phase, attempt.error.kind) == ("http", "timeout")
    assert {"dns", "tcp", "tls"} <= set(attempt.phases)
    assert attempt.phases["http"] >= 0.8 * 0.6 * 1000
    assert attempt.total_ms >= 0.8 * 0.6 * 1000


async def test_a_websocket_waiting_for_data_keeps_first_message() -> None:
    timeout = 1.0
    async with lab_plan("okx", timeout=timeout, faults={"okx": "no_data"}, rest=False) as plan:
        report = await engine.run_probes(plan)
    [attempt] = report.results[0].attempts
    assert attempt.error is not None and attempt.error.phase == "first_message"
    assert {"tcp", "tls", "ws_upgrade"} <= set(attempt.phases)
    assert attempt.phases["first_message"] >= 0.8 * timeout * 1000
    _assert_duration_everywhere(report, at_least_s=0.8 * timeout)


def _assert_duration_everywhere(report: ProbeReport, *, at_least_s: float) -> None:
    [result] = report.to_dict()["results"]
    assert sum(v for k, v in result["phases"].items() if k != "ping_rtt") >= at_least_s * 1000
    metrics = _metrics(prometheus_text(report))
    [duration] = [v for k, v in metrics.items() if k.startswith("mpnet_probe_duration_seconds")]
    assert duration >= at_least_s
    import xml.etree.ElementTree as ET

    [case] = ET.fromstring(junit_xml(report).encode()).iter("testcase")
    assert float(case.get("time", "0")) >= at_least_s


# -- 5. kernel RTT beside tcp ---------------------------------------------------------------------


async def test_kernel_rtt_rides_along_per_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until branch dial adds PeerInfo.tcp_rtt_kernel_ms, a peer that carries it stands in.
    (Whether a figure is called inflated is tested on hand-built attempts in tests/render.)"""
    import mpnet.net.exchange

    real = mpnet.net.exchange.timed_request
    kernel = iter([0.25, 0.5])

    async def with_kernel_rtt(*args: Any, **kwargs: Any) -> Any:
        response = await real(*args, **kwargs)
        peer = SimpleNamespace(
            addresses=response.peer.addresses,
            address=response.peer.address,
            tls=response.peer.tls,
            tcp_rtt_kernel_ms=next(kernel),
        )
        return replace(response, peer=peer)

    monkeypatch.setattr(mpnet.net.exchange, "timed_request", with_kernel_rtt)
    async with lab_plan("okx", count=2, concurrency=1) as plan:
        plan = replace(plan, targets=tuple(t for t in plan.targets if t.target == "rest"))
        report = await engine.run_probes(plan)
    [result] = report.results
    assert [a.tcp_rtt_kernel_ms for a in result.attempts] == [0.25, 0.5]
    samples = report.to_dict()["results"][0]["samples"]
    assert [s["tcp_rtt_kernel_ms"] for s in samples] == [0.25, 0.5]
    for sample, attempt in zip(samples, result.attempts, strict=True):
        allowed = 1.0 + (attempt.loop_lag_ms or 0.0)
        assert sample["tcp_inflated"] is (
            attempt.phases["tcp"] - attempt.tcp_rtt_kernel_ms > allowed
        )
    verbose = "\n".join(_table_text(report, verbose=True))
    assert "kernel RTT 0.38 ms" in verbose  # the median of 0.25 and 0.5, beside tcp


# -- helpers --------------------------------------------------------------------------------------


def _metrics(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def _table_text(report: ProbeReport, *, verbose: bool = False) -> list[str]:
    from rich.console import Console

    from mpnet.render.probe_table import probe_view

    console = Console(width=200, record=True, color_system=None)
    with console.capture() as capture:
        console.print(probe_view(report, verbose=verbose))
    return capture.get().splitlines()


async def test_a_cancelled_run_leaves_no_window_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve cuts a scrape's run off from outside; the shared monitor must not keep its windows."""
    from mpnet.probe import looplag

    seen: list[looplag.LoopLagMonitor] = []
    real = looplag.acquire_shared_monitor

    def remember() -> looplag.LoopLagMonitor:
        seen.append(real())
        return seen[-1]

    monkeypatch.setattr(looplag, "acquire_shared_monitor", remember)
    async with lab_plan("okx") as plan, looplag.shared_monitor() as outer:
        # A user outside the run keeps the shared monitor alive after the run is cut off.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.01):
                await engine.run_probes(replace(plan, timeout=5))
        await asyncio.sleep(0.005)
        assert len(seen) == 2 and all(m is outer for m in seen)  # ours, then the run's
        assert outer._open == set() and outer._closing == []


async def test_a_first_step_timed_outside_a_measure_block_still_passes_the_slot_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """KuCoin's bootstrap request is timed by the engine, not through a measure block: a slot
    whose attempt reports no phase at all is still handed on once its first step waits, not
    held for the whole CONNECT_SLOT_HOLD."""
    monkeypatch.setattr(engine, "FAST_PHASE", 0.001)
    monkeypatch.setattr(engine, "CONNECT_SLOT_HOLD", 60.0)
    connecting = asyncio.Semaphore(1)
    slot = await engine._ConnectSlot.take(connecting, "ws_upgrade")
    try:
        # A guard against a hang, not a timing assertion: only FAST_PHASE can free it this soon.
        async with asyncio.timeout(10):
            await connecting.acquire()
    finally:
        slot.release()


async def test_the_set_up_slot_follows_the_steps_of_a_bootstrap_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """KuCoin's bootstrap is a whole HTTPS request (4 to 7 ms on loopback): with only the
    engine's bootstrap figure the slot saw one step that outlasted FAST_PHASE and passed on while
    the request's handshake was still to come, so its crypto and the WebSocket set-up after it
    ran beside the next attempt's set-up. The slot now follows the request's own steps; their
    figures stay out of the attempt's phases."""
    seen: list[str] = []
    real_started = engine._ConnectSlot.phase_started

    def noting(self: engine._ConnectSlot, phase: str) -> None:
        seen.append(phase)
        real_started(self, phase)

    monkeypatch.setattr(engine._ConnectSlot, "phase_started", noting)
    async with lab_plan("kucoin") as plan:
        target = next(t for t in plan.targets if t.target == "ws")
        attempt = await engine.run_attempt(target, 10, connecting=asyncio.Semaphore(1))
    assert attempt.ok, attempt.error
    # The bootstrap's dns, tcp and tls, then the WebSocket's own.
    assert seen[:3] == ["dns", "tcp", "tls"] and seen.count("tls") == 2, seen
    assert "http" not in attempt.phases and attempt.phases["bootstrap"] > 0


@pytest.mark.parametrize("target_kind", ["rest", "ws"])
async def test_the_lag_window_knows_each_timed_phase(
    monkeypatch: pytest.MonkeyPatch, target_kind: str
) -> None:
    """Each phase's span goes to the attempt's lag window as its figure is set, so a wait
    between two phases (which delays the next one's start, not a figure) is not its lag."""
    attempt, window = await _window_of_one_attempt(monkeypatch, target_kind)
    assert attempt.ok and window.phases is not None
    spans = sorted(window.phases)
    assert len(spans) >= len(attempt.phases)
    # Each figure has a span at least as long (engine phases span from their start: the ping
    # from its slot); the WebSocket wrapper's own first_message (its first message of any kind)
    # adds a span inside the engine's.
    lengths = [(end - start) / 1e6 for start, end in spans]
    for phase, figure in attempt.phases.items():
        assert any(length >= figure - 0.01 for length in lengths), phase
    assert window.start_ns <= spans[0][0] and spans[-1][1] <= (window.end_ns or 0)
    # Set-up phases follow one another: dns, tcp, tls, then http or ws_upgrade.
    set_up = spans[: len(attempt.phases) - (2 if target_kind == "ws" else 0)]
    for (_, end), (start, _) in itertools.pairwise(set_up):
        assert start >= end - 1000, "set-up phases run one after the other"


async def test_a_failed_attempt_counts_its_whole_span(monkeypatch: pytest.MonkeyPatch) -> None:
    """The phase a failure cut has no span of its own: the whole window counts."""
    attempt, window = await _window_of_one_attempt(monkeypatch, "ws", 0.5, okx="no_data")
    assert not attempt.ok and window.phases is None


async def test_the_ping_round_trip_takes_a_set_up_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    """No other attempt's handshake starts while a pong is due: the ping holds a set-up slot
    of its route and gives it back."""
    from mpnet.probe.conversation import _Conversation

    connecting = asyncio.Semaphore(1)
    held_during_ping: list[bool] = []
    real = _Conversation.ping

    async def noting(self: _Conversation, timeout: float) -> float:
        held_during_ping.append(connecting.locked())
        return await real(self, timeout)

    monkeypatch.setattr(_Conversation, "ping", noting)
    async with lab_plan("okx") as plan, shared_monitor() as monitor:
        ws = next(t for t in plan.targets if t.target == "ws")
        attempt = await engine.run_attempt(ws, 5.0, monitor=monitor, connecting=connecting)
    assert attempt.ok and "ping_rtt" in attempt.phases
    assert held_during_ping == [True]
    assert not connecting.locked()  # given back


async def test_a_ping_goes_without_a_slot_that_does_not_come(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another attempt holds the route's only slot through the whole ping: the ping waits
    PING_SLOT_WAIT, then goes on without it, and does not give back a slot it never had (a
    loaded machine took the ping's whole budget waiting before: 'no answer during ping_rtt')."""
    from mpnet.probe.conversation import _Conversation

    monkeypatch.setattr(engine, "PING_SLOT_WAIT", 0.01)
    connecting = asyncio.Semaphore(1)
    real = _Conversation.subscribe

    async def another_attempt_takes_the_slot(self: _Conversation) -> None:
        await connecting.acquire()  # the set-up has given it back by now
        await real(self)

    monkeypatch.setattr(_Conversation, "subscribe", another_attempt_takes_the_slot)
    async with lab_plan("okx") as plan, shared_monitor() as monitor:
        ws = next(t for t in plan.targets if t.target == "ws")
        attempt = await engine.run_attempt(ws, 5.0, monitor=monitor, connecting=connecting)
    assert attempt.ok and "ping_rtt" in attempt.phases and not attempt.warnings
    assert connecting.locked()  # still the other attempt's
    connecting.release()
    assert not connecting.locked()


def test_a_phase_measured_twice_reports_each_span() -> None:
    """Each measure block reports its own span; the time between two blocks of one phase is in
    neither (from the summed figure alone, the second span would reach back into it)."""
    timings = engine._TrackedTimings()
    spans: list[tuple[int, int]] = []
    timings.on_phase_span = lambda start, end: spans.append((start, end))
    with timings.measure("dns"):
        time.sleep(0.002)
    gap_started = time.perf_counter_ns()
    time.sleep(0.01)
    gap_ended = time.perf_counter_ns()
    with timings.measure("dns"):
        time.sleep(0.002)
    assert len(spans) == 2
    assert spans[0][1] <= gap_started and spans[1][0] >= gap_ended
    assert timings.dns is not None and timings.dns >= 4.0  # the figure still adds up


async def test_a_feed_window_is_decoded_in_slices_of_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the window, decoding yields to the loop whenever FEED_DECODE_SLICE_NS of it has
    passed, however few the messages (the 64-message slices let 40 lab messages run as one
    1.4 ms stall): with a slice of 0, the loop runs between every two decodes."""
    import mpnet.probe.conversation as conversation

    monkeypatch.setattr(conversation, "FEED_DECODE_SLICE_NS", 0)
    iterations = [0]
    seen_at_decode: list[int] = []
    real = conversation.decode_message

    def noting(raw: Any, *, compression: Any = None) -> Any:
        seen_at_decode.append(iterations[0])
        return real(raw, compression=compression)

    monkeypatch.setattr(conversation, "decode_message", noting)

    async def count_iterations() -> None:
        while True:
            iterations[0] += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count_iterations())
    try:
        async with lab_plan("okx") as plan, shared_monitor() as monitor:
            ws = next(t for t in plan.targets if t.target == "ws")
            attempt = await engine.run_attempt(ws, 5.0, monitor=monitor, feed_window=0.3)
    finally:
        counter.cancel()
    assert attempt.ok and attempt.feed is not None and attempt.feed.messages >= 3
    after_window = seen_at_decode[-attempt.feed.messages :]
    assert all(b > a for a, b in itertools.pairwise(after_window)), after_window
