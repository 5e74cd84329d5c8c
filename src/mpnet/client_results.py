"""What the library returns: :class:`ConnectivityResult` from ``test_connectivity`` and the typed
:class:`NetworkStats` from ``get_network_stats`` (see :mod:`mpnet.client`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mpnet.core.clock import ClockEstimate
from mpnet.core.proxy import ProxyDecision
from mpnet.core.result import ErrorInfo
from mpnet.core.tls import TLSDecision
from mpnet.net.dial import PeerInfo


def _peer_dict(peer: PeerInfo | None) -> dict[str, Any] | None:
    if peer is None:
        return None
    return {
        "addresses": list(peer.addresses),
        "address": peer.address,
        "via_proxy": peer.via_proxy,
        "tls": peer.tls.to_dict() if peer.tls else None,
        "tls_verified": peer.tls_verified,
    }


@dataclass(frozen=True, slots=True)
class ConnectivityResult:
    """The outcome of :meth:`NetworkConnectionManager.test_connectivity`.

    ``success`` is True when the connection was established and, for http, the answer's status
    was 2xx or 3xx (``status`` holds it). ``phases`` are milliseconds of the phases that
    completed, also on failure. ``error`` says where and why it failed. ``clock`` is the
    server's clock against this machine's, for an http answer: read from the exchange
    profile's ``rest.server_time`` when the URL is its health or time request, else from the
    ``Date`` header (whole seconds); None when the answer carried neither.
    """

    url: str
    connection_type: str
    success: bool
    phases: Mapping[str, float]
    proxy: ProxyDecision
    tls: TLSDecision
    peer: PeerInfo | None = None
    error: ErrorInfo | None = None
    status: int | None = None
    clock: ClockEstimate | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the proxy URL is redacted."""
        return {
            "url": self.url,
            "connection_type": self.connection_type,
            "success": self.success,
            "status": self.status,
            "phases": {name: round(ms, 3) for name, ms in self.phases.items()},
            "proxy": self.proxy.to_dict(),
            "ssl": self.tls.to_dict(),
            "peer": _peer_dict(self.peer),
            "error": self.error.to_dict() if self.error else None,
            "clock": self.clock.to_dict() if self.clock is not None else None,
        }


@dataclass(frozen=True, slots=True)
class ConnectionStats:
    """One connection a manager opened (or failed to open). ``proxy`` is redacted; ``state`` is
    ``open``, ``closed`` or ``failed``; ``session`` names an HTTP session."""

    id: int
    type: str  # "websocket" | "http"
    exchange: str | None
    url: str
    session: str | None
    proxy: str | None
    proxy_layer: str
    age_seconds: float
    state: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class StatsOverview:
    """Counts: ``total_connections`` and ``failed_connections`` over every attempt; the others
    of the connections open now."""

    total_connections: int
    active_connections: int
    failed_connections: int
    websocket_connections: int
    http_sessions: int
    proxy_connections: int
    direct_connections: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class NetworkStats:
    """What :meth:`NetworkConnectionManager.get_network_stats` returns: the counts, and every
    open connection plus the latest :data:`ENDED_HISTORY` ended ones, oldest first."""

    overview: StatsOverview
    connections: tuple[ConnectionStats, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"overview": {...}, "connections": [{...}, ...]}``."""
        return {
            "overview": self.overview.to_dict(),
            "connections": [connection.to_dict() for connection in self.connections],
        }
