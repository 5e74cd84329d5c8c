"""Rendering of ``mpnet proxy explain`` (pure): one table per target, and the JSON document.

Each target shows every proxy layer with what it held and its verdict, then mpnet's decision,
then what urllib, aiohttp, websockets, httpx and curl would do with the same URL and environment,
flagging each one that would take a different path than mpnet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from mpnet.core.libraries import LIBRARIES, CaseConflict
from mpnet.core.proxy import ProxyDecision
from mpnet.core.proxy_url import REDACTED, parse_proxy_url, redact_url_text
from mpnet.errors import MpnetError

VERDICT_STYLE = {
    "won": "bold green",
    "direct": "bold green",
    "shadowed": "yellow",
    "unset": "dim",
    "bypassed by no_proxy": "cyan",
    "ignored": "magenta",
}


@dataclass(frozen=True, slots=True)
class ProxyExplanation:
    """One target's explanation: mpnet's decision and the five libraries' verdicts."""

    target: str  # "rest" or "ws"
    url: str
    decision: ProxyDecision
    libraries: Mapping[str, str] = field(default_factory=dict)
    conflicts: tuple[CaseConflict, ...] = ()

    @property
    def mpnet_verdict(self) -> str:
        """mpnet's decision in the libraries' vocabulary: a redacted proxy URL or ``direct``."""
        return self.decision.proxy.redacted() if self.decision.proxy else "direct"

    def disagrees(self, library: str) -> bool:
        """True when ``library`` would not take the path mpnet takes (same proxy written with or
        without its default port counts as the same)."""
        verdict = self.libraries.get(library)
        if verdict is None or verdict.startswith("error:"):
            return True
        return _normalised(verdict) != self.mpnet_verdict


def _normalised(verdict: str) -> str:
    if verdict == "direct":
        return verdict
    try:
        return parse_proxy_url(verdict.replace(REDACTED, "x")).redacted()
    except MpnetError:
        return verdict


def explain_dict(exchange: str | None, targets: Sequence[ProxyExplanation]) -> dict[str, Any]:
    """``{"exchange", "targets": [{"target", "url", "decision", "trace", "libraries"}]}``."""
    return {
        "exchange": exchange,
        "targets": [
            {
                "target": t.target,
                "url": redact_url_text(t.url),
                "decision": {
                    "proxy": t.decision.proxy.redacted() if t.decision.proxy else None,
                    "scheme": t.decision.scheme,
                    "layer": t.decision.layer,
                    "source": t.decision.source,
                    "no_proxy_match": t.decision.no_proxy_match,
                },
                "trace": [entry.to_dict() for entry in t.decision.trace],
                "libraries": {name: t.libraries.get(name) for name in LIBRARIES},
                "env_conflicts": [conflict.to_dict() for conflict in t.conflicts],
            }
            for t in targets
        ],
    }


def _decision_line(decision: ProxyDecision) -> Text:
    line = Text("  mpnet: ")
    if decision.proxy is not None:
        line.append(decision.proxy.redacted(), style="bold")
    else:
        line.append("direct", style="bold")
    line.append(f"  ({decision.layer} layer")
    if decision.source:
        line.append(f", {decision.source}")
    if decision.no_proxy_match:
        line.append(f", no_proxy entry {decision.no_proxy_match!r}")
    line.append(")")
    return line


def _libraries_table(explanation: ProxyExplanation) -> Table:
    table = Table(show_header=True, box=None, padding=(0, 2), pad_edge=False)
    table.add_column("  other tools, same environment")
    table.add_column("would use", overflow="fold")
    table.add_column("")
    for name in LIBRARIES:
        verdict = explanation.libraries.get(name, "?")
        if explanation.disagrees(name):
            flag = Text("differs from mpnet", style="bold yellow")
            style = "red" if verdict.startswith("error:") else "yellow"
        else:
            flag, style = Text("same", style="dim"), ""
        table.add_row(f"  {name}", Text(verdict, style=style), flag)
    return table


#: Said once under the conflicts: the rules that decide which spelling each tool takes.
CASE_RULES = (
    "mpnet, urllib, aiohttp, websockets and httpx let the lower-case name win (set but empty, "
    "it disables the upper-case one); curl reads lower case first, skips an empty variable, and "
    "reads http_proxy only in lower case"
)


def _tools(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none"


def _conflicts_table(conflicts: Sequence[CaseConflict]) -> RenderableType:
    parts: list[RenderableType] = []
    for conflict in conflicts:
        names = " and ".join(v.name for v in conflict.spellings)
        parts.append(Text(f"  {names} are both set, to different values:", style="bold yellow"))
        table = Table(show_header=False, box=None, padding=(0, 2), pad_edge=False)
        table.add_column("variable", no_wrap=True)
        table.add_column("value", overflow="fold")
        table.add_column("who", overflow="fold")
        for spelling in conflict.spellings:
            who = Text()
            if spelling.read_by:
                who.append(f"read by {_tools(spelling.read_by)}", style="bold")
            if spelling.ignored_by:
                who.append("; " if spelling.read_by else "")
                who.append(f"ignored by {_tools(spelling.ignored_by)}", style="dim")
            table.add_row(f"    {spelling.name}", spelling.value, who)
        parts.append(table)
    # In a grid so that it folds at the terminal's width like the tables around it.
    rules = Table.grid()
    rules.add_column(overflow="fold")
    rules.add_row(Text(CASE_RULES, style="dim"))
    parts.append(Padding(rules, (0, 0, 0, 2)))
    return Group(*parts)


def explain_table(exchange: str | None, targets: Sequence[ProxyExplanation]) -> RenderableType:
    """A Rich renderable: per target, the layer table, mpnet's decision and the libraries."""
    parts: list[RenderableType] = []
    for t in targets:
        title = f"{exchange or ''} {t.target}  {redact_url_text(t.url)}".strip()
        table = Table(title=title, title_justify="left")
        table.add_column("layer")
        table.add_column("value", overflow="fold")
        table.add_column("verdict")
        table.add_column("detail", overflow="fold", style="dim")
        for entry in t.decision.trace:
            style = VERDICT_STYLE.get(entry.verdict, "")
            table.add_row(
                entry.layer, entry.value or "-", Text(entry.verdict, style=style), entry.detail
            )
        parts.append(table)
        parts.append(_decision_line(t.decision))
        if t.conflicts:
            parts.append(_conflicts_table(t.conflicts))
        if t.libraries:
            parts.append(_libraries_table(t))
        parts.append(Text(""))
    return Group(*parts)
