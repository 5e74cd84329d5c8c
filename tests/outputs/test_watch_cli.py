"""`mpnet watch` as a child process: counted cycles, exit codes, and Ctrl-C with a summary."""

from __future__ import annotations

import re
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


def test_a_dropping_feed_shows_its_reconnects(tmp_path) -> None:
    """One long-lived WebSocket per exchange: the lab cuts it after 3 data messages (150 ms),
    and the feed reconnects within 0.5 s (backoff), so by cycle 3 (1 s) it has reconnected."""
    process = MpnetProcess(
        "watch",
        "--lab",
        "okx",
        "--fault",
        "okx=drop_after:3",
        "--count",
        "3",
        "--interval",
        "0.5",
        cwd=str(tmp_path),
    )
    try:
        # Intervals with drops and reconnects fail the run, whatever the last cycle showed.
        assert process.finish() == 1, process.describe()
    finally:
        process.stop()
    lines = process.stdout.splitlines()
    [last] = [line for line in lines if line.startswith("cycle 3 okx ws ")]
    found = re.search(r" reconnects (\d+) gaps (\d+)", last)
    assert found, last
    reconnects, gaps = int(found[1]), int(found[2])
    assert reconnects > 0 and gaps >= reconnects
    [rest] = [line for line in lines if line.startswith("cycle 3 okx rest ")]
    assert "reconnects" not in rest
    summary = process.stdout.split("summary after 3 cycle(s)", 1)[1]
    assert "reconn" in summary and "gaps" in summary
    assert "Traceback" not in process.stderr


def test_a_flapping_feed_is_not_ok_and_fails_the_run(tmp_path) -> None:
    """The lab cuts the okx feed after 5 data messages (250 ms) and it is back within 0.5 s:
    every 1 s interval after the first holds a drop, so cycles 2 and 3 are flapping (or DOWN,
    when the cycle catches it between connections), never ok, and count as loss."""
    process = MpnetProcess(
        "watch",
        "--lab",
        "okx",
        "--no-rest",
        "--fault",
        "okx=drop_after:5",
        "-c",
        "3",
        "--interval",
        "1",
        cwd=str(tmp_path),
    )
    try:
        assert process.finish() == 1, process.describe()
    finally:
        process.stop()
    lines = {line.split()[1]: line for line in process.stdout.splitlines() if " okx ws " in line}
    assert lines["1"].startswith("cycle 1 okx ws ok ping "), lines
    for cycle in ("2", "3"):
        status = re.match(rf"cycle {cycle} okx ws (flapping \d+|DOWN) ", lines[cycle])
        assert status, lines[cycle]
        assert re.search(r"\((\d+) drops?, (\d+) reconnects? this interval\)", lines[cycle])
    assert " loss 67% " in lines["3"]
    summary = process.stdout.split("summary after 3 cycle(s)", 1)[1]
    assert "flapping N: the feed dropped or reconnected N times" in summary


def test_a_steady_feed_is_ok_and_exits_0(tmp_path) -> None:
    process = MpnetProcess(
        "watch", "--lab", "okx", "--no-rest", "-c", "3", "--interval", "0.5", cwd=str(tmp_path)
    )
    try:
        assert process.finish() == 0, process.describe()
    finally:
        process.stop()
    lines = [line for line in process.stdout.splitlines() if " okx ws " in line]
    assert len(lines) == 3
    assert all(
        re.match(r"cycle \d okx ws ok ping .* loss 0% drops 0 reconnects 0 ", line)
        for line in lines
    ), lines


# Slow (test_ctrl_c_prints_summary_and_exits_130 interrupts the same run): CI's second step runs it.
@pytest.mark.slow
def test_ctrl_c_closes_the_feeds_and_exits_130(tmp_path) -> None:
    process = MpnetProcess("watch", "deribit", "--lab", "--interval", "0.2", cwd=str(tmp_path))
    try:
        process.wait_for(r"cycle 2 deribit ws ok", stream="stdout")
        assert process.interrupt(signal.SIGINT) == 130
    finally:
        process.stop()
    assert "mpnet watch: summary after" in process.stdout
    assert "mpnet: interrupted" in process.stderr
    for trouble in ("Traceback", "Task was destroyed", "never retrieved", "Unclosed", "Warning"):
        assert trouble not in process.stderr, process.stderr


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
