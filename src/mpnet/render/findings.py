"""The findings section under the probe table (pure): per exchange and target, each finding's
severity, code and evidence, then ``hint: ...``. A Rich renderable for terminals and plain text
for logs; both show exactly the findings the results carry.

One cause, one finding: when targets of several exchanges carry the same finding but for their
own names (every lookup failed because there is no DNS, the same proxy is down, the same
inspecting CA is untrusted), it is shown once, under the list of affected targets, with one
hint. JSON keeps every target's own findings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from mpnet.core.result import Finding, ProbeResult

#: How each severity is marked: (plain-text word, terminal symbol, style).
SEVERITY_MARKS = {
    "error": ("error", "✗", "bold red"),
    "warning": ("warning", "!", "bold yellow"),
    "info": ("info", "i", "bold blue"),
}


#: A finding shared by targets of at least this many exchanges is shown once for all of them.
SHARED_BY_EXCHANGES = 2


@dataclass(frozen=True, slots=True)
class SharedCause:
    """One finding that several targets carry for the same cause."""

    finding: Finding  # the first target's, its message saying how many other hosts
    targets: tuple[tuple[str, str], ...]  # (exchange, target) in result order

    def heading(self, results: Sequence[ProbeResult]) -> str:
        """``26 targets, one cause: binance, bybit, okx ws``: a bare exchange name stands for
        every target of it in ``results``."""
        probed: dict[str, list[str]] = {}
        for result in results:
            probed.setdefault(result.exchange, []).append(result.target)
        affected: dict[str, list[str]] = {}
        for exchange, target in self.targets:
            affected.setdefault(exchange, []).append(target)
        names = [
            exchange
            if sorted(targets) == sorted(probed.get(exchange, ()))
            else f"{exchange} {' '.join(targets)}"
            for exchange, targets in affected.items()
        ]
        return f"{len(self.targets)} targets, one cause: {', '.join(names)}"


def shared_causes(results: Sequence[ProbeResult]) -> list[SharedCause]:
    """Findings that targets of :data:`SHARED_BY_EXCHANGES` or more exchanges carry with the
    same code, severity, message and hint once their own exchange name, host and URL are set
    aside: one cause, shown once."""
    clusters: dict[tuple[str, ...], list[tuple[ProbeResult, Finding]]] = {}
    for result in results:
        for finding in result.findings:
            clusters.setdefault(_cause_key(result, finding), []).append((result, finding))
    causes = []
    for members in clusters.values():
        if len({result.exchange for result, _ in members}) < SHARED_BY_EXCHANGES:
            continue
        targets = tuple(dict.fromkeys((r.exchange, r.target) for r, _ in members))
        first, finding = members[0]
        hosts = dict.fromkeys(_host(result) for result, _ in members)
        others = len(hosts) - 1
        message = finding.message
        host = _host(first)
        if others and host:
            # "no DNS resolver answered for api.binance.com (and 20 other hosts): ..."
            suffix = f" (and {others} other host{'s' if others > 1 else ''})"
            message = re.sub(rf"{_bounded(host)}(:\d+)?", rf"\g<0>{suffix}", message, count=1)
        shown = Finding(finding.code, message, finding.hint, finding.severity)
        causes.append(SharedCause(shown, targets))
    return causes


def _host(result: ProbeResult) -> str:
    try:
        return (urlsplit(result.url).hostname or "").lower()
    except ValueError:
        return ""


def _bounded(word: str) -> str:
    """A pattern for ``word`` as a whole name: not inside a longer host or exchange name."""
    return rf"(?<![\w.-]){re.escape(word)}(?![\w-])"


def _cause_key(result: ProbeResult, finding: Finding) -> tuple[str, ...]:
    """The finding with this target's own URL, host and exchange name replaced by placeholders:
    equal keys across exchanges mean the same cause, said about different names."""
    host = _host(result)

    def neutral(text: str) -> str:
        text = text.replace(result.url, "{url}")
        if host:
            text = re.sub(_bounded(host), "{host}", text, flags=re.IGNORECASE)
        return re.sub(_bounded(result.exchange), "{exchange}", text)

    return (finding.code, finding.severity, neutral(finding.message), neutral(finding.hint))


def grouped_findings(results: Sequence[ProbeResult]) -> list[tuple[str, list[Finding]]]:
    """``(heading, findings)``: first one group per shared cause (see :func:`shared_causes`),
    headed by the affected targets; then ``("exchange target", findings)`` in result order for
    the findings left.

    A finding already shown for another target of the same exchange (PATH_DIVERGENCE is attached
    to both the REST and the WebSocket result) is shown once, under the first.
    """
    groups: list[tuple[str, list[Finding]]] = []
    for cause in shared_causes(results):
        groups.append((cause.heading(results), [cause.finding]))
    shared_keys = {
        key for key, count in _key_exchanges(results).items() if count >= SHARED_BY_EXCHANGES
    }
    shown: set[tuple[str, str, str]] = set()
    for result in results:
        fresh = []
        for finding in result.findings:
            if _cause_key(result, finding) in shared_keys:
                continue
            key = (result.exchange, finding.code, finding.message)
            if key in shown:
                continue
            shown.add(key)
            fresh.append(finding)
        if fresh:
            groups.append((f"{result.exchange} {result.target}", fresh))
    return groups


def _key_exchanges(results: Sequence[ProbeResult]) -> dict[tuple[str, ...], int]:
    exchanges: dict[tuple[str, ...], set[str]] = {}
    for result in results:
        for finding in result.findings:
            exchanges.setdefault(_cause_key(result, finding), set()).add(result.exchange)
    return {key: len(names) for key, names in exchanges.items()}


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
