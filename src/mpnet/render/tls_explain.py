"""Rendering of ``mpnet ssl explain`` (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from mpnet.core.tls import TLSDecision, store_words

VERDICT_STYLE = {"won": "bold green", "shadowed": "yellow", "unset": "dim"}


def tls_explain_dict(
    exchange: str | None, targets: Sequence[tuple[str, str, TLSDecision]]
) -> dict[str, Any]:
    """``{"exchange", "targets": [{"target", "url", "decision", "trace", "warnings"}]}``."""
    return {
        "exchange": exchange,
        "targets": [
            {
                "target": target,
                "url": url,
                "decision": {
                    "verify": d.verify,
                    "ca": d.ca,
                    "layer": d.layer,
                    "reason": d.reason,
                },
                "trace": [entry.to_dict() for entry in d.trace],
                "warnings": list(d.warnings),
                # Which store checks the exchange's certificate, and which an https:// proxy's.
                "stores": {"exchange": store_words(d), "proxy": d.proxy_store()},
                "proxy_ca": (
                    {"ca": d.proxy_ca, "layer": d.proxy_ca_layer, "origin": d.proxy_ca_origin}
                    if d.proxy_ca is not None
                    else None
                ),
            }
            for target, url, d in targets
        ],
    }


def tls_explain_table(
    exchange: str | None, targets: Sequence[tuple[str, str, TLSDecision]]
) -> RenderableType:
    parts: list[RenderableType] = []
    for target, url, d in targets:
        table = Table(title=f"{exchange or ''} {target}  {url}".strip(), title_justify="left")
        table.add_column("layer")
        table.add_column("setting", overflow="fold")
        table.add_column("verdict")
        table.add_column("from", overflow="fold", style="dim")
        for entry in d.trace:
            style = VERDICT_STYLE.get(entry.verdict, "")
            table.add_row(
                entry.layer, entry.value or "-", Text(entry.verdict, style=style), entry.detail
            )
        parts.append(table)
        policy = f"verify against {d.ca}" if d.verify else "[bold red]verification OFF[/]"
        parts.append(Text.from_markup(f"  policy: {policy} — {d.layer} layer: {d.reason}"))
        parts.append(Text(f"  an https:// proxy's certificate: verified against {d.proxy_store()}"))
        for warning in d.warnings:
            parts.append(Text(f"  warning: {warning}", style="bold red"))
        parts.append(Text(""))
    return Group(*parts)
