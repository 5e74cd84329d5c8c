"""Typed, frozen forms of profiles and the config file. Loaders in this package build them.

Profile schema (one YAML file per exchange; see ``profiles/*.yaml``)::

    name: deribit                       # required, [a-z0-9-]+; the file's stem by convention
    title: Deribit                      # required
    rest:                               # optional if websocket is given
      base_url: https://www.deribit.com
      headers: {User-Agent: mpnet}      # optional, sent with every REST request
      health:
        method: GET                     # default GET
        path: /api/v2/public/test
        body: {...}                     # optional JSON body
        expect_status: 200              # default 200
        expect_json_keys: [result]      # optional: top-level keys the JSON answer must carry
        expect_json: {result: {status: online}}   # optional pattern the JSON answer must match
        status_endpoint: true           # optional: the endpoint reports the exchange's state, and
                                        # expect_json is what "operational" looks like (below)
      server_time: {path: serverTime, unit: ms}   # optional: the server's clock in the health
                                        #   answer (or in the rest.time answer), for the offset
      time: {method: GET, path: /api/v1/timestamp}   # optional: a request whose answer holds
                                        #   server_time, when the health answer carries no time
    websocket:                          # optional if rest is given
      url: wss://www.deribit.com/ws/api/v2
      bootstrap:                        # optional pre-connect token step (KuCoin)
        method: POST
        path: /api/v1/bullet-public     # relative to rest.base_url
        endpoint: data.instanceServers.0.endpoint   # dotted path to the WebSocket URL
        token: data.token               # dotted path to the token
        query: {token: "{token}", connectId: "{connect_id}"}   # appended to the endpoint
      headers: {...}                    # optional, sent with the upgrade request
      welcome: {type: welcome}          # optional: wait for this message before subscribing
      subscribe: {...}                  # a JSON message, a string, or a list of them
      ack_match: {...}                  # optional: recognises the subscription ack
      error_match: {event: error}       # optional: recognises the exchange's error answer
      data_match: {method: subscription}   # recognises the first data message
      ping:                             # application-level ping, or {frame: true} for a
        send: {...}                     # WebSocket ping frame
        expect: {...}
        server_time: {path: time_out, unit: iso8601}   # optional: the server's clock in the pong
      event_time: {path: E, unit: ms}   # optional: when a data message was pushed, for feed lag;
                                        #   kind: last_trade marks a trade's time (no lag claimed)
      server_ping: {field: ping, reply_field: pong}  # answer {"ping": x} with {"pong": x}
      compression: gzip                 # optional: binary frames are gzip (HTX)
    network:                            # optional exchange layer, same shape as the config file's
      proxy: socks5h://127.0.0.1:1080   #   exchanges.<name> entry; the config file wins over it
      ssl: {verify: true}
    rate_limit:                         # optional: the public limit mpnet stays under
      requests_per_s: 1                 # REST requests and WebSocket connections (with their
                                        #   bootstrap) to this exchange start >= 1/N s apart
                                        #   (one that failed at dns/tcp/proxy sent nothing)
      weight_header: X-MBX-USED-WEIGHT-1M   # optional, with weight_limit: stop sending once the
      weight_limit: 6000                #   header reports 90 % of the limit, until the window
      weight_window_s: 60               #   (default 60 s, aligned to the clock) resets

Time fields (``rest.server_time``, ``websocket.event_time``, ``websocket.ping.server_time``) are
``{path, unit, kind}``: ``path`` a dotted path with list indices (``data.0.ts``), ``unit`` one of
``s``, ``ms``, ``us``, ``ns``, ``iso8601`` (numbers may be JSON strings of digits), ``kind``
``event`` (default) or ``last_trade`` (event_time only). See :mod:`mpnet.core.clock`.

Patterns (``welcome``, ``ack_match``, ``error_match``, ``data_match``, ``ping.expect``,
``rest.health.expect_json``) are matched by :func:`mpnet.core.match.matches`. In messages to send,
the string values ``"$now"`` and ``"$now_ms"`` become the current Unix time in seconds /
milliseconds.

``error_match`` recognises the answer an exchange gives when it refuses a request (OKX
``{"event": "error", ...}``, Gate's ``error`` object): a message matching it while the probe waits
for the welcome or the first data message fails the attempt at once (``SUBSCRIBE_REJECTED``, the
answer quoted) instead of running into the timeout; during the ping it is a warning.

``rest.health.expect_json`` is a pattern the health answer must match. Without
``status_endpoint`` a mismatch means the API is not what the profile expects
(``UNEXPECTED_RESPONSE``). With ``status_endpoint: true`` the health path is the exchange's own
status endpoint (Bitfinex ``/v2/platform/status``, Kraken ``SystemStatus``, KuCoin
``/api/v1/status``) that answers HTTP 200 in maintenance too: ``expect_json`` is then the pattern of
an *operational* answer, and any other answer is ``EXCHANGE_MAINTENANCE``, quoting it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mpnet.core.clock import ClockTolerances, TimeField
from mpnet.core.proxy import ServiceProxy
from mpnet.core.proxy_url import ProxyChoice
from mpnet.core.ratelimit import RateLimit
from mpnet.core.route import Route
from mpnet.core.tls import ProxyCASetting, TLSSetting

JSON = Any


@dataclass(frozen=True, slots=True)
class HealthCheck:
    path: str
    method: str = "GET"
    body: JSON = None
    expect_status: int = 200
    expect_json_keys: tuple[str, ...] = ()
    #: A pattern the JSON answer must match (None: not checked).
    expect_json: JSON = None
    #: The endpoint reports the exchange's state: an answer not matching ``expect_json`` is
    #: maintenance, not a broken API.
    status_endpoint: bool = False


@dataclass(frozen=True, slots=True)
class TimeRequest:
    """A request made for the server's time when the health answer carries none (KuCoin)."""

    path: str
    method: str = "GET"


@dataclass(frozen=True, slots=True)
class RestSpec:
    base_url: str
    health: HealthCheck
    headers: Mapping[str, str] = field(default_factory=dict)
    #: The server's clock in the health answer, or in the answer to ``time`` when set.
    server_time: TimeField | None = None
    time: TimeRequest | None = None

    @property
    def health_url(self) -> str:
        return self.base_url.rstrip("/") + self.health.path

    @property
    def time_url(self) -> str | None:
        """The URL of the separate time request, if the profile has one."""
        return self.base_url.rstrip("/") + self.time.path if self.time is not None else None


@dataclass(frozen=True, slots=True)
class BootstrapSpec:
    """A request made before connecting that returns the WebSocket endpoint and a token."""

    path: str
    endpoint: str
    token: str
    method: str = "POST"
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PingSpec:
    """Application-level ping (``send``/``expect``) or a WebSocket ping frame (``frame``)."""

    send: JSON = None
    expect: JSON = None
    frame: bool = False
    #: The server's clock in the pong (Kraken's time_out, Bitfinex's ts).
    server_time: TimeField | None = None


@dataclass(frozen=True, slots=True)
class ServerPingSpec:
    """A server-initiated application ping: ``{field: x}`` is answered with ``{reply_field: x}``."""

    field: str
    reply_field: str


@dataclass(frozen=True, slots=True)
class WebSocketSpec:
    url: str
    subscribe: tuple[JSON, ...]
    data_match: JSON
    ack_match: JSON = None
    #: Recognises the exchange's error answer (None: errors are only seen as missing data).
    error_match: JSON = None
    welcome: JSON = None
    ping: PingSpec | None = None
    server_ping: ServerPingSpec | None = None
    bootstrap: BootstrapSpec | None = None
    compression: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: When a data message was pushed (exchange clock), for the feed lag.
    event_time: TimeField | None = None


@dataclass(frozen=True, slots=True)
class ExchangeNetwork:
    """The exchange layer: per-target proxy choices and a TLS setting.

    ``proxy_rest`` / ``proxy_ws`` are a proxy, ``"direct"``, or None (unset).
    ``origin`` says where it was written (``mpnet.yaml:12 exchanges.deribit`` or a profile file).
    ``routes`` (config file only) are the routes this exchange is probed over when no ``--via``,
    ``--proxy`` or ``--no-proxy`` is given, selected by ``routes_origin``.
    """

    proxy_rest: ProxyChoice = None
    proxy_ws: ProxyChoice = None
    ssl: TLSSetting | None = None
    origin: str = ""
    #: ``proxy_ssl: {ca_bundle}``: the CA of this exchange's https:// proxy.
    proxy_ssl: ProxyCASetting | None = None
    routes: tuple[Route, ...] = ()
    routes_origin: str = ""

    def proxy_for(self, target: str) -> ProxyChoice:
        return self.proxy_ws if target == "ws" else self.proxy_rest


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    title: str
    rest: RestSpec | None = None
    websocket: WebSocketSpec | None = None
    network: ExchangeNetwork | None = None
    source: str = ""  # the file it was loaded from, or "<shipped>/name.yaml"
    rate_limit: RateLimit | None = None

    def url_for(self, target: str) -> str | None:
        """The URL a target connects to: the REST health URL or the WebSocket URL."""
        if target == "rest":
            return self.rest.health_url if self.rest else None
        return self.websocket.url if self.websocket else None

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(t for t, spec in (("rest", self.rest), ("ws", self.websocket)) if spec)


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """The config file's ``serve:`` block: the limits of ``mpnet serve`` (None: unset, the
    command line or the default decides). ``origin`` is ``file:line serve``."""

    max_probes: int | None = None
    max_waiting: int | None = None
    origin: str = ""


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """The loaded config file. ``path`` is None when no file was found (all layers empty)."""

    path: str | None = None
    proxy: ServiceProxy | None = None
    ssl: TLSSetting | None = None
    #: Top-level ``proxy_ssl: {ca_bundle}``: the CA of the https:// proxies (service layer).
    proxy_ssl: ProxyCASetting | None = None
    exchanges: Mapping[str, ExchangeNetwork] = field(default_factory=dict)
    serve: ServeSettings = field(default_factory=ServeSettings)
    #: ``clock: {tolerance_ms, feed_lag_tolerance_ms}``; None: the defaults.
    clock: ClockTolerances | None = None
    #: The named routes of ``routes:`` (``--via NAME``), by name.
    routes: Mapping[str, Route] = field(default_factory=dict)

    def exchange_network(self, profile: Profile | None) -> ExchangeNetwork | None:
        """The exchange layer for a profile: the config file's entry wins over the profile's."""
        if profile is None:
            return None
        return self.exchanges.get(profile.name) or profile.network

    def default_routes(self, profile: Profile) -> tuple[Route, ...]:
        """The routes ``exchanges.<name>.routes`` lists for a profile (none: the usual layers)."""
        entry = self.exchanges.get(profile.name)
        return entry.routes if entry is not None else ()
