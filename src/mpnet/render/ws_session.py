"""``mpnet ws`` as a Rich renderable (pure): outcome, waterfall, messages, proxy and TLS lines."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text

from mpnet.core.ws_session import WebSocketSessionResult
from mpnet.render.waterfall import render_waterfall

#: Longest message shown in the table; JSON output always has the whole message.
MESSAGE_PREVIEW = 200


def message_preview(message: str | bytes, limit: int = MESSAGE_PREVIEW) -> str:
    """One line: text with newlines escaped, binary as its size and first bytes in hex.
    ``limit`` 0 keeps the whole text."""
    if isinstance(message, bytes):
        head = message[:16].hex(" ")
        more = " ..." if len(message) > 16 else ""
        return f"<{len(message)} bytes binary: {head}{more}>"
    text = message.replace("\r", "\\r").replace("\n", "\\n")
    if limit and len(text) > limit:
        return f"{text[:limit]}... ({len(message)} chars)"
    return text


def _proxy_line(result: WebSocketSessionResult) -> Text:
    decision = result.proxy
    line = Text("proxy  ", style="bold")
    if decision.proxy is None:
        label = "direct"
        if decision.no_proxy_match:
            label += f" (no_proxy entry {decision.no_proxy_match})"
        line.append(label)
    else:
        line.append(decision.proxy.redacted())
    source = f"{decision.layer} layer" + (f", {decision.source}" if decision.source else "")
    line.append(f"  ({source})", style="dim")
    return line


def _tls_lines(result: WebSocketSessionResult) -> list[Text]:
    lines = []
    policy = result.ssl
    if result.url.lower().startswith("wss://"):
        line = Text("ssl    ", style="bold")
        if policy.verify:
            line.append(f"verify against {policy.ca or 'the system store'}")
        else:
            line.append("verification OFF", style="bold red")
        line.append(f"  ({policy.layer} layer: {policy.reason})", style="dim")
        lines.append(line)
    tls = result.tls
    if tls is not None:
        line = Text("tls    ", style="bold")
        line.append(" ".join(part for part in (tls.version, tls.cipher) if part))
        if tls.cert_not_after:
            left = f", {tls.cert_days_left} days left" if tls.cert_days_left is not None else ""
            style = "red" if (tls.cert_days_left or 0) < 0 else ""
            line.append(f"; certificate until {tls.cert_not_after}{left}", style=style)
        if tls.cert_issuer:
            line.append(f"; issuer {tls.cert_issuer}", style="dim")
        lines.append(line)
    for warning in policy.warnings:
        lines.append(Text(f"warning: {warning}", style="bold yellow"))
    return lines


def render_ws_session(
    result: WebSocketSessionResult, *, max_chars: int = MESSAGE_PREVIEW, messages: bool = True
) -> RenderableType:
    """Header, phase waterfall, received messages (each cut at ``max_chars``; with
    ``messages=False`` only their count), proxy/TLS lines, the error and its hint if any."""
    header = Text()
    header.append(
        "OK  " if result.ok else "FAILED  ", style="bold green" if result.ok else "bold red"
    )
    header.append(result.url, style="bold")
    via = f"  connected to {result.address}" if result.address else ""
    header.append(f"  [{result.backend}]{via}", style="dim")
    parts: list[RenderableType] = [header]
    if result.phases:
        parts.append(render_waterfall(result.phases))
    if result.messages:
        parts.append(
            Text(f"messages ({len(result.messages)} received, {result.sent} sent)", style="bold")
        )
        if messages:
            for number, message in enumerate(result.messages, start=1):
                parts.append(Text(f"  {number:>3}  {message_preview(message, max_chars)}"))
    parts.append(_proxy_line(result))
    parts.extend(_tls_lines(result))
    if result.error is not None:
        error = result.error
        parts.append(Text(f"error  [{error.phase}/{error.kind}] {error.message}", style="red"))
    hint = result.hint
    if hint:
        line = Text("hint   ", style="bold cyan")
        line.append(hint, style="cyan")
        parts.append(line)
    return Group(*parts)
