"""The Prometheus exposition passes ``promtool check metrics``: ``probe --format prometheus``,
``serve``'s ``/probe`` (asked the blackbox way, ``?target=EXCHANGE``) and its ``/metrics``.

promtool comes with Debian's ``prometheus`` package (``.ci/run`` installs it when it can); without
it the promtool checks are skipped, saying why. The rest of the file does not need it.
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from mpnet_process import MpnetProcess
from prometheus_client.parser import text_string_to_metric_families
from report_builders import failed_attempt, ok_attempt, report, result
from typer.testing import CliRunner

from mpnet.cli.app import get_app
from mpnet.cli.serve_cmd import DEFAULT_LISTEN
from mpnet.core.result import Attempt, TLSInfo
from mpnet.render.prometheus import prometheus_text
from mpnet.serve.app import probe_parameters

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian: apt-get install prometheus; .ci/run tries to)",
)
#: A bound on one HTTP request to the exporter, not a measurement.
PATIENCE_S = 30
#: Default ports of the exporters most often found beside mpnet (Prometheus' allocation list):
#: the server, pushgateway, alertmanager, node, blackbox, snmp, mysqld, postgres, redis,
#: haproxy, statsd, collectd, nginx, windows, process and cadvisor.
WELL_KNOWN_PORTS = {
    9090, 9091, 9093, 9100, 9115, 9116, 9104, 9187, 9121, 9101, 9102, 9103, 9113, 9182, 9256,
    8080,
}  # fmt: skip


def promtool(text: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )


def families(text: str) -> dict[str, str]:
    """Metric name -> type, as a Prometheus client parses the text."""
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@needs_promtool
def test_promtool_catches_what_it_is_here_for() -> None:
    # The check can fail: a gauge with a _total suffix and a quantile label is refused.
    checked = promtool(
        "# HELP x_total n\n# TYPE x_total gauge\nx_total 1\n"
        '# HELP y_seconds q\n# TYPE y_seconds gauge\ny_seconds{quantile="0.5"} 1\n'
    )
    assert checked.returncode != 0
    assert "_total" in checked.stdout + checked.stderr


def test_per_probe_counts_are_gauges_without_total_and_percentiles_are_gauges() -> None:
    rep = report(
        result("okx", "rest", (ok_attempt({"dns": 1.0, "tcp": 2.0}), ok_attempt({"dns": 3.0}))),
        result("okx", "ws", (failed_attempt({"dns": 1.0}, phase="tcp", kind="refused"),)),
    )
    text = prometheus_text(rep, timeout_s=7.5)
    types = families(text)
    for name in ("mpnet_probe_attempts", "mpnet_probe_successes", "mpnet_probe_skipped"):
        assert types[name] == "gauge"
    assert not any(name.endswith("_total") for name in types)
    assert types["mpnet_probe_latency_p50_seconds"] == "gauge"
    assert "quantile" not in text
    found = samples(text)
    for target in ("rest", "ws"):
        labels = frozenset({("exchange", "okx"), ("target", target)})
        assert found["mpnet_probe_timeout_seconds", labels] == 7.5
    # Without a timeout to say, no series claims one.
    assert "mpnet_probe_timeout_seconds{" not in prometheus_text(rep)


@needs_promtool
def test_a_report_with_every_kind_of_series_passes_promtool() -> None:
    rep = report(
        result("okx", "rest", (ok_attempt({"dns": 1.0, "tcp": 2.0, "tls": 3.0, "http": 4.0}),)),
        result("binance", "ws", (failed_attempt({"dns": 1.0}, phase="tcp", kind="refused"),)),
    )
    checked = promtool(prometheus_text(rep, timeout_s=10.0))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_tls_info_of_every_issuer_kind_passes_promtool() -> None:
    def seen(issuer: str | None) -> Attempt:
        return Attempt(ok=True, phases={"tls": 3.0}, tls=TLSInfo("TLSv1.3", cert_issuer=issuer))

    rep = report(
        result("okx", "rest", (seen("CN=R11, O=Let's Encrypt"),)),
        result("okx", "ws", (seen("CN=mitmproxy, O=mitmproxy"),)),
        result("binance", "rest", (seen(None),)),
    )
    text = prometheus_text(rep)
    kinds = {
        dict(labels)["issuer_kind"]
        for name, labels in samples(text)
        if name == "mpnet_probe_tls_info"
    }
    assert kinds == {"public", "private", "unknown"}
    checked = promtool(text)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_probe_format_prometheus_passes_promtool() -> None:
    run = CliRunner().invoke(
        get_app(),
        [
            *("probe", "--lab", "okx", "binance", "bybit", "-n", "2", "--timeout", "9"),
            *("--fault", "binance=geo_block", "--fault", "bybit=rate_limit"),
            *("--format", "prometheus"),
        ],
        env={"COLUMNS": "80", "TERM": "dumb"},
    )
    assert run.exit_code == 1, run.output  # binance and bybit fail, on purpose
    text = run.stdout
    # Every kind of line is there: findings, a skipped attempt's wait and its comment.
    assert 'code="GEO_BLOCKED"' in text and "mpnet_probe_rate_limit_wait_seconds{" in text
    assert "# mpnet: bybit rest: 1 attempt(s)" in text
    assert samples(text)[
        "mpnet_probe_timeout_seconds", frozenset({("exchange", "okx"), ("target", "ws")})
    ] == (9.0)
    checked = promtool(text)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process = MpnetProcess(
        *("serve", "--listen", "127.0.0.1:0", "--lab", "--fault", "binance=geo_block"),
        cwd=str(tmp_path_factory.mktemp("serve")),
    )
    try:
        yield process.wait_for(r"on (http://127\.0\.0\.1:\d+/)").group(1)
    finally:
        process.stop()


def get(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=PATIENCE_S) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8")


def targets_of(text: str, exchange: str) -> set[str]:
    return {
        dict(labels)["target"]
        for name, labels in samples(text)
        if name == "mpnet_probe_success" and dict(labels)["exchange"] == exchange
    }


def test_the_blackbox_habit_target_is_the_exchange(exporter: str) -> None:
    status, body = get(exporter + "probe?target=okx")
    assert status == 200, body
    assert targets_of(body, "okx") == {"rest", "ws"}
    status, body = get(exporter + "probe?target=okx&kind=ws")
    assert status == 200 and targets_of(body, "okx") == {"ws"}
    # mpnet's first spelling keeps working.
    status, body = get(exporter + "probe?exchange=okx&target=rest")
    assert status == 200 and targets_of(body, "okx") == {"rest"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"target": "okx"}, ("okx", None)),
        ({"target": "okx", "kind": "rest"}, ("okx", "rest")),
        ({"exchange": "okx"}, ("okx", None)),
        ({"exchange": "okx", "target": "ws"}, ("okx", "ws")),
        ({"exchange": "okx", "kind": "ws"}, ("okx", "ws")),
        ({"exchange": "okx", "target": "ws", "kind": "ws"}, ("okx", "ws")),
    ],
)
def test_probe_parameters(query: dict[str, str], expected: tuple[str, str | None]) -> None:
    assert probe_parameters(query) == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({}, "missing ?target=EXCHANGE"),
        ({"kind": "rest"}, "missing ?target=EXCHANGE"),
        ({"exchange": "okx", "target": "rest", "kind": "ws"}, "disagree"),
    ],
)
def test_probe_parameters_refused(query: dict[str, str], message: str) -> None:
    from mpnet.errors import UsageError

    with pytest.raises(UsageError, match=message.replace("?", r"\?")):
        probe_parameters(query)


@needs_promtool
@pytest.mark.parametrize("path", ["probe?target=okx", "probe?target=binance", "metrics"])
def test_serve_answers_pass_promtool(exporter: str, path: str) -> None:
    status, body = get(exporter + path)
    assert status == 200, body
    checked = promtool(body)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_probe_timeout_carries_the_targets_labels(exporter: str) -> None:
    _, body = get(exporter + "probe?target=okx&kind=rest")
    labels = frozenset({("exchange", "okx"), ("target", "rest")})
    assert samples(body)["mpnet_probe_timeout_seconds", labels] > 0


def test_the_default_port_is_no_well_known_exporters() -> None:
    port = int(DEFAULT_LISTEN.rpartition(":")[2])
    assert port not in WELL_KNOWN_PORTS
    assert DEFAULT_LISTEN.startswith("127.0.0.1:")
