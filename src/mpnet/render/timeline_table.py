"""``mpnet report FILE.jsonl`` in a terminal (pure): one summary line per target."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.table import Table
from rich.text import Text

from mpnet.probe.timeline import Timeline, summarize
from mpnet.render.html import fmt_ms


def timeline_table(timelines: Sequence[Timeline]) -> Table:
    """Cycles, loss, p50/p95/max of the successful cycles, drops and reconnects per target."""
    table = Table(
        title="mpnet report: latency over the recording (--format html draws it over time)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for name in ("exchange", "target"):
        table.add_column(name, no_wrap=True)
    for name in ("cycles", "loss%", "p50", "p95", "max", "drops", "reconnects"):
        table.add_column(name, justify="right", no_wrap=True)
    for timeline in timelines:
        summary = summarize(timeline)
        loss = summary.loss_pct
        table.add_row(
            timeline.exchange,
            timeline.target,
            str(summary.cycles),
            Text(f"{loss:.1f}", style="red" if loss else "") if loss is not None else "-",
            fmt_ms(summary.p50_ms),
            fmt_ms(summary.p95_ms),
            fmt_ms(summary.max_ms),
            Text(str(summary.drops), style="red" if summary.drops else ""),
            Text(str(summary.reconnects), style="yellow" if summary.reconnects else ""),
        )
    return table
