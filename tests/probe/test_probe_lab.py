"""`mpnet probe` end to end against the lab: every shipped profile, both targets, every format
decision the command makes, and its bad-input and Ctrl-C behaviour."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from mpnet.cli.app import get_app
from mpnet.config.layers import NetworkOptions
from mpnet.config.model import ConfigFile
from mpnet.config.profiles import load_profiles
from mpnet.lab import Lab
from mpnet.probe.engine import run_probes
from mpnet.probe.plan import build_plan

SHIPPED = load_profiles().names()
REST_PHASES = {"dns", "tcp", "tls", "http"}
WS_PHASES = {"dns", "tcp", "tls", "ws_upgrade", "first_message", "ping_rtt"}

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(get_app(), list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def lab_report():
    """One probe of every shipped profile, both targets, against the lab over TLS."""
    import asyncio

    async def run():
        async with Lab(load_profiles(), tls=True) as lab:
            plan = build_plan(
                lab.profiles(),
                config=ConfigFile(),
                options=NetworkOptions(ca_bundle=lab.ca_file),
                env={},
                count=2,
                timeout=10,
            )
            return await run_probes(plan)

    return asyncio.run(run())


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("target", ["rest", "ws"])
def test_every_profile_succeeds_against_the_lab(lab_report, name: str, target: str) -> None:
    [result] = [r for r in lab_report.results if r.exchange == name and r.target == target]
    assert result.ok, (result.error, result.findings)
    assert result.successes == 2 and len(result.attempts) == 2
    expected = REST_PHASES if target == "rest" else WS_PHASES
    assert expected <= set(result.phases), result.phases
    assert all(v >= 0 for v in result.phases.values())
    assert result.tls is not None and result.tls.version and result.tls.version.startswith("TLS")
    latency = result.latency
    assert latency is not None and latency.min <= latency.p50 <= latency.p95 <= latency.max
    assert result.proxy.layer == "default" and result.proxy.proxy is None
    assert result.ssl.verify and result.ssl.layer == "cli"
    assert [f.code for f in result.findings if f.severity == "error"] == []


def test_json_report_matches_the_design_shape(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    code, stdout, stderr = invoke(
        "probe", "--lab", "deribit", "kucoin", "htx", "--format", "json", "--output", str(out)
    )
    assert code == 0, stderr
    assert stdout == ""  # --output takes the data; nothing else on stdout
    report = json.loads(out.read_text())
    assert set(report) == {"mpnet_version", "started_at", "results", "summary", "comparison"}
    assert report["comparison"] == []  # one route per target: nothing to compare
    assert report["summary"] == {"total": 6, "ok": 6, "failed": 0, "skipped": 0}
    for result in report["results"]:
        assert {
            "exchange",
            "target",
            "url",
            "ok",
            "attempts",
            "successes",
            "phases",
            "latency_ms",
            "proxy",
            "ssl",
            "tls",
            "error",
            "findings",
            "skipped",
            "skip",
        } <= set(result)
        assert (result["skipped"], result["skip"]) == (0, None)
        assert set(result["proxy"]) >= {"url", "layer", "scheme"}
        assert set(result["ssl"]) >= {"verify", "ca", "layer", "reason"}
        assert set(result["tls"]) >= {
            "version",
            "cipher",
            "cert_not_after",
            "cert_days_left",
            "issuer",
        }
        assert set(result["latency_ms"]) == {"min", "p50", "p95", "max"}
        assert result["error"] is None


def test_json_on_stdout_is_only_json() -> None:
    code, stdout, _ = invoke("probe", "--lab", "okx", "--no-ws", "--format", "json")
    assert code == 0
    assert json.loads(stdout)["summary"]["ok"] == 1


TIME_COLUMNS = ["dns", "tcp", "proxy", "tls", "http/upg", "1st msg", "ping", "p50/p95"]
TABLE_COLUMNS = ["exchange", "target", "result", *TIME_COLUMNS, "ok"]
#: The waterfall's rows (-v) for each target, in order, and the table column showing each phase.
WATERFALL_ROWS = {
    "rest": [
        ("DNS lookup", "dns"),
        ("TCP connect", "tcp"),
        ("TLS handshake", "tls"),
        ("HTTP first byte", "http/upg"),
        ("total", None),
    ],
    "ws": [
        ("DNS lookup", "dns"),
        ("TCP connect", "tcp"),
        ("TLS handshake", "tls"),
        ("WebSocket upgrade", "http/upg"),
        ("first message", "1st msg"),
        ("total", None),
        ("ping round trip", "ping"),
    ],
}


def _cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def _half_unit(figure: str) -> float:
    """Half the last shown digit of a rounded figure: how far it may be from the true value."""
    decimals = len(figure.partition(".")[2])
    return 0.5 * 10.0**-decimals


def _figure(cell: str) -> str:
    """A shown figure without its uncertainty mark (``~3.1``: loop lag over 1 ms, see legend)."""
    return cell.removeprefix("~")


def test_table_shows_phases_route_and_summary() -> None:
    code, stdout, _ = invoke("probe", "--lab", "binance", "-n", "2", "-v")
    assert code == 0
    lines = stdout.splitlines()
    # The table: its header (the time columns' titles over their unit), a rule, then one row
    # per target with every column filled.
    at = next(i for i, line in enumerate(lines) if line.split()[:2] == ["exchange", "target"])
    titles = _cells(lines[at - 1])
    assert titles[: len(TIME_COLUMNS)] == TIME_COLUMNS
    # The clock columns when they fit (a pipe's 120 columns do for one exchange).
    clock = titles[len(TIME_COLUMNS) :]
    assert clock in ([], ["offset", "lag p50/p95"]), titles
    assert _cells(lines[at]) == ["exchange", "target", "result", *["ms"] * 8, "ok"] + [
        "ms" for _ in clock
    ]
    assert set(lines[at + 1].strip()) == {"─"}
    rows = {}
    for line in lines[at + 2 : at + 4]:
        row = dict(zip(TABLE_COLUMNS + clock, _cells(line), strict=True))
        rows[row["target"]] = row
    assert sorted(rows) == ["rest", "ws"]
    for row in rows.values():
        assert (row["exchange"], row["result"], row["ok"]) == ("binance", "ok", "2/2"), row
        assert row["proxy"] == "-"
        p50, p95 = (float(v) for v in _figure(row["p50/p95"]).split("/"))
        assert 0 < p50 <= p95, row
    assert rows["rest"]["1st msg"] == rows["rest"]["ping"] == "-"
    assert lines[at + 4].strip() == ""
    # A figure marked uncertain (~) comes with the legend that says why; none without. Then the
    # route and the TLS policy, each on a line of its own (the legend wraps at the width).
    notes = lines[at + 5 : lines.index("", at + 5)]
    marked = any(cell.startswith("~") for row in rows.values() for cell in row.values())
    legend = notes[0].startswith("~ uncertain: the event loop stalled (up to ")
    assert marked == legend, notes
    assert notes[-2] == "route: direct (default) — all targets"
    tls_line = re.compile(r"TLS:   verify against .+[/\\]mpnet-lab-ca\.pem \(cli\) — all targets")
    assert tls_line.fullmatch(notes[-1]), notes
    # -v: one waterfall per target under a heading with its URL, showing the same figures.
    profile = load_profiles().get("binance")
    assert profile.rest is not None and profile.websocket is not None
    paths = {"rest": profile.rest.health.path, "ws": urlsplit(profile.websocket.url).path}
    for target, expected_rows in WATERFALL_ROWS.items():
        heading = next(i for i, line in enumerate(lines) if line.startswith(f"binance {target}  "))
        url = urlsplit(lines[heading].split()[-1])
        assert (url.scheme, url.hostname, url.path) == (
            "https" if target == "rest" else "wss",
            "127.0.0.1",
            paths[target],
        )
        shown = [_cells(line)[:2] for line in lines[heading + 1 : heading + 1 + len(expected_rows)]]
        assert [label for label, _ in shown] == [label for label, _ in expected_rows]
        # Then the notes (medians of N attempts, loop-lag warnings), indented, up to a blank line.
        notes = lines[heading + 1 + len(expected_rows) :]
        notes = notes[: notes.index("")] if "" in notes else notes
        assert notes[0] == "  medians of 2 attempts", notes
        assert all(note.startswith("  ") and note.strip() for note in notes[1:]), notes
        figures = {}
        for (label, column), (_, ms) in zip(expected_rows, shown, strict=True):
            figure = _figure(ms.removesuffix(" ms"))
            figures[label] = figure
            if column is not None:  # the table shows the same phase, rounded to 0.1 ms
                table = _figure(rows[target][column])
                slack = _half_unit(table) + _half_unit(figure) + 1e-9
                assert abs(float(table) - float(figure)) <= slack, (target, label, table, figure)
        timeline = [label for label, column in expected_rows if column not in (None, "ping")]
        slack = sum(_half_unit(figures[label]) for label in [*timeline, "total"])
        total = sum(float(figures[label]) for label in timeline)
        assert abs(float(figures["total"]) - total) <= slack + 1e-9, (target, figures)
    assert lines[-1] == "2/2 probes ok"


def test_failure_exit_code_and_phase() -> None:
    code, stdout, _ = invoke(
        "probe", "--lab", "okx", "--fault", "okx=invalid_json", "--no-ws", "--format", "json"
    )
    assert code == 1
    [result] = json.loads(stdout)["results"]
    assert result["error"]["phase"] == "http" and result["error"]["kind"] == "invalid_json"


def test_offline_exchange_fails_at_dns_in_one_line_per_target() -> None:
    # tests/conftest.py makes every public name unresolvable without a DNS query, as offline.
    code, stdout, stderr = invoke("probe", "deribit", "--timeout", "5")
    assert code == 1
    assert "Traceback" not in stdout + stderr
    lines = [
        line for line in stdout.splitlines() if line.startswith("deribit ") and "failed" in line
    ]
    assert len(lines) == 2 and all("dns failed" in line for line in lines), stdout
    assert "www.deribit.com" in lines[0]
    assert "DNS_FAILURE" in stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["probe", "deribt"], "unknown exchange 'deribt'; did you mean 'deribit'?"),
        (["probe", "nowhere"], "unknown exchange 'nowhere'; known exchanges: binance"),
        (["probe"], "name at least one exchange"),
        (["probe", "okx", "--all"], "not both"),
        (["probe", "okx", "--no-rest", "--no-ws"], "leave nothing to probe"),
        (["probe", "okx", "-n", "0"], "at least 1"),
        (["probe", "okx", "--timeout", "0"], "positive number"),
        (["probe", "okx", "--proxy", "http://h:1", "--no-proxy"], "contradict"),
        (["probe", "okx", "--insecure", "--ca-bundle", "x.pem"], "contradict"),
        (["probe", "okx", "--proxy", "socks9://u:hunter22@h:1"], "unsupported proxy scheme"),
        (["probe", "okx", "--fault", "okx=waf"], "add --lab"),
        (["probe", "okx", "--config", "/nonexistent/mpnet.yaml"], "no such file"),
        (["probe", "okx", "--interval", "0"], "--interval must be a positive number"),
        (["probe", "okx", "--interval", "-1"], "--interval must be a positive number"),
        (["probe", "okx", "--interval", "nan"], "--interval must be a positive number"),
        (["probe", "okx", "--interval", "inf"], "--interval must be a positive number"),
        (["probe", "okx", "--feed-window", "-1"], "--feed-window must be 0 or a number"),
        (["probe", "okx", "--feed-window", "nan"], "--feed-window must be 0 or a number"),
        (["probe", "okx", "--clock-tolerance", "0"], "--clock-tolerance must be a positive"),
        (["probe", "okx", "--clock-tolerance", "inf"], "--clock-tolerance must be a positive"),
        (["probe", "--lab", "--fault", "okx=feed_lag"], "needs a value: feed_lag:MS"),
        (["probe", "--lab", "--fault", "okx=feed_lag:-3"], "is negative"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], expected: str) -> None:
    code, stdout, stderr = invoke(*args)
    assert code == 2, (stdout, stderr)
    assert expected in stderr
    assert "Traceback" not in stdout + stderr
    assert "hunter22" not in stdout + stderr
    assert len(stderr.strip().splitlines()) == 1


def test_broken_config_names_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "mpnet.yaml"
    config.write_text("exchanges:\n  okx:\n    proxy: {rest: 'http://u:topsecret@h:99999'}\n")
    code, _, stderr = invoke("probe", "okx", "--config", str(config))
    assert code == 2
    assert f"{config}:3 exchanges.okx.proxy.rest" in stderr and "topsecret" not in stderr


@pytest.mark.parametrize(
    ("value", "shown"),
    [("0", "int 0"), ("-2", "int -2"), ("fast", "string 'fast'"), (".nan", "float nan")],
)
def test_a_bad_rate_limit_names_file_and_line(tmp_path: Path, value: str, shown: str) -> None:
    text = (Path(__file__).parents[2] / "profiles" / "okx.yaml").read_text()
    lines = text.splitlines()
    [line] = [i for i, t in enumerate(lines, 1) if t.startswith("rate_limit:")]
    (tmp_path / "okx.yaml").write_text(
        text.replace("requests_per_s: 3", f"requests_per_s: {value}")
    )
    code, stdout, stderr = invoke("probe", "okx", "--profiles", str(tmp_path))
    assert code == 2, (stdout, stderr)
    assert stderr.strip() == (
        f"mpnet: error: {tmp_path / 'okx.yaml'}:{line} rate_limit.requests_per_s: "
        f"expected a positive number, got {shown}"
    )


def test_ctrl_c_prints_the_partial_table_and_exits_130() -> None:
    # binance is slow, so the run is interrupted while it is under way.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mpnet",
            "probe",
            "--lab",
            "okx",
            "binance",
            "--no-ws",
            "--fault",
            "binance=slow:30",
            "--timeout",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "120"},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # "mpnet: lab: ..." once the simulators listen
        assert "lab" in line, line
        # Interrupt while binance is still waiting for its slow answer.
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stdout
    assert "Traceback" not in stdout + stderr
    assert "Task was destroyed" not in stderr
    assert "binance" in stdout


def test_refused_upgrade_keeps_the_phases_and_certificate_it_came_through() -> None:
    code, stdout, _ = invoke(
        "probe", "--lab", "binance", "--no-rest", "--fault", "binance=geo_block", "--format", "json"
    )
    assert code == 1
    [result] = json.loads(stdout)["results"]
    assert result["error"]["phase"] == "ws_upgrade"
    assert {"tcp", "tls", "ws_upgrade"} <= set(result["phases"])
    assert result["tls"]["version"].startswith("TLS") and "mpnet lab" in result["tls"]["issuer"]
    assert [f["code"] for f in result["findings"]][:1] == ["GEO_BLOCKED"]
