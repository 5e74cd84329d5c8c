"""Proxy resolution (pure): which proxy a connection uses, which layer chose it, and why.

No environment reads, no I/O: the environment is passed in as a mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mpnet.core.proxy_url import ProxyURL

Layer = Literal["cli", "exchange", "service", "env", "default"]
LAYERS: tuple[Layer, ...] = ("cli", "exchange", "service", "env", "default")


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
        """The DESIGN.md JSON shape ``{"url", "layer", "scheme"}`` plus source and no_proxy."""
        return {
            "url": self.proxy.redacted() if self.proxy else None,
            "layer": self.layer,
            "scheme": self.scheme,
            "source": self.source,
            "no_proxy_match": self.no_proxy_match,
        }
