"""Proxy resolution (pure): which proxy a connection uses, which layer chose it, and why.

No environment reads, no I/O: the environment is passed in as a mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mpnet.core.proxy_url import DIRECT, ProxyChoice, ProxyURL, redact_url_text

Layer = Literal["route", "cli", "exchange", "service", "env", "default"]
#: ``route`` (``--via``) is consulted only when a route was asked for; it then wins over all.
LAYERS: tuple[Layer, ...] = ("route", "cli", "exchange", "service", "env", "default")


@dataclass(frozen=True, slots=True)
class ServiceProxy:
    """The config file's top-level ``proxy:`` block (the service layer).

    ``http`` serves http/ws targets, ``https`` serves https/wss, ``socks`` and then ``all`` serve
    any target the scheme-specific key leaves unset. ``no_proxy`` bypasses this layer only.
    ``origin`` says where the block was written (``mpnet.yaml:3``).
    """

    http: ProxyURL | None = None
    https: ProxyURL | None = None
    socks: ProxyURL | None = None
    all: ProxyURL | None = None
    no_proxy: str | None = None
    origin: str = "config"


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One layer consulted while resolving: what it held and what became of it."""

    layer: Layer
    value: str | None  # redacted proxy URL, "direct", or None when unset
    verdict: str  # "won", "shadowed", "unset", "bypassed by no_proxy", "direct", ...
    detail: str = ""  # e.g. "HTTPS_PROXY (https_proxy unset)" or "no_proxy entry .internal"

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "value": self.value,
            "verdict": self.verdict,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class ProxyDecision:
    """The outcome of :func:`resolve_proxy`.

    ``proxy`` is None for a direct connection. ``source`` names the winning setting within its
    layer (``--proxy``, ``exchanges.deribit.proxy.ws``, ``proxy.https``, ``HTTPS_PROXY``).
    ``no_proxy_match`` is the no_proxy entry that bypassed a proxy, if any.
    """

    target_url: str
    proxy: ProxyURL | None
    layer: Layer
    source: str | None = None
    no_proxy_match: str | None = None
    trace: tuple[TraceEntry, ...] = field(default=())

    @property
    def scheme(self) -> str | None:
        return self.proxy.scheme if self.proxy else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``proxy`` shape ``{"url", "layer", "scheme"}`` (docs/architecture.md, "JSON
        contract") plus source, no_proxy and the trace (every layer consulted; values redacted),
        so a report shows why, not only what."""
        return {
            "url": self.proxy.redacted() if self.proxy else None,
            "layer": self.layer,
            "scheme": self.scheme,
            "source": self.source,
            "no_proxy_match": self.no_proxy_match,
            "trace": [entry.to_dict() for entry in self.trace],
        }


# -- resolution ---------------------------------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
_SECURE = ("https", "wss")


@dataclass(frozen=True, slots=True)
class ProxyTarget:
    """The parts of a target URL that proxy resolution looks at.

    ``host`` is lower case, IPv6 without brackets; ``port`` is the effective port (explicit,
    else 80 for http/ws and 443 for https/wss).
    """

    scheme: str
    host: str
    port: int

    @property
    def secure(self) -> bool:
        return self.scheme in _SECURE


def parse_target(target_url: str) -> ProxyTarget:
    """Split a target URL (http, https, ws or wss) into scheme, host and effective port.

    Raises:
        UsageError: the URL has another scheme, no host, or a bad port.
    """
    from urllib.parse import urlsplit

    from mpnet.errors import UsageError

    shown = redact_url_text(target_url)
    try:
        parts = urlsplit(target_url.strip())
        explicit_port = parts.port
    except ValueError:
        raise UsageError(f"{shown!r} is not a valid URL (bad host or port)") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise UsageError(f"{shown!r}: the URL must start with http://, https://, ws:// or wss://")
    host = parts.hostname
    if not host:
        raise UsageError(f"{shown!r}: the URL has no host")
    return ProxyTarget(scheme=scheme, host=host, port=explicit_port or _DEFAULT_PORTS[scheme])


@dataclass(frozen=True, slots=True)
class _EnvProxy:
    """What the environment layer holds for one target, before its no_proxy is applied."""

    variable: str | None  # the variable that supplies the proxy, as found
    raw: str | None  # its value as written
    notes: tuple[str, ...] = ()  # variables skipped and why


def _env_pair(env: Mapping[str, str], lower: str, *, upper_ignored_because: str = "") -> _EnvProxy:
    """Look up ``lower`` then ``LOWER.upper()``: lower case wins, an empty lower-case variable
    disables its upper-case twin, and an empty variable is unset."""
    upper = lower.upper()
    if lower in env:
        if env[lower].strip():
            return _EnvProxy(lower, env[lower])
        if env.get(upper, "").strip():
            return _EnvProxy(None, None, (f"{lower} is set but empty, which disables {upper}",))
        return _EnvProxy(None, None)
    if env.get(upper, "").strip():
        if upper_ignored_because:
            return _EnvProxy(None, None, (f"{upper} ignored: {upper_ignored_because}",))
        return _EnvProxy(upper, env[upper])
    return _EnvProxy(None, None)


def _env_proxy(env: Mapping[str, str], target: ProxyTarget) -> _EnvProxy:
    if target.secure:
        first = _env_pair(env, "https_proxy")
    else:
        # httpoxy (CVE-2016-5385): under CGI, HTTP_PROXY may come from a request's Proxy: header.
        first = _env_pair(
            env,
            "http_proxy",
            upper_ignored_because=(
                "REQUEST_METHOD is set (CGI), so it may come from a client's Proxy: header"
                if "REQUEST_METHOD" in env
                else ""
            ),
        )
    if first.variable:
        return first
    fallback = _env_pair(env, "all_proxy")
    return _EnvProxy(fallback.variable, fallback.raw, first.notes + fallback.notes)


def env_no_proxy(env: Mapping[str, str]) -> tuple[str | None, str]:
    """(variable, value) of the environment's no_proxy: lower case wins, empty disables."""
    if "no_proxy" in env:
        return ("no_proxy", env["no_proxy"]) if env["no_proxy"].strip() else (None, "")
    if env.get("NO_PROXY", "").strip():
        return "NO_PROXY", env["NO_PROXY"]
    return None, ""


def _service_proxy(service: ServiceProxy, target: ProxyTarget) -> tuple[str, ProxyURL] | None:
    specific = ("https", service.https) if target.secure else ("http", service.http)
    for key, proxy in (specific, ("socks", service.socks), ("all", service.all)):
        if proxy is not None:
            return f"proxy.{key}", proxy
    return None


def _choice_value(choice: ProxyChoice) -> str | None:
    if choice is None:
        return None
    return DIRECT if choice == DIRECT else choice.redacted()


def resolve_proxy(
    target_url: str,
    *,
    route: ProxyChoice = None,
    route_source: str = "",
    cli: ProxyChoice = None,
    exchange: ProxyChoice = None,
    exchange_origin: str = "",
    service: ServiceProxy | None = None,
    env: Mapping[str, str] | None = None,
) -> ProxyDecision:
    """Decide which proxy a connection to ``target_url`` uses, and record why.

    Layers, highest first: ``route`` (a ``--via`` route; in the trace only when one is given),
    ``cli`` (``--proxy`` / ``--no-proxy``), ``exchange`` (the config file's
    or profile's exchange entry; ``exchange_origin`` names it), ``service`` (the config file's
    top-level ``proxy:``), ``env`` (curl/urllib variables), ``default`` (direct).

    The service layer serves https/wss targets from ``proxy.https`` and http/ws from
    ``proxy.http``, falling back to ``proxy.socks`` then ``proxy.all``; its ``no_proxy`` bypasses
    that layer only. The environment follows curl and urllib: ``https_proxy`` for https/wss,
    ``http_proxy`` for http/ws, ``all_proxy`` as the fallback; lower case wins, a set but empty
    lower-case variable disables its upper-case twin, ``HTTP_PROXY`` is ignored when
    ``REQUEST_METHOD`` is set (httpoxy), and ``no_proxy`` / ``NO_PROXY`` bypasses the env layer.
    When a no_proxy entry bypasses every proxy, the decision is direct, labelled with the layer
    of that no_proxy (``env`` for ``no_proxy`` / ``NO_PROXY``, ``service`` for
    ``proxy.no_proxy``), ``source`` naming the setting and ``no_proxy_match`` the entry.

    Args:
        target_url: the URL to connect to (http, https, ws or wss).
        route: the route's proxy or ``"direct"``; None when no route was asked for.
        route_source: names the route and what chose it (``--via tokyo``).
        cli, exchange: a :class:`ProxyURL`, ``"direct"`` or None (unset).
        exchange_origin: where the exchange layer's setting was written.
        service: the config file's ``proxy:`` block, if any.
        env: the environment (never read from ``os.environ`` here); None means empty.

    Raises:
        UsageError: ``target_url`` is not an http, https, ws or wss URL.
        InvalidProxyURL: the environment supplies the proxy to use and it is malformed; the
            message names the variable and never shows the password.
    """
    from mpnet.core.noproxy import match_no_proxy
    from mpnet.core.proxy_url import parse_proxy_url, redact_proxy_text

    target = parse_target(target_url)
    environment: Mapping[str, str] = env if env is not None else {}
    trace: list[TraceEntry] = []
    winner: tuple[Layer, ProxyURL | None, str | None] | None = None
    bypass: tuple[str, str] | None = None  # (no_proxy setting, entry) of the latest bypass

    def explicit_layer(layer: Layer, choice: ProxyChoice, source: str, direct_source: str) -> None:
        nonlocal winner
        value = _choice_value(choice)
        if choice is None:
            trace.append(TraceEntry(layer, None, "unset"))
        elif winner is not None:
            trace.append(TraceEntry(layer, value, "shadowed", source))
        elif choice == DIRECT:
            winner = (layer, None, direct_source)
            trace.append(TraceEntry(layer, value, "direct", f"{direct_source}: no proxy"))
        else:
            winner = (layer, choice, source)
            trace.append(TraceEntry(layer, value, "won", source))

    if route is not None:
        chooser = route_source or "--via"
        explicit_layer("route", route, chooser, chooser)
    explicit_layer("cli", cli, "--proxy", "--no-proxy")
    origin = exchange_origin or "exchange"
    explicit_layer("exchange", exchange, origin, origin)

    # -- service layer
    chosen = _service_proxy(service, target) if service is not None else None
    if chosen is None:
        trace.append(TraceEntry("service", None, "unset"))
    else:
        key, proxy = chosen
        where = f"{key} ({service.origin})" if service and service.origin else key
        if winner is not None:
            trace.append(TraceEntry("service", proxy.redacted(), "shadowed", where))
        else:
            entry = (
                match_no_proxy(target.host, target.port, service.no_proxy)
                if service is not None and service.no_proxy
                else None
            )
            if entry is not None:
                bypass = ("proxy.no_proxy", entry)
                trace.append(
                    TraceEntry(
                        "service",
                        proxy.redacted(),
                        "bypassed by no_proxy",
                        f"{key}; proxy.no_proxy entry {entry!r} matches {target.host}",
                    )
                )
            else:
                winner = ("service", proxy, key)
                trace.append(TraceEntry("service", proxy.redacted(), "won", where))

    # -- environment layer
    found = _env_proxy(environment, target)
    notes = "; ".join(found.notes)
    if found.variable is None or found.raw is None:
        verdict = "ignored" if any(" ignored: " in n for n in found.notes) else "unset"
        trace.append(TraceEntry("env", None, verdict, notes))
    else:
        variable, raw = found.variable, found.raw
        detail = "; ".join(filter(None, (variable, notes)))
        if winner is not None:
            trace.append(TraceEntry("env", redact_proxy_text(raw.strip()), "shadowed", detail))
        else:
            no_proxy_var, no_proxy_value = env_no_proxy(environment)
            entry = (
                match_no_proxy(target.host, target.port, no_proxy_value) if no_proxy_var else None
            )
            if entry is not None and no_proxy_var is not None:
                bypass = (no_proxy_var, entry)
                trace.append(
                    TraceEntry(
                        "env",
                        redact_proxy_text(raw.strip()),
                        "bypassed by no_proxy",
                        f"{variable}; {no_proxy_var} entry {entry!r} matches {target.host}",
                    )
                )
            else:
                proxy = parse_proxy_url(raw, where=variable)
                winner = ("env", proxy, variable)
                trace.append(TraceEntry("env", proxy.redacted(), "won", detail))

    # -- default
    if winner is None:
        reason = (
            f"direct: {bypass[0]} entry {bypass[1]!r} bypassed the proxy"
            if bypass
            else "direct: no layer names a proxy"
        )
        trace.append(TraceEntry("default", DIRECT, "won", reason))
        # Direct because a no_proxy entry said so: the layer whose no_proxy it is made the
        # choice (curl's NO_PROXY is part of the environment), not the default.
        bypasser: Layer = "default"
        if bypass is not None:
            bypasser = "service" if bypass[0] == "proxy.no_proxy" else "env"
        return ProxyDecision(
            target_url=target_url,
            proxy=None,
            layer=bypasser,
            source=bypass[0] if bypass else None,
            no_proxy_match=bypass[1] if bypass else None,
            trace=tuple(trace),
        )
    trace.append(TraceEntry("default", DIRECT, "shadowed"))
    layer, proxy_url, source = winner
    return ProxyDecision(
        target_url=target_url,
        proxy=proxy_url,
        layer=layer,
        source=source,
        trace=tuple(trace),
    )
