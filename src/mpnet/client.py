"""The library: :class:`NetworkConnectionManager`, the shared :data:`network_manager`, and the
module-level helpers that use it.

Every connection it opens goes through the configuration layers (command line arguments, the
exchange layer, the config file's service layer, the environment, the default), exactly as
``mpnet probe`` does, and it keeps a record of each one for :meth:`get_network_stats` (of the
open ones and the latest ended ones: a manager used for months does not grow).

.. code-block:: python

    from mpnet import NetworkConnectionManager

    async with NetworkConnectionManager() as manager:
        result = await manager.test_connectivity("https://www.deribit.com/api/v2/public/test")
        print(result.to_dict())

The module-level helpers (``test_connectivity``, ``request_with_retry``,
``create_websocket_connection``, ``create_http_session``, ``get_network_stats``, ``close_all``)
are the methods of :data:`network_manager`, for code written against the original networking
layer. Nothing a manager holds outlives its event loop: its HTTP sessions and WebSockets belong to
the loop that opened them and are closed when that loop ends (``asyncio.run()`` cancels the tasks
left at its end, and a task of the manager's closes them then); the next loop gets its own. So one
``asyncio.run()`` after another works with the same manager.

The ``proxy`` argument of every method has three meanings, like websockets' ``proxy=``:

- ``USE_CONFIG`` (the default): the layers decide (exchange layer, config file, environment);
- ``None``: no proxy, whatever the layers say (``--no-proxy``);
- a URL string (``"socks5h://127.0.0.1:1080"``): this proxy, whatever the layers say
  (``--proxy URL``).

An ``exchange_name`` that has neither a profile nor an ``exchanges:`` entry in the config file
means "no exchange layer": the other layers decide, and the decisions' traces say so.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

from mpnet.client_results import (
    ConnectionStats,
    ConnectivityResult,
    NetworkStats,
    StatsOverview,
)
from mpnet.core.clock import (
    SOURCE_REST,
    ClockEstimate,
    date_estimate,
    date_sample,
    estimate_clock,
    sample_clock,
)
from mpnet.core.proxy import ProxyDecision
from mpnet.core.result import ErrorInfo
from mpnet.core.tls import TLSDecision
from mpnet.errors import HTTPStatusError, ProbeError, UnknownExchange, UsageError
from mpnet.net.dial import PhaseTimings
from mpnet.net.exchange import TimedResponse
from mpnet.net.retry import RetryResponse
from mpnet.net.sessions import HTTPSessionManager

if TYPE_CHECKING:
    import aiohttp

    from mpnet.config.model import ConfigFile, ExchangeNetwork, Profile
    from mpnet.config.profiles import ProfileSet
    from mpnet.net.ws import WebSocketWrapper


class _UseConfig:
    """The type of :data:`USE_CONFIG`."""

    _instance: _UseConfig | None = None

    def __new__(cls) -> _UseConfig:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "USE_CONFIG"


#: ``proxy=USE_CONFIG``: let the configuration layers choose the proxy (the default).
USE_CONFIG: Final = _UseConfig()

ProxyArgument = str | None | _UseConfig
ConnectionType = Literal["http", "websocket"]

#: Ended (closed or failed) connections :meth:`NetworkConnectionManager.get_network_stats` still
#: lists; older ones are only counted, so a manager used for months stays the same size.
ENDED_HISTORY = 100

#: The connection type :meth:`NetworkConnectionManager.test_connectivity` infers from a scheme.
_TYPE_OF_SCHEME: Mapping[str, ConnectionType] = {
    "http": "http",
    "https": "http",
    "ws": "websocket",
    "wss": "websocket",
}


def connection_type_of(url: str) -> ConnectionType:
    """``"http"`` for an http(s) URL, ``"websocket"`` for a ws(s) one.

    Raises:
        UsageError: any other scheme.
    """
    scheme = urlsplit(url).scheme.lower()
    found = _TYPE_OF_SCHEME.get(scheme)
    if found is None:
        raise UsageError(
            f"cannot tell the connection type of {url!r}: the scheme must be http, https, ws or wss"
        )
    return found


@dataclass(eq=False, slots=True)
class _LoopBinding:
    """What a manager holds for one event loop: its HTTP sessions, and the task that closes
    them (and the loop's WebSockets) when the loop's owner cancels the remaining tasks."""

    loop: weakref.ref[asyncio.AbstractEventLoop]
    http: HTTPSessionManager = field(default_factory=HTTPSessionManager)
    closer: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        loop = self.loop()
        return loop is not None and not loop.is_closed()


@dataclass(slots=True)
class _Connection:
    """What the manager remembers of one connection it opened (or failed to open)."""

    id: int
    type: str  # "websocket" | "http"
    exchange: str | None
    url: str
    proxy: ProxyDecision
    created_at: float  # time.monotonic()
    state: str  # "open", "closed", "failed"
    binding: _LoopBinding | None = field(default=None, repr=False)
    handle: Any = field(default=None, repr=False)
    session_name: str | None = None

    def current_state(self) -> str:
        if self.state != "open" or self.handle is None:
            return self.state
        if self.binding is not None and not self.binding.alive:
            return "closed"  # its loop is gone, and the connection with it
        closed = getattr(self.handle, "closed", False)
        return "closed" if closed else "open"

    def end(self) -> None:
        """Mark it closed and let go of the connection object, which may then be freed."""
        if self.state == "open":
            self.state = "closed"
        self.handle = None
        self.binding = None

    def stats(self, now: float) -> ConnectionStats:
        proxy = self.proxy.proxy
        return ConnectionStats(
            id=self.id,
            type=self.type,
            exchange=self.exchange,
            url=self.url,
            session=self.session_name,
            proxy=proxy.redacted() if proxy else None,
            proxy_layer=self.proxy.layer,
            age_seconds=round(now - self.created_at, 3),
            state=self.current_state(),
        )


class NetworkConnectionManager:
    """Opens WebSockets and HTTP sessions as the configuration layers decide, and tracks them.

    Args:
        config: the config file; loaded on first use (``$MPNET_CONFIG``, ``./mpnet.yaml``,
            ``$XDG_CONFIG_HOME/mpnet/config.yaml``) when omitted.
        profiles: the exchange profiles; the shipped ones (plus ``$MPNET_PROFILES``) when
            omitted.
        env: the environment for proxy and CA variables; ``os.environ`` (read at each decision)
            when omitted.
        system_store: whether this machine has a system trust store for the default TLS
            layer; None (the default) detects it as the command line does
            (:func:`mpnet.config.layers.system_trust_store_available`), so a machine without
            one verifies with certifi.

    Use it as ``async with NetworkConnectionManager() as manager:`` or call :meth:`close_all`.
    It may be used from one event loop after another (one ``asyncio.run()`` after another):
    what it opened in a loop is closed when that loop shuts down, and never reused in another.
    """

    def __init__(
        self,
        *,
        config: ConfigFile | None = None,
        profiles: ProfileSet | None = None,
        env: Mapping[str, str] | None = None,
        system_store: bool | None = None,
    ) -> None:
        self._config = config
        self._profiles = profiles
        self._env = env
        self._system_store = system_store
        self._bindings: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopBinding] = (
            weakref.WeakKeyDictionary()
        )
        # Open connections hold their handle; ended ones keep only their record, and only the
        # latest ENDED_HISTORY of them. The counters cover every connection ever attempted.
        self._open: list[_Connection] = []
        self._ended: deque[_Connection] = deque(maxlen=ENDED_HISTORY)
        self._attempted = 0
        self._failed = 0
        self._ids = itertools.count(1)

    # -- configuration --------------------------------------------------------------------------

    @property
    def env(self) -> Mapping[str, str]:
        return self._env if self._env is not None else os.environ

    @property
    def config(self) -> ConfigFile:
        if self._config is None:
            from mpnet.config.file import load_config

            self._config = load_config(None, env=self.env)
        return self._config

    @property
    def profiles(self) -> ProfileSet:
        if self._profiles is None:
            from mpnet.config.profiles import load_profiles

            self._profiles = load_profiles(env=self.env)
        return self._profiles

    def _profile(self, exchange_name: str | None) -> Profile | None:
        """The profile of ``exchange_name``: its own, a bare one when only the config file
        knows it, None when nothing does (no exchange layer)."""
        if exchange_name is None:
            return None
        try:
            return self.profiles.get(exchange_name)
        except UnknownExchange:
            # An exchange the config file configures needs no profile to have a network layer.
            name = exchange_name.strip().lower()
            if name in self.config.exchanges:
                from mpnet.config.model import Profile

                return Profile(name=name, title=exchange_name)
            return None

    def decide(
        self,
        url: str,
        *,
        exchange_name: str | None = None,
        network_config: ExchangeNetwork | None = None,
        proxy: ProxyArgument = USE_CONFIG,
        ca_bundle: str | None = None,
        insecure: bool = False,
    ) -> tuple[ProxyDecision, TLSDecision]:
        """The proxy and TLS decisions for ``url``, as every method of this class takes them.

        ``network_config`` is an explicit exchange layer; it wins over the config file's and
        the profile's. An ``exchange_name`` neither a profile nor the config file knows adds no
        layer (the traces say so).

        Raises:
            UsageError: ``ca_bundle`` together with ``insecure``; a URL that is not http, https,
                ws or wss.
            InvalidProxyURL: ``proxy`` is not a valid proxy URL.
        """
        from mpnet.config.layers import NetworkOptions, decide

        options = NetworkOptions(
            proxy=proxy if isinstance(proxy, str) else None,
            no_proxy=proxy is None,
            ca_bundle=ca_bundle,
            insecure=insecure,
            ca_origin="ca_bundle=",
        )
        profile = self._profile(exchange_name)
        config = self.config
        if network_config is not None:
            if profile is None:
                from mpnet.config.model import Profile

                profile = Profile(name="<network_config>", title="network_config")
            config = replace(config, exchanges={**config.exchanges, profile.name: network_config})
        unconfigured = exchange_name if profile is None and network_config is None else None
        target = "ws" if urlsplit(url).scheme.lower() in ("ws", "wss") else "rest"
        return decide(
            url,
            target,
            profile=profile,
            config=config,
            options=options,
            env=self.env,
            system_store=self._system_store,
            unconfigured_exchange=unconfigured,
        )

    # -- the current event loop's resources -----------------------------------------------------

    def _binding(self) -> _LoopBinding:
        """The running loop's sessions, set up on first use in the loop.

        Its closer task waits until the loop's owner cancels the tasks left at the end
        (``asyncio.run()`` and :class:`asyncio.Runner` do, while the loop still runs), then
        closes what the manager opened in that loop. :meth:`close_all` ends it sooner. A
        manager never touches another loop's sessions.
        """
        loop = asyncio.get_running_loop()
        binding = self._bindings.get(loop)
        if binding is None:
            binding = _LoopBinding(loop=weakref.ref(loop))
            self._bindings[loop] = binding
            binding.closer = loop.create_task(
                self._close_at_shutdown(binding), name="mpnet: close connections at loop end"
            )
        return binding

    async def _close_at_shutdown(self, binding: _LoopBinding) -> None:
        try:
            await asyncio.Event().wait()  # nothing sets it: only cancellation ends the wait
        finally:
            await self._close_binding(binding)

    async def _close_binding(self, binding: _LoopBinding) -> None:
        """Close every WebSocket and HTTP session ``binding``'s loop holds (again: a no-op)."""
        mine = [record for record in self._open if record.binding is binding]
        self._open = [record for record in self._open if record.binding is not binding]
        try:
            for record in mine:
                if record.type == "websocket" and record.handle is not None:
                    await record.handle.close()
        finally:
            for record in mine:
                record.end()
                self._ended.append(record)
            await binding.http.close_all()

    def _track(
        self,
        kind: str,
        exchange: str | None,
        url: str,
        proxy: ProxyDecision,
        state: str,
        *,
        binding: _LoopBinding | None = None,
        handle: Any = None,
        session_name: str | None = None,
    ) -> _Connection:
        record = _Connection(
            id=next(self._ids),
            type=kind,
            exchange=exchange,
            url=url,
            proxy=proxy,
            created_at=time.monotonic(),
            state=state,
            binding=binding,
            handle=handle,
            session_name=session_name,
        )
        self._attempted += 1
        self._prune()
        if state == "open":
            self._open.append(record)
        else:
            if state == "failed":
                self._failed += 1
            record.end()
            self._ended.append(record)
        return record

    def _prune(self) -> None:
        """Move connections closed since the last look (by their owner, or with their loop) to
        the ended ones."""
        still_open = []
        for record in self._open:
            if record.current_state() == "open":
                still_open.append(record)
            else:
                record.end()
                self._ended.append(record)
        self._open = still_open

    # -- connections ----------------------------------------------------------------------------

    async def create_websocket_connection(
        self,
        url: str,
        *,
        exchange_name: str | None = None,
        network_config: ExchangeNetwork | None = None,
        proxy: ProxyArgument = USE_CONFIG,
        ca_bundle: str | None = None,
        insecure: bool = False,
        backend: str = "websockets",
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> WebSocketWrapper:
        """Open a WebSocket to ``url`` through the proxy and TLS policy the layers decide.

        The manager closes it in :meth:`close_all`, or when the event loop shuts down.

        Raises:
            ConfigError: bad arguments (see :meth:`decide`).
            ProbeError: the connection failed (counted in ``failed_connections``).
        """
        from mpnet.net.ws import WebSocketWrapper

        proxy_decision, tls_decision = self.decide(
            url,
            exchange_name=exchange_name,
            network_config=network_config,
            proxy=proxy,
            ca_bundle=ca_bundle,
            insecure=insecure,
        )
        binding = self._binding()
        try:
            ws = await WebSocketWrapper.connect(
                url,
                proxy=proxy_decision,
                tls=tls_decision,
                timeout=timeout,
                backend=backend,
                headers=headers,
            )
        except ProbeError:
            self._track("websocket", exchange_name, url, proxy_decision, "failed")
            raise
        self._track(
            "websocket", exchange_name, url, proxy_decision, "open", binding=binding, handle=ws
        )
        return ws

    async def create_http_session(
        self,
        session_name: str = "default",
        *,
        exchange_name: str | None = None,
        url: str | None = None,
        proxy: ProxyArgument = USE_CONFIG,
        ca_bundle: str | None = None,
        insecure: bool = False,
        timeout: float = 10.0,
    ) -> aiohttp.ClientSession:
        """The pooled aiohttp session ``session_name`` of this event loop, created on first use.

        The decisions are made once, for ``url`` (or the exchange's REST base URL), and hold
        for every request of the session: use one session per destination when proxies or
        ``no_proxy`` differ between destinations. A request that cannot connect (DNS, TCP,
        proxy, TLS, its timeout) raises mpnet's errors (:class:`~mpnet.errors.DNSError`,
        :class:`~mpnet.errors.ConnectError` ...), not aiohttp's; :meth:`request_with_retry`
        maps every failure, reading the body included.

        Raises:
            UsageError: neither ``url`` nor an exchange with a REST base URL is given, or the
                session is already open with another proxy or TLS policy.
        """
        if url is None:
            profile = self._profile(exchange_name)
            if profile is None or profile.rest is None:
                raise UsageError(
                    "create_http_session needs url= (or an exchange_name whose profile has a "
                    "REST base URL) to decide the proxy and TLS policy"
                )
            url = profile.rest.base_url
        proxy_decision, tls_decision = self.decide(
            url, exchange_name=exchange_name, proxy=proxy, ca_bundle=ca_bundle, insecure=insecure
        )
        binding = self._binding()
        existing = binding.http.existing(session_name)
        session = await binding.http.get_session(
            session_name, proxy=proxy_decision, tls=tls_decision, timeout=timeout
        )
        if session is not existing:
            self._track(
                "http",
                exchange_name,
                url,
                proxy_decision,
                "open",
                binding=binding,
                handle=session,
                session_name=session_name,
            )
        return session

    async def request_with_retry(
        self,
        method: str,
        url: str,
        *,
        exchange_name: str | None = None,
        session_name: str = "default",
        max_attempts: int = 3,
        proxy: ProxyArgument = USE_CONFIG,
        **kwargs: Any,
    ) -> RetryResponse:
        """:func:`mpnet.net.retry.request_with_retry` on this loop's session ``session_name``,
        which is created for ``url`` when it is not open yet. ``kwargs`` go to it (``json``,
        ``headers``, ``base_delay``, ``sleep`` ...).

        Raises:
            UsageError, InvalidProxyURL: bad arguments.
            ProbeError: the last attempt's failure (DNSError, ConnectError, ProxyError,
                TLSError, ProbeTimeout, ProtocolError).
        """
        from mpnet.net.retry import request_with_retry

        binding = self._binding()
        session = binding.http.existing(session_name)
        if session is None:
            session = await self.create_http_session(
                session_name, exchange_name=exchange_name, url=url, proxy=proxy
            )
        return await request_with_retry(
            method, url, session=session, max_attempts=max_attempts, **kwargs
        )

    # -- diagnostics ----------------------------------------------------------------------------

    async def test_connectivity(
        self,
        url: str,
        *,
        connection_type: ConnectionType | None = None,
        exchange_name: str | None = None,
        timeout: float = 10.0,
        proxy: ProxyArgument = USE_CONFIG,
        ca_bundle: str | None = None,
        insecure: bool = False,
    ) -> ConnectivityResult:
        """Connect once to ``url`` and report each phase; never raises for a network failure.

        ``connection_type`` ``"http"`` sends a GET (:func:`mpnet.net.exchange.timed_request`) and
        succeeds on a 2xx/3xx answer; ``"websocket"`` opens and closes a WebSocket. When it is
        omitted, the URL's scheme says which (http/https or ws/wss).

        Raises:
            ConfigError: bad arguments: an unknown connection type or scheme, an invalid URL or
                proxy URL, an unreadable CA bundle.
        """
        if connection_type is None:
            connection_type = connection_type_of(url)
        elif connection_type not in ("http", "websocket"):
            raise UsageError(
                f"connection_type must be 'http' or 'websocket', not {connection_type!r}"
            )
        proxy_decision, tls_decision = self.decide(
            url, exchange_name=exchange_name, proxy=proxy, ca_bundle=ca_bundle, insecure=insecure
        )
        if connection_type == "http":
            return await self._test_http(
                url, proxy_decision, tls_decision, timeout, exchange_name=exchange_name
            )
        return await self._test_websocket(url, proxy_decision, tls_decision, timeout)

    async def _test_http(
        self,
        url: str,
        proxy: ProxyDecision,
        tls: TLSDecision,
        timeout: float,
        *,
        exchange_name: str | None = None,
    ) -> ConnectivityResult:
        from mpnet.net.exchange import timed_request

        try:
            response = await timed_request("GET", url, proxy=proxy, tls=tls, timeout=timeout)
        except ProbeError as exc:
            return self._failure(url, "http", proxy, tls, exc, exc.phases)
        success = 200 <= response.status < 400
        refused = None
        if not success:
            refused = ErrorInfo.from_error(
                HTTPStatusError(
                    f"HTTP {response.status} {response.reason}".strip(),
                    status=response.status,
                    headers=response.headers,
                    body=response.body,
                )
            )
        return ConnectivityResult(
            url=url,
            connection_type="http",
            success=success,
            phases=response.timings.to_dict(),
            proxy=proxy,
            tls=tls,
            peer=response.peer,
            error=refused,
            status=response.status,
            clock=self._clock_of(response, exchange_name),
        )

    def _clock_of(self, response: TimedResponse, exchange_name: str | None) -> ClockEstimate | None:
        """The clock reading of an http test: the profile's time field when the URL is the
        exchange's health or time request, else the Date header."""
        if response.sent_at is None:
            return None
        profile = self._profile(exchange_name)
        rest = profile.rest if profile is not None else None
        path = urlsplit(response.url).path
        if (
            rest is not None
            and rest.server_time is not None
            and 200 <= response.status < 300
            and path == urlsplit(rest.time_url or rest.health_url).path
        ):
            try:
                document = response.json()
            except ProbeError:
                document = None
            if document is not None:
                sample = sample_clock(
                    document,
                    rest.server_time,
                    source=SOURCE_REST,
                    sent_at=response.sent_at,
                    received_at=response.received_at,
                )
                if sample.usable:
                    return estimate_clock([sample])
        dated = date_sample(
            response.header("date"), sent_at=response.sent_at, received_at=response.received_at
        )
        return date_estimate([dated]) if dated is not None else None

    async def _test_websocket(
        self, url: str, proxy: ProxyDecision, tls: TLSDecision, timeout: float
    ) -> ConnectivityResult:
        from mpnet.net.ws import WebSocketWrapper

        timings = PhaseTimings()
        try:
            ws = await WebSocketWrapper.connect(
                url, proxy=proxy, tls=tls, timeout=timeout, timings=timings
            )
        except ProbeError as exc:
            # The wrapper fills our timings phase by phase, the failed one excepted.
            return self._failure(url, "websocket", proxy, tls, exc, timings.to_dict())
        try:
            phases = ws.timings.to_dict()
            peer = ws.peer
        finally:
            await ws.close()
        return ConnectivityResult(
            url=url,
            connection_type="websocket",
            success=True,
            phases=phases,
            proxy=proxy,
            tls=tls,
            peer=peer,
        )

    @staticmethod
    def _failure(
        url: str,
        kind: str,
        proxy: ProxyDecision,
        tls: TLSDecision,
        error: ProbeError,
        phases: Mapping[str, float],
    ) -> ConnectivityResult:
        info = ErrorInfo.from_error(error)
        return ConnectivityResult(
            url=url,
            connection_type=kind,
            success=False,
            phases=dict(phases),
            proxy=proxy,
            tls=tls,
            error=info,
            status=info.status,
        )

    def get_network_stats(self) -> NetworkStats:
        """Counts, and one entry per connection opened (or attempted) by this manager.

        ``overview``: ``total_connections`` (every attempt), ``active_connections`` (open now),
        ``failed_connections`` (every failure), ``websocket_connections`` and ``http_sessions``
        (open now), ``proxy_connections`` / ``direct_connections`` (open now).
        ``connections``, oldest first: every open connection and the latest
        :data:`ENDED_HISTORY` closed or failed ones. ``to_dict()`` gives JSON.
        """
        now = time.monotonic()
        self._prune()
        records = sorted([*self._ended, *self._open], key=lambda record: record.id)
        entries = tuple(record.stats(now) for record in records)
        active = [entry for entry in entries if entry.state == "open"]
        return NetworkStats(
            overview=StatsOverview(
                total_connections=self._attempted,
                active_connections=len(active),
                failed_connections=self._failed,
                websocket_connections=sum(1 for e in active if e.type == "websocket"),
                http_sessions=sum(1 for e in active if e.type == "http"),
                proxy_connections=sum(1 for e in active if e.proxy is not None),
                direct_connections=sum(1 for e in active if e.proxy is None),
            ),
            connections=entries,
        )

    async def close_all(self) -> None:
        """Close every WebSocket and HTTP session this manager opened in the running loop.

        The manager stays usable: the next call opens new ones.
        """
        binding = self._bindings.pop(asyncio.get_running_loop(), None)
        if binding is None:
            return
        if binding.closer is not None:
            binding.closer.cancel()  # its own close finds nothing left to close
        await self._close_binding(binding)

    async def __aenter__(self) -> NetworkConnectionManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close_all()


#: The process-wide manager: configuration loaded on first use, the environment read at each
#: decision, and its connections bound to the event loop that opened them.
network_manager = NetworkConnectionManager()

# The names of the original networking layer: the shared manager's methods.
test_connectivity = network_manager.test_connectivity
create_websocket_connection = network_manager.create_websocket_connection
create_http_session = network_manager.create_http_session
request_with_retry = network_manager.request_with_retry
get_network_stats = network_manager.get_network_stats
close_all = network_manager.close_all

__all__ = [
    "USE_CONFIG",
    "ConnectionStats",
    "ConnectionType",
    "ConnectivityResult",
    "NetworkConnectionManager",
    "NetworkStats",
    "ProxyArgument",
    "StatsOverview",
    "close_all",
    "connection_type_of",
    "create_http_session",
    "create_websocket_connection",
    "get_network_stats",
    "network_manager",
    "request_with_retry",
    "test_connectivity",
]
