"""`mpnet serve` as a real child process on a free loopback port, scraped over HTTP."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import aiohttp
import pytest
from mpnet_process import MpnetProcess
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from mpnet.cli.app import get_app

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

#: kraken answers after 30 s in this lab: only the scrape timeout can end its probe.
SLOW = "kraken"
#: A bound for the HTTP client, so a hanging scrape fails the test instead of blocking it.
CLIENT_PATIENCE = aiohttp.ClientTimeout(total=20)


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of `mpnet serve --lab` (one process for the module)."""
    process = MpnetProcess(
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--lab",
        "--fault",
        f"{SLOW}=slow:30",
        "--timeout",
        "8",
        cwd=str(tmp_path_factory.mktemp("serve")),
    )
    try:
        match = process.wait_for(r"on (http://127\.0\.0\.1:\d+/)")
        yield match.group(1)
    finally:
        process.stop()


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession(timeout=CLIENT_PATIENCE) as session,
        session.get(url, headers=headers) as response,
    ):
        return response.status, response.headers.get("Content-Type", ""), await response.text()


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def pick(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


async def test_probe_of_a_lab_exchange_rest_succeeds(exporter: str) -> None:
    status, content_type, body = await get(exporter + "probe?exchange=okx&target=rest")
    assert status == 200, body
    assert content_type.startswith("text/plain; version=0.0.4")
    samples = parse(body)
    labels = {"exchange": "okx", "target": "rest"}
    assert pick(samples, "mpnet_probe_success", **labels) == 1
    assert pick(samples, "mpnet_probe_http_status_code", **labels) == 200
    assert pick(samples, "mpnet_probe_attempts", **labels) == 1
    assert pick(samples, "mpnet_probe_proxy_info", layer="default", scheme="direct", **labels) == 1
    assert pick(samples, "mpnet_probe_tls_verify", **labels) == 1
    # The lab's certificates carry a real expiry date.
    assert pick(samples, "mpnet_probe_tls_cert_expiry_timestamp_seconds", **labels) > 0
    phases = {
        dict(labels)["phase"]: value
        for (name, labels), value in samples.items()
        if name == "mpnet_probe_phase_seconds"
    }
    assert {"tcp", "tls", "http"} <= set(phases)
    duration = pick(samples, "mpnet_probe_duration_seconds", **labels)
    assert duration == pytest.approx(sum(phases.values()), abs=1e-5)


async def test_probe_of_a_lab_exchange_covers_both_targets(exporter: str) -> None:
    pytest.importorskip("mpnet.net.ws")
    status, _, body = await get(exporter + "probe?exchange=okx")
    assert status == 200, body
    samples = parse(body)
    for target in ("rest", "ws"):
        assert pick(samples, "mpnet_probe_success", exchange="okx", target=target) == 1
    ws_phases = {
        dict(labels)["phase"]
        for (name, labels) in samples
        if name == "mpnet_probe_phase_seconds" and dict(labels)["target"] == "ws"
    }
    assert {"tcp", "tls", "ws_upgrade", "first_message"} <= ws_phases


async def test_target_parameter_limits_the_probe(exporter: str) -> None:
    status, _, body = await get(exporter + "probe?exchange=binance&target=rest")
    assert status == 200, body
    targets = {dict(labels)["target"] for (name, labels) in parse(body) if "target" in dict(labels)}
    assert targets == {"rest"}


async def test_debug_answers_with_the_json_report(exporter: str) -> None:
    import json

    status, content_type, body = await get(exporter + "probe?exchange=okx&target=rest&debug=true")
    assert status == 200 and content_type.startswith("application/json")
    document = json.loads(body)
    assert [(r["exchange"], r["target"], r["ok"]) for r in document["results"]] == [
        ("okx", "rest", True)
    ]


async def test_concurrent_scrapes_are_independent(exporter: str) -> None:
    names = ("okx", "binance", "bybit")
    answers = await asyncio.gather(
        *(get(exporter + f"probe?exchange={name}&target=rest") for name in names)
    )
    for name, (status, _, body) in zip(names, answers, strict=True):
        assert status == 200
        exchanges = {dict(labels).get("exchange") for (_, labels) in parse(body)} - {None}
        assert exchanges == {name}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("exchange=nosuch", "unknown exchange 'nosuch'; known exchanges: binance"),
        ("exchange=okx&target=ftp", "unknown kind 'ftp'; expected one of: rest, ws"),
        ("target=okx&kind=ftp", "unknown kind 'ftp'; expected one of: rest, ws"),
        ("", "missing ?target=EXCHANGE; known exchanges: binance"),
    ],
)
async def test_bad_requests_get_400_and_one_line(exporter: str, query: str, expected: str) -> None:
    status, _, body = await get(exporter + "probe?" + query)
    assert status == 400
    assert body.startswith(expected) and body.count("\n") == 1
    assert "okx" in body or "rest, ws" in body


async def test_scrape_timeout_header_cuts_a_slow_probe(exporter: str) -> None:
    status, _, body = await get(
        exporter + f"probe?exchange={SLOW}&target=rest",
        headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"},
    )
    assert status == 200
    samples = parse(body)
    assert pick(samples, "mpnet_probe_success", exchange=SLOW, target="rest") == 0
    assert pick(samples, "mpnet_probe_timeout_seconds", exchange=SLOW, target="rest") == (
        pytest.approx(1.0)
    )
    assert (
        "mpnet_probe_http_status_code",
        frozenset({("exchange", SLOW), ("target", "rest")}),
    ) not in samples


async def test_metrics_has_process_metrics_and_served_probes(exporter: str) -> None:
    await get(exporter + "probe?exchange=bitget&target=rest")
    status, content_type, body = await get(exporter + "metrics")
    assert status == 200 and content_type.startswith("text/plain")
    samples = parse(body)
    names = {name for name, _ in samples}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"} <= names
    assert pick(samples, "mpnet_exporter_probes_total", exchange="bitget", result="success") >= 1
    assert "mpnet_exporter_bad_requests_total" in names


async def test_index_links_probes_and_metrics(exporter: str) -> None:
    status, content_type, body = await get(exporter)
    assert status == 200 and content_type.startswith("text/html")
    # The status page: a link per exchange to its probe, and the exporter's own metrics.
    assert 'href="/probe?exchange=okx"' in body and 'href="/metrics"' in body


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_signals_stop_the_exporter_cleanly(tmp_path, signum: signal.Signals, code: int) -> None:
    process = MpnetProcess("serve", "--listen", "127.0.0.1:0", "--insecure", cwd=str(tmp_path))
    try:
        process.wait_for(r"serving probes of \d+ exchange")
        assert process.interrupt(signum) == code
        assert "Traceback" not in process.stderr
        # Verification off is announced at start, not only in the metrics.
        assert "warning: TLS certificate verification is OFF" in process.stderr
    finally:
        process.stop()


@pytest.mark.parametrize(
    "listen", ["nonsense", "127.0.0.1:99999", "127.0.0.1", "::1:9115", "[::1]:port"]
)
def test_bad_listen_is_one_line_and_exit_2(listen: str) -> None:
    result = CliRunner().invoke(get_app(), ["serve", "--listen", listen])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mpnet: error: --listen")


def test_non_loopback_listen_is_warned_about() -> None:
    # The malformed proxy stops the command before anything is bound.
    result = CliRunner().invoke(
        get_app(), ["serve", "--listen", "0.0.0.0:0", "--proxy", "ftp://nowhere"]
    )
    assert result.exit_code == 2
    assert "warning: listening on 0.0.0.0, not loopback" in result.stderr
