"""The sparkline of `mpnet watch`'s trend column, and the history it draws."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from mpnet.core.watch import WatchRow
from mpnet.probe.timeline import LatencyTrend
from mpnet.render.sparkline import sparkline
from mpnet.render.watch import watch_table


@pytest.mark.parametrize(
    ("values", "line"),
    [
        ([], ""),
        ([1.0, 8.0], "▁█"),
        ([10.0, 20.0, 15.0, None, 10.0], "▁█▅✗▁"),
        ([5.0, 5.0], "▄▄"),
        ([None, None], "✗✗"),
    ],
)
def test_sparkline(values: list[float | None], line: str) -> None:
    assert sparkline(values) == line


def row(exchange: str, ok: bool, ms: float | None) -> WatchRow:
    return WatchRow(exchange=exchange, target="rest", attempts=1, window=1, last_ok=ok, last_ms=ms)


def test_the_trend_keeps_the_last_latencies_and_failures() -> None:
    trend = LatencyTrend(width=3)
    for ms in (1.0, 2.0, None, 4.0):
        trend.record([row("okx", ms is not None, ms), row("bybit", True, 9.0)])
    assert trend.values() == {("okx", "rest"): [2.0, None, 4.0], ("bybit", "rest"): [9.0] * 3}


def test_the_watch_table_shows_the_trend_column_only_when_given() -> None:
    rows = [row("okx", True, 4.0)]
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(
        watch_table(rows, cycles=3, interval=1, trends={("okx", "rest"): [1.0, None, 4.0]})
    )
    console.print(watch_table(rows, cycles=3, interval=1))
    with_trend, without = console.export_text().split("mpnet watch: cycle 3")[1:]
    assert "trend" in with_trend and "▁✗█" in with_trend
    assert "trend" not in without
