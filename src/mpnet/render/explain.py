"""Rendering of ``mpnet proxy explain`` (pure): one table per target, and the JSON document.

Each target shows every proxy layer with what it held and its verdict, then mpnet's decision,
then what urllib, aiohttp, websockets, httpx and curl would do with the same URL and environment,
flagging each one that would take a different path than mpnet.
"""

from __future__ import annotations

import functools
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
from mpnet.core.tls import TLSDecision, store_words
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
    #: The TLS decision of the same connection: which store checks the exchange, and which an
    #: https:// proxy's own certificate (None: not shown).
    tls: TLSDecision | None = None

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


def trust_stores(proxy: ProxyDecision, tls: TLSDecision | None) -> dict[str, str | None] | None:
    """``{"exchange": ..., "proxy": ...}``: the store that verifies the exchange's certificate
    and the one that verifies an ``https://`` proxy's (None when the proxy has no TLS)."""
    if tls is None:
        return None
    https_proxy = proxy.proxy is not None and proxy.proxy.scheme == "https"
    return {
        "exchange": store_words(tls),
        "proxy": tls.proxy_store() if https_proxy else None,
    }


def explain_dict(exchange: str | None, targets: Sequence[ProxyExplanation]) -> dict[str, Any]:
    """``{"exchange", "targets": [{"target", "url", "decision", "trace", "libraries",
    "env_conflicts", "stores"}]}``."""
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
                "stores": trust_stores(t.decision, t.tls),
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


def _library_flag(explanation: ProxyExplanation, name: str) -> tuple[Text, str]:
    """The flag beside one tool's verdict, and the verdict's style."""
    verdict = explanation.libraries.get(name, "?")
    if explanation.disagrees(name):
        style = "red" if verdict.startswith("error:") else "yellow"
        return Text("differs from mpnet", style="bold yellow"), style
    return Text("same", style="dim"), ""


def _libraries_table(explanation: ProxyExplanation) -> Table:
    table = Table(show_header=True, box=None, padding=(0, 2), pad_edge=False)
    table.add_column("  other tools, same environment", no_wrap=True)
    table.add_column("would use", no_wrap=True)
    table.add_column("", no_wrap=True)
    for name in LIBRARIES:
        verdict = explanation.libraries.get(name, "?")
        flag, style = _library_flag(explanation, name)
        table.add_row(f"  {name}", Text(verdict, style=style), flag)
    return table


def _libraries_lines(explanation: ProxyExplanation) -> list[RenderableType]:
    """The tools' verdicts when the table is too wide: a line per tool with its flag, the
    verdict under it (wrapped between words: a proxy URL stays whole on its line)."""
    parts: list[RenderableType] = [Text("  other tools, same environment:", style="bold")]
    for name in LIBRARIES:
        flag, style = _library_flag(explanation, name)
        parts.append(Text.assemble(f"  {name}: ", flag))
        verdict = Text(explanation.libraries.get(name, "?"), style=style)
        parts.append(Padding(verdict, (0, 0, 0, 4)))
    return parts


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
    """A Rich renderable: per target, the layer table, mpnet's decision and the libraries.

    Each table is shown whole when it fits the width it is printed at; narrower, the layers
    and the tools are listed a line each, so that no URL is split across lines."""
    from mpnet.render.fit import Fitted, indented

    parts: list[RenderableType] = []
    for t in targets:
        title = f"{exchange or ''} {t.target}  {redact_url_text(t.url)}".strip()
        parts.append(Text(title, style="italic"))
        parts.append(Fitted([True, False], functools.partial(_layers, t)))
        parts.append(indented(_decision_line(t.decision)))
        stores = trust_stores(t.decision, t.tls)
        if stores is not None:
            line = f"  TLS: the exchange is verified against the {stores['exchange']}"
            if stores["proxy"] is not None:
                line += f"; the https proxy against {stores['proxy']}"
            parts.append(indented(Text(line)))
        if t.conflicts:
            parts.append(_conflicts_table(t.conflicts))
        if t.libraries:
            parts.append(Fitted([True, False], functools.partial(_libraries, t)))
        parts.append(Text(""))
    return Group(*parts)


def _libraries(
    explanation: ProxyExplanation, wide: bool
) -> tuple[RenderableType, list[RenderableType]]:
    """The tools' table (``wide``), or a line per tool with its verdict under it."""
    if wide:
        return _libraries_table(explanation), []
    return Group(*_libraries_lines(explanation)), []


def _layers(
    explanation: ProxyExplanation, wide: bool
) -> tuple[RenderableType, list[RenderableType]]:
    """The layer table (``wide``), or a line per layer: its verdict and what it held."""
    trace = explanation.decision.trace
    if wide:
        table = Table()
        table.add_column("layer", no_wrap=True)
        table.add_column("value", no_wrap=True)
        table.add_column("verdict", no_wrap=True)
        table.add_column("detail", no_wrap=True, style="dim")
        for entry in trace:
            style = VERDICT_STYLE.get(entry.verdict, "")
            table.add_row(
                entry.layer, entry.value or "-", Text(entry.verdict, style=style), entry.detail
            )
        return table, []
    width = max((len(entry.layer) for entry in trace), default=0)
    lines: list[RenderableType] = []
    for entry in trace:
        line = Text(f"  {entry.layer:<{width}}  ")
        line.append(entry.verdict, style=VERDICT_STYLE.get(entry.verdict, ""))
        if entry.detail:
            line.append(f" ({entry.detail})", style="dim")
        lines.append(line)
        if entry.value:
            lines.append(Padding(Text(entry.value), (0, 0, 0, width + 4)))
    return Group(*lines), []
