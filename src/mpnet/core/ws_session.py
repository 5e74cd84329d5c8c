"""The outcome of one ``mpnet ws`` session (pure data) and its JSON shape."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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

    @property
    def hint(self) -> str | None:
        """What the failure most likely means, when the answer gives it away (see
        :func:`session_hint`)."""
        return session_hint(self)

    def to_dict(self) -> dict[str, Any]:
        """``{"url", "ok", "phases", "proxy", "ssl", "tls", "messages", "error", "hint"}``."""
        phases = {name: round(self.phases[name], 3) for name in PHASE_ORDER if name in self.phases}
        tls = self.tls
        return {
            "url": self.url,
            "ok": self.ok,
            "phases": phases,
            "proxy": self.proxy.to_dict(),
            # Verification off is a warning on every surface, JSON included.
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
            "hint": self.hint,
        }


#: Upgrade failures of a ws:// URL that a TLS port causes: it hangs up on, or cannot parse,
#: a plain-text request.
_PLAIN_TO_TLS_KINDS = frozenset({"closed", "reset", "invalid_response", "invalid_handshake"})


def session_hint(result: WebSocketSessionResult) -> str | None:
    """The hint a websocat user needs when a session fails for a reason the answer shows:

    * a 2xx answer to the upgrade: a plain HTTP endpoint, not a WebSocket one;
    * ``wss://`` whose TLS handshake fails before any certificate: a plain port;
    * ``ws://`` whose upgrade is cut or answered with garbage, or with a 400 that names HTTPS:
      a TLS port.
    """
    error = result.error
    if error is None:
        return None
    try:
        parts = urlsplit(result.url)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    hostport = parts.netloc.rpartition("@")[2]
    if error.phase == "ws_upgrade" and error.status is not None and 200 <= error.status < 300:
        return (
            f"{parts.path or '/'} on {hostport} is a plain HTTP endpoint, not a WebSocket "
            "endpoint: check the path (the exchange's docs give its WebSocket URL)"
        )
    if scheme == "wss" and error.phase == "tls" and error.kind == "handshake":
        plain = urlunsplit(parts._replace(scheme="ws"))
        return (
            f"the TLS handshake failed before any certificate was seen: if {hostport} speaks "
            f"plain WebSocket (no TLS), use {plain}"
        )
    says_https = error.status == 400 and "https" in error.body.lower()
    if (
        scheme == "ws"
        and error.phase == "ws_upgrade"
        and (error.kind in _PLAIN_TO_TLS_KINDS or says_https)
    ):
        secure = urlunsplit(parts._replace(scheme="wss"))
        return (
            f"{hostport} did not answer the plain-text upgrade as HTTP: if it speaks TLS, "
            f"use {secure}"
        )
    return None


def message_line(message: str | bytes) -> str:
    """One message as one line of JSON, for ``mpnet ws --max-chars 0`` (JSON lines): a JSON
    text message as it came when it is one line, any other text as a JSON string, binary as
    ``{"binary_base64": ...}``."""
    if isinstance(message, bytes):
        return json.dumps(message_to_json(message))
    if "\n" not in message and "\r" not in message:
        try:
            json.loads(message)
        except ValueError:
            pass
        else:
            return message
    return json.dumps(message, ensure_ascii=False)
