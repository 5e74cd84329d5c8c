"""mpnet watch bookkeeping and views (pure: attempts in, rows and text out)."""

from __future__ import annotations

import io

import pytest
from report_builders import failed_attempt, ok_attempt
from rich.console import Console

from mpnet.core.result import Attempt
from mpnet.probe.watch import TargetWatch, WatchState
from mpnet.render.watch import watch_line, watch_table


def ok(ms: float) -> Attempt:
    return ok_attempt({"tcp": ms / 2, "http": ms / 2})


def fail(phase: str = "tcp", kind: str = "refused") -> Attempt:
    return failed_attempt({"dns": 1.0}, phase=phase, kind=kind, message=kind, status=None)


@pytest.mark.parametrize(
    ("sequence", "drops", "consecutive"),
    [
        ("", 0, 0),
        ("ok", 0, 0),
        ("F", 0, 1),  # failing from the first attempt is not a drop
        ("F F", 0, 2),
        ("ok F", 1, 1),
        ("ok F F ok", 1, 0),
        ("ok F ok F F", 2, 2),
        ("F ok F", 1, 1),
    ],
)
def test_drops_and_consecutive_failures(sequence: str, drops: int, consecutive: int) -> None:
    watch = TargetWatch("okx", "rest")
    for token in sequence.split():
        watch.record(ok(10) if token == "ok" else fail())
    row = watch.row()
    assert (row.drops, row.consecutive_failures) == (drops, consecutive)
    assert row.attempts == len(sequence.split())


def test_rolling_window_keeps_the_last_attempts_only() -> None:
    watch = TargetWatch("okx", "rest", window=4)
    for attempt in (fail(), fail(), ok(10), ok(20), ok(30), ok(40)):
        watch.record(attempt)
    row = watch.row()
    assert (row.window, row.attempts) == (4, 6)
    assert row.loss_pct == 0  # the two failures have left the window
    assert (row.p50_ms, row.p95_ms) == (20, 40)


def test_loss_and_percentiles_over_successes() -> None:
    watch = TargetWatch("binance", "ws")
    for attempt in (ok(10), fail(), ok(30), fail()):
        watch.record(attempt)
    row = watch.row()
    assert row.loss_pct == 50
    assert (row.p50_ms, row.p95_ms) == (10, 30)
    assert row.last_ok is False and row.last_total_ms is None


def test_last_error_survives_a_recovery_and_names_the_finding() -> None:
    watch = TargetWatch("binance", "rest")
    watch.record(fail("http", "http_status"), finding="GEO_BLOCKED")
    watch.record(ok(12))
    row = watch.row()
    assert row.last_ok is True and row.last_total_ms == 12
    assert (row.last_error, row.last_finding) == ("http http_status", "GEO_BLOCKED")


def test_state_records_cycles_in_target_order() -> None:
    state = WatchState([("okx", "rest"), ("okx", "ws")])
    state.record_cycle([ok(5), fail()])
    assert state.last_cycle_ok is False
    state.record_cycle([ok(5), ok(7)])
    assert state.cycles == 2 and state.last_cycle_ok is True
    assert [row.drops for row in state.rows()] == [0, 0]
    with pytest.raises(ValueError):
        state.record_cycle([ok(5)])


def render(table: object) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


def test_table_shows_every_column_value() -> None:
    state = WatchState([("okx", "rest"), ("binance", "ws")])
    state.record_cycle([ok(10), fail("ws_upgrade", "http_status")], [None, "GEO_BLOCKED"])
    text = render(watch_table(state.rows(), cycles=state.cycles, interval=2, final=True))
    assert "summary after 1 cycle(s)" in text
    assert "ws_upgrade http_status (GEO_BLOCKED)" in text
    assert "tcp 5.0 http 5.0" in text
    assert "FAIL" in text and "100" in text  # loss % of the failing target


def test_plain_line_for_pipes() -> None:
    state = WatchState([("okx", "rest")])
    state.record_cycle([fail()])
    line = watch_line(state.rows()[0], cycle=1)
    assert line.startswith("cycle 1 okx rest FAIL tcp refused")
