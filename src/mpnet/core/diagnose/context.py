"""What every rule needs about one result (:class:`_Context`), and how a finding is built.

Every message and hint goes through :func:`_make_finding`, which scrubs passwords.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from mpnet.core.diagnose.catalogue import CATALOGUE, hint_text
from mpnet.core.proxy import ProxyDecision
from mpnet.core.proxy_url import REDACTED, ProxyURL, redact_url_text
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
            "s_client": s_client_command(self.host, self.port, proxy),
        }
        values.update(extra)
        return values

    def finding(
        self, code: str, message: str, variant: str = "default", **extra: object
    ) -> Finding:
        return _make_finding(code, message, variant, self.fields(**extra), self.secrets)


def _trust_store(ctx: _Context) -> str:
    """The trust store a verified connection checked its chain against, in words."""
    ssl = ctx.result.ssl
    if ssl.ca_kind in ("file", "dir"):
        what = "bundle" if ssl.ca_kind == "file" else "directory"
        return f"the CA {what} {ssl.ca} (from the {ssl.layer} layer)"
    if ssl.ca_kind == "certifi":
        return "certifi's CA bundle"
    return "the system trust store"


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


def s_client_command(host: str, port: int | None, proxy: ProxyURL | None) -> str:
    """The command that shows the certificate chain ``host`` presents, through ``proxy`` as
    mpnet went: ``openssl s_client -proxy`` for an HTTP proxy (it speaks CONNECT); openssl has
    no SOCKS and no TLS-to-the-proxy, so for those ``curl -v`` through the same proxy (it prints
    the certificate's subject and issuer). Never a password: ``PASSWORD`` stands for it."""
    where = f"{host}:{port if port is not None else 443}"
    shown = f"[{host}]" if ":" in host else host
    if proxy is None:
        return f"`openssl s_client -showcerts -connect {where} -servername {host}`"
    user = f"{proxy.username}:PASSWORD@" if proxy.username is not None else ""
    if proxy.scheme == "http":
        login = (
            f" -proxy_user {proxy.username} -proxy_pass pass:PASSWORD"
            if proxy.username is not None
            else ""
        )
        return (
            f"`openssl s_client -showcerts -connect {where} -servername {host} "
            f"-proxy {proxy.host}:{proxy.port}{login}` (through the same proxy)"
        )
    what = "a SOCKS proxy" if proxy.is_socks else "TLS to an https:// proxy"
    return (
        f"`curl -v --proxy {proxy.scheme}://{user}{proxy.host}:{proxy.port} "
        f"https://{shown}:{port if port is not None else 443}/` (through the same proxy: "
        f"openssl s_client cannot use {what}; curl -v prints the server certificate's "
        "subject and issuer)"
    )


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
