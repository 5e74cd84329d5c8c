"""The findings section under the probe table (pure): per exchange and target, each finding's
severity, code and evidence, then ``hint: ...``. A Rich renderable for terminals and plain text
for logs; both show exactly the findings the results carry.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from mpnet.core.result import Finding, ProbeResult

#: How each severity is marked: (plain-text word, terminal symbol, style).
SEVERITY_MARKS = {
    "error": ("error", "✗", "bold red"),
    "warning": ("warning", "!", "bold yellow"),
}


def grouped_findings(results: Sequence[ProbeResult]) -> list[tuple[str, list[Finding]]]:
    """``("exchange target", findings)`` in result order, for results that have findings.

    A finding already shown for another target of the same exchange (PATH_DIVERGENCE is attached
    to both the REST and the WebSocket result) is shown once, under the first.
    """
    groups: list[tuple[str, list[Finding]]] = []
    shown: set[tuple[str, str, str]] = set()
    for result in results:
        fresh = []
        for finding in result.findings:
            key = (result.exchange, finding.code, finding.message)
            if key in shown:
                continue
            shown.add(key)
            fresh.append(finding)
        if fresh:
            groups.append((f"{result.exchange} {result.target}", fresh))
    return groups


def findings_section(results: Sequence[ProbeResult]) -> RenderableType | None:
    """The findings as a Rich renderable, or None when no result has any."""
    groups = grouped_findings(results)
    if not groups:
        return None
    # One code width for every group, so messages line up down the whole section.
    code_width = max(len(f.code) for _, findings in groups for f in findings)
    parts: list[RenderableType] = [Text("Findings", style="bold underline")]
    for heading, findings in groups:
        parts.append(Text(heading, style="bold"))
        grid = Table.grid(padding=(0, 1), pad_edge=False)
        grid.add_column(width=1, no_wrap=True)  # marker
        grid.add_column(width=code_width, no_wrap=True)  # code
        grid.add_column(overflow="fold")  # message, then the hint
        for finding in findings:
            _, symbol, style = SEVERITY_MARKS.get(finding.severity, SEVERITY_MARKS["error"])
            # Text objects, not markup: messages quote server pages that may contain [brackets].
            body = Text(finding.message)
            body.append("\nhint: ", style="bold cyan")
            body.append(finding.hint, style="cyan")
            grid.add_row(Text(symbol, style=style), Text(finding.code, style=style), body)
        parts.append(Padding(grid, (0, 0, 0, 2)))
    return Group(*parts)


def findings_text(results: Sequence[ProbeResult]) -> str:
    """The findings as plain text for logs (empty string when there are none)::

    binance rest
      error GEO_BLOCKED: the REST endpoint at api.binance.com answered 451 ...
        hint: binance refuses requests by the country of your egress IP: ...
    """
    lines: list[str] = []
    for heading, findings in grouped_findings(results):
        lines.append(heading)
        for finding in findings:
            word = SEVERITY_MARKS.get(finding.severity, SEVERITY_MARKS["error"])[0]
            lines.append(f"  {word} {finding.code}: {_one_line(finding.message)}")
            lines.append(f"    hint: {_one_line(finding.hint)}")
    return "\n".join(lines) + ("\n" if lines else "")


def _one_line(text: str) -> str:
    # Log lines stay lines: quoted server text may carry newlines.
    return " ".join(text.split())
