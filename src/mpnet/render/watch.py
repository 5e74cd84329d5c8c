"""The ``mpnet watch`` views (pure): the live table, the final summary and plain log lines."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from mpnet.core.result import PHASE_ORDER
from mpnet.probe.watch import WatchRow

#: Short column names for the phases, so a whole row fits an 120-column terminal.
PHASE_ABBREVIATIONS = {
    "bootstrap": "boot",
    "dns": "dns",
    "tcp": "tcp",
    "proxy": "proxy",
    "tls": "tls",
    "http": "http",
    "ws_upgrade": "upg",
    "first_message": "1st",
    "ping_rtt": "ping",
}


def watch_table(
    rows: Sequence[WatchRow], *, cycles: int, interval: float, final: bool = False
) -> Table:
    """The table ``mpnet watch`` refreshes every cycle (and prints once more at the end)."""
    window = max((row.window for row in rows), default=0)
    title = (
        f"mpnet watch: summary after {cycles} cycle(s)"
        if final
        else f"mpnet watch: cycle {cycles}, every {interval:g} s"
    )
    table = Table(
        title=title,
        caption=f"p50/p95/loss over the last {window} attempt(s); drops = ok -> fail transitions",
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("exchange")
    table.add_column("target")
    table.add_column("last")
    table.add_column("last phases (ms)", no_wrap=True)
    table.add_column("total ms", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p95 ms", justify="right")
    table.add_column("loss %", justify="right")
    table.add_column("last error")
    table.add_column("fails", justify="right")
    table.add_column("drops", justify="right")
    for row in rows:
        table.add_row(
            row.exchange,
            row.target,
            _status(row),
            phases_text(row),
            _ms(row.last_total_ms),
            _ms(row.p50_ms),
            _ms(row.p95_ms),
            f"{row.loss_pct:.0f}" if row.loss_pct is not None else "-",
            error_text(row),
            Text(str(row.consecutive_failures), style="red" if row.consecutive_failures else ""),
            str(row.drops),
        )
    return table


def watch_line(row: WatchRow, *, cycle: int) -> str:
    """One plain log line for a target after a cycle (used when stdout is not a terminal)."""
    state = "ok" if row.last_ok else "FAIL"
    parts = [f"cycle {cycle}", row.exchange, row.target, state]
    if row.last_ok:
        parts.append(f"{_ms(row.last_total_ms)} ms")
    else:
        parts.append(error_text(row))
    parts.append(f"p50 {_ms(row.p50_ms)} p95 {_ms(row.p95_ms)} loss {row.loss_pct or 0:.0f}%")
    parts.append(f"drops {row.drops}")
    return " ".join(parts)


def phases_text(row: WatchRow) -> str:
    ordered = sorted(
        row.last_phases.items(),
        key=lambda kv: PHASE_ORDER.index(kv[0]) if kv[0] in PHASE_ORDER else len(PHASE_ORDER),
    )
    return " ".join(f"{PHASE_ABBREVIATIONS.get(k, k)} {v:.1f}" for k, v in ordered) or "-"


def error_text(row: WatchRow) -> str:
    if row.last_error is None:
        return "-"
    if row.last_finding:
        return f"{row.last_error} ({row.last_finding})"
    return row.last_error


def _status(row: WatchRow) -> Text:
    if row.last_ok is None:
        return Text("-")
    return Text("ok", style="green") if row.last_ok else Text("FAIL", style="bold red")


def _ms(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"
