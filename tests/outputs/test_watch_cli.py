"""`mpnet watch` as a child process: counted cycles, exit codes, and Ctrl-C with a summary."""

from __future__ import annotations

import signal

import pytest
from mpnet_process import MpnetProcess
from typer.testing import CliRunner

from mpnet.cli.app import get_app


@pytest.mark.parametrize(
    ("fault", "code"),
    [((), 0), (("--fault", "binance=geo_block"), 1)],
    ids=["all-ok", "geo-blocked"],
)
def test_counted_cycles_then_summary(tmp_path, fault: tuple[str, ...], code: int) -> None:
    process = MpnetProcess(
        "watch",
        "okx",
        "binance",
        "--lab",
        *fault,
        "--no-ws",
        "--count",
        "3",
        "--interval",
        "0.2",
        cwd=str(tmp_path),
    )
    try:
        assert process.finish() == code, process.describe()
    finally:
        process.stop()
    lines = process.stdout.splitlines()
    for cycle in (1, 2, 3):
        assert any(line.startswith(f"cycle {cycle} okx rest ok ") for line in lines), lines
    assert not any(line.startswith("cycle 4 ") for line in lines)
    assert "mpnet watch: summary after 3 cycle(s)" in process.stdout
    binance = [line for line in lines if line.startswith("cycle 3 binance rest")]
    if fault:
        assert "FAIL http http_status (GEO_BLOCKED)" in binance[0]
        assert "loss 100%" in binance[0]
    else:
        assert binance[0].startswith("cycle 3 binance rest ok ")


def test_ctrl_c_prints_summary_and_exits_130(tmp_path) -> None:
    process = MpnetProcess(
        "watch", "okx", "--lab", "--no-ws", "--interval", "0.2", cwd=str(tmp_path)
    )
    try:
        process.wait_for(r"cycle 2 okx rest", stream="stdout")
        assert process.interrupt(signal.SIGINT) == 130
    finally:
        process.stop()
    assert "mpnet watch: summary after" in process.stdout
    assert "okx" in process.stdout.split("summary after", 1)[1]
    assert "mpnet: interrupted" in process.stderr
    assert "Traceback" not in process.stderr


def test_insecure_is_warned_about(tmp_path) -> None:
    process = MpnetProcess(
        "watch", "okx", "--lab", "--no-ws", "--count", "1", "--insecure", cwd=str(tmp_path)
    )
    try:
        assert process.finish() == 0, process.describe()
    finally:
        process.stop()
    assert "warning: TLS certificate verification is OFF" in process.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["watch"], "name at least one exchange"),
        (["watch", "okx", "--interval", "0"], "--interval must be a positive"),
        (["watch", "okx", "--count", "0"], "--count must be at least 1"),
        (["watch", "okx", "--no-rest", "--no-ws"], "leave nothing to probe"),
        (["watch", "okx", "--fault", "okx=waf"], "--fault only applies to the simulators"),
        (["watch", "nosuch"], "unknown exchange 'nosuch'"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(get_app(), args)
    assert result.exit_code == 2
    assert message in result.stderr
