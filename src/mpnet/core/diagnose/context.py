"""What every rule needs about one result (:class:`_Context`), and how a finding is built.

Every message and hint goes through :func:`_make_finding`, which scrubs passwords.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from mpnet.core.diagnose.catalogue import CATALOGUE, hint_text
from mpnet.core.proxy import ProxyDecision
from mpnet.core.proxy_url import REDACTED, redact_url_text
from mpnet.core.result import Finding, ProbeResult

_DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}
_TARGET_LABEL = {"rest": "REST", "ws": "WebSocket"}


@dataclass(frozen=True, slots=True)
class _Context:
    """What every rule needs about one result, computed once."""

    result: ProbeResult
    host: str
    port: int | None
    secrets: tuple[str, ...]

    @classmethod
    def of(cls, result: ProbeResult, secrets: tuple[str, ...]) -> _Context:
        host, port = _host_port(result.url)
        return cls(result, host, port, secrets)

    @property
    def exchange(self) -> str:
        return self.result.exchange

    @property
    def label(self) -> str:
        return _TARGET_LABEL.get(self.result.target, self.result.target)

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}" if self.port is not None else self.host

    @property
    def via(self) -> str:
        """`` via PROXY (chosen by ORIGIN)`` or empty for a direct connection."""
        decision = self.result.proxy
        if decision.proxy is None:
            return ""
        return f" via {decision.proxy.redacted()} (chosen by {proxy_origin(decision)})"

    def fields(self, **extra: object) -> dict[str, object]:
        decision = self.result.proxy
        proxy = decision.proxy
        values: dict[str, object] = {
            "exchange": self.exchange,
            "url": self.result.url,
            "host": self.host,
            "port": self.port if self.port is not None else "?",
            "proxy": proxy.redacted() if proxy else "direct",
            "proxy_host": proxy.host if proxy else "?",
            "proxy_port": proxy.port if proxy else "?",
            "proxy_scheme": proxy.scheme if proxy else "?",
            "origin": proxy_origin(decision),
            "setting": _proxy_setting(decision, self.exchange),
        }
        values.update(extra)
        return values

    def finding(
        self, code: str, message: str, variant: str = "default", **extra: object
    ) -> Finding:
        return _make_finding(code, message, variant, self.fields(**extra), self.secrets)


def _make_finding(
    code: str, message: str, variant: str, fields: Mapping[str, object], secrets: Sequence[str]
) -> Finding:
    entry = CATALOGUE[code]
    # Scrub the values, not the template: a template may show the shape USER:PASSWORD@host.
    hint = hint_text(code, variant, **{k: _scrub(str(v), secrets) for k, v in fields.items()})
    for secret in secrets:
        hint = hint.replace(secret, REDACTED)
    return Finding(code, _scrub(message, secrets), hint, entry.severity)


def _scrub(text: str, secrets: Sequence[str]) -> str:
    # Server text (bodies, headers) is quoted verbatim: mask anything that looks like a password.
    text = redact_url_text(text)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def _host_port(url: str) -> tuple[str, int | None]:
    try:
        parts = urlsplit(url)
        host = parts.hostname or url
        port = parts.port
    except ValueError:
        return url, None
    if port is None:
        port = _DEFAULT_PORTS.get(parts.scheme.lower())
    return host, port


def proxy_origin(decision: ProxyDecision) -> str:
    """Which layer (and setting) chose the path: ``env HTTPS_PROXY``, ``cli --proxy``, ..."""
    if decision.source:
        return f"{decision.layer} {decision.source}"
    return f"the {decision.layer} layer"


def _proxy_setting(decision: ProxyDecision, exchange: str) -> str:
    """Where a person edits the proxy this decision used."""
    if decision.source:
        return f"`{decision.source}`" if decision.layer != "env" else decision.source
    return {
        "cli": "`--proxy`",
        "exchange": f"`exchanges.{exchange}.proxy`",
        "service": "`proxy:` in the config file",
        "env": "the *_proxy environment variable",
    }.get(decision.layer, "`--proxy`")
