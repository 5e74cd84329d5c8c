"""``mpnet report FILE.jsonl``: latency over time from what ``mpnet watch --record`` wrote."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from mpnet.cli.app import app
from mpnet.cli.console import guarded, out, write_output


class ReportFormat(StrEnum):
    table = "table"
    html = "html"


@app.command()
def report(
    file: Annotated[str, typer.Argument(metavar="FILE.jsonl", help="A `watch --record` file.")],
    format: Annotated[
        ReportFormat,
        typer.Option("--format", help="table: a summary per target; html: the charts."),
    ] = ReportFormat.table,
    output: Annotated[
        str | None, typer.Option("--output", "-o", metavar="FILE", help="Write output to FILE.")
    ] = None,
) -> None:
    """Latency over time per target from `mpnet watch --record FILE.jsonl`: p50/p95, loss,
    drops and reconnects; with --format html, a page with a chart per target (the p50-p95
    band, failed cycles, drops, reconnects, and the clock offset and feed lag when recorded)."""
    with guarded():
        from mpnet.probe.timeline import parse_records

        with open(file, encoding="utf-8", errors="replace") as fh:
            timelines = parse_records(fh, source=file)
        if format is ReportFormat.html:
            from mpnet.cli.html_output import host_and_time
            from mpnet.render.timeline_html import render_timeline_html

            host, now = host_and_time()
            write_output(
                render_timeline_html(timelines, source=file, host=host, generated_at=now), output
            )
            return
        from mpnet.render.timeline_table import timeline_table

        table = timeline_table(timelines)
        if output:
            from rich.console import Console

            with open(output, "w", encoding="utf-8") as fh:
                Console(file=fh, width=120, highlight=False).print(table)
        else:
            out.print(table)
