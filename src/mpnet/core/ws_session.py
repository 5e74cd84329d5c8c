"""The outcome of one ``mpnet ws`` session (pure data) and its JSON shape."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mpnet.core.proxy import ProxyDecision
from mpnet.core.result import PHASE_ORDER, ErrorInfo, TLSInfo
from mpnet.core.tls import TLSDecision


def message_to_json(message: str | bytes) -> str | dict[str, str]:
    """Text stays text; a binary message becomes ``{"binary_base64": ...}``."""
    if isinstance(message, bytes):
        return {"binary_base64": base64.b64encode(message).decode("ascii")}
    return message


@dataclass(frozen=True, slots=True)
class WebSocketSessionResult:
    """One WebSocket session: connect, send, receive, close.

    ``url`` is safe to print (credentials masked). ``phases`` holds the phases that completed,
    also when the session failed; ``error`` is None when it succeeded.
    """

    url: str
    backend: str
    proxy: ProxyDecision
    ssl: TLSDecision
    phases: Mapping[str, float] = field(default_factory=dict)
    messages: tuple[str | bytes, ...] = ()
    sent: int = 0
    tls: TLSInfo | None = None
    address: str | None = None
    error: ErrorInfo | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """``{"url", "ok", "phases", "proxy", "ssl", "tls", "messages", "error"}``."""
        phases = {name: round(self.phases[name], 3) for name in PHASE_ORDER if name in self.phases}
        tls = self.tls
        return {
            "url": self.url,
            "ok": self.ok,
            "phases": phases,
            "proxy": self.proxy.to_dict(),
            # DESIGN: verification off is a warning on every surface, JSON included.
            "ssl": self.ssl.to_dict(),
            "tls": None
            if tls is None
            else {
                "version": tls.version,
                "cipher": tls.cipher,
                "cert_not_after": tls.cert_not_after,
                "cert_days_left": tls.cert_days_left,
                "issuer": tls.cert_issuer,
            },
            "messages": [message_to_json(m) for m in self.messages],
            "error": self.error.to_dict() if self.error else None,
        }
