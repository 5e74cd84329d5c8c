"""Pooled aiohttp sessions that follow mpnet's proxy and TLS decisions, and nothing else.

:class:`HTTPSessionManager` keeps named :class:`aiohttp.ClientSession` objects built from a
:class:`~mpnet.core.proxy.ProxyDecision` and a :class:`~mpnet.core.tls.TLSDecision`
(``trust_env=False``: aiohttp's own proxy and TLS defaults never apply). Each session carries
the trace hooks that time an attempt of :func:`mpnet.net.retry.request_with_retry`
(:class:`AttemptClock`), and :func:`session_info` says what a managed session was built from.

aiohttp is imported only inside the functions that use it: importing this module does not pay
for it.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mpnet.core.proxy import Layer, ProxyDecision
from mpnet.core.tls import TLSDecision
from mpnet.errors import UsageError
from mpnet.net.exchange import USER_AGENT
from mpnet.net.tls import context_for

if TYPE_CHECKING:
    import aiohttp


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What a managed session was built from. ``created_at`` is Unix time."""

    name: str
    proxy: ProxyDecision
    tls: TLSDecision
    timeout: float
    created_at: float

    @property
    def proxy_layer(self) -> Layer:
        return self.proxy.layer

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "proxy": self.proxy.proxy.redacted() if self.proxy.proxy else None,
            "proxy_layer": self.proxy.layer,
            "tls_verify": self.tls.verify,
            "timeout": self.timeout,
            "created_at": self.created_at,
        }


# Which proxy a session uses, for errors and timeout phases; weak so closed sessions vanish.
_SESSION_INFO: weakref.WeakKeyDictionary[aiohttp.ClientSession, SessionInfo] = (
    weakref.WeakKeyDictionary()
)


def session_info(session: aiohttp.ClientSession) -> SessionInfo | None:
    """What ``session`` was built from, when :class:`HTTPSessionManager` made it; else None."""
    return _SESSION_INFO.get(session)


class HTTPSessionManager:
    """Named, pooled aiohttp sessions that follow mpnet's proxy and TLS decisions.

    Each name gets one :class:`aiohttp.ClientSession`, created on first use and reused after.
    HTTP and HTTPS proxies go through aiohttp's own ``proxy=`` (credentials from the proxy URL;
    an ``https://`` proxy's certificate is checked with the target's TLS context, or against
    the decision's ``proxy_ca`` when one is set); SOCKS proxies through :mod:`aiohttp_socks`.
    Sessions never read the environment (``trust_env=False``) and always carry a total timeout,
    because a proxy that accepts TCP and never answers would otherwise hang forever.
    """

    def __init__(self) -> None:
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._info: dict[str, SessionInfo] = {}
        self._lock = asyncio.Lock()

    @property
    def sessions(self) -> dict[str, SessionInfo]:
        """Open sessions by name."""
        return {name: info for name, info in self._info.items() if not self._closed(name)}

    def existing(self, name: str) -> aiohttp.ClientSession | None:
        """The open session called ``name``, or None."""
        return None if self._closed(name) else self._sessions[name]

    def _closed(self, name: str) -> bool:
        session = self._sessions.get(name)
        return session is None or session.closed

    async def get_session(
        self,
        name: str = "default",
        *,
        proxy: ProxyDecision,
        tls: TLSDecision,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientSession:
        """The session called ``name``, created with these decisions on first use.

        Raises:
            UsageError: a session of that name is open with another proxy or TLS policy (close
                it first, or use another name), or ``timeout`` is not positive.
            ConfigError: the CA bundle cannot be loaded.
        """
        if timeout <= 0:
            raise UsageError(f"timeout must be positive, not {timeout}")
        async with self._lock:
            if not self._closed(name):
                info = self._info[name]
                if info.proxy.proxy != proxy.proxy or _tls_key(info.tls) != _tls_key(tls):
                    raise UsageError(
                        f"HTTP session {name!r} is open with proxy "
                        f"{info.proxy.proxy.redacted() if info.proxy.proxy else 'direct'} and "
                        f"verify={info.tls.verify}; close it or use another session name"
                    )
                return self._sessions[name]
            session = _build_session(proxy, tls, timeout, headers)
            info = SessionInfo(
                name=name, proxy=proxy, tls=tls, timeout=timeout, created_at=time.time()
            )
            self._sessions[name] = session
            self._info[name] = info
            _SESSION_INFO[session] = info
            return session

    async def close(self, name: str) -> None:
        """Close the session called ``name``; unknown names are ignored."""
        session = self._sessions.pop(name, None)
        self._info.pop(name, None)
        if session is not None and not session.closed:
            await session.close()

    async def close_all(self) -> None:
        """Close every session."""
        for name in list(self._sessions):
            await self.close(name)

    async def __aenter__(self) -> HTTPSessionManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close_all()


def _tls_key(tls: TLSDecision) -> tuple[bool, str | None, str | None]:
    return tls.verify, tls.ca, tls.proxy_ca


def _proxy_ca_connector(target: ssl.SSLContext, proxy: ssl.SSLContext) -> aiohttp.TCPConnector:
    """A connector whose TLS with an https:// proxy uses ``proxy`` and with the target
    ``target``: aiohttp 3.14 has one ``ssl=`` for both (curl's ``--proxy-cacert`` has no
    aiohttp equivalent). Its request to the proxy itself is the one request of a proxied
    session without a proxy of its own; ``tests/net/test_proxy_ca.py`` fails if aiohttp
    stops asking ``_get_ssl_context`` for it."""
    import aiohttp

    class ProxyCAConnector(aiohttp.TCPConnector):
        def _get_ssl_context(self, req: aiohttp.ClientRequest) -> ssl.SSLContext | None:
            if req.proxy is None and req.is_ssl():
                return proxy
            return super()._get_ssl_context(req)

    return ProxyCAConnector(ssl=target)


def _build_session(
    proxy: ProxyDecision,
    tls: TLSDecision,
    timeout: float,
    headers: Mapping[str, str] | None,
) -> aiohttp.ClientSession:
    import aiohttp

    from mpnet.net.session_errors import error_translator, response_class

    # The shared context of this policy: no CA bundle is loaded per session.
    ssl_context = context_for(tls)
    session_proxy: str | None = None
    # TCP_NODELAY needs no option here: asyncio's socket transports and aiohttp's
    # ResponseHandler.connection_made set it on every connection, SOCKS ones included
    # (tests/net/test_http.py::test_session_sockets_have_tcp_nodelay checks it).
    connector: aiohttp.BaseConnector
    chosen = proxy.proxy
    if chosen is not None and chosen.is_socks:
        from aiohttp_socks import ProxyConnector, ProxyType

        connector = ProxyConnector(
            proxy_type=ProxyType.SOCKS5 if chosen.scheme.startswith("socks5") else ProxyType.SOCKS4,
            host=chosen.host,
            port=chosen.port,
            username=chosen.username,
            password=chosen.password,
            # aiohttp-socks rejects socks5h:// URLs; rdns is how it spells "proxy resolves".
            rdns=chosen.remote_dns,
            ssl=ssl_context,
        )
    elif chosen is not None and chosen.scheme == "https" and tls.proxy_ca is not None:
        connector = _proxy_ca_connector(ssl_context, context_for(tls.for_proxy()))
        session_proxy = chosen.with_credentials()
    else:
        connector = aiohttp.TCPConnector(ssl=ssl_context)
        if chosen is not None:
            session_proxy = chosen.with_credentials()
    return aiohttp.ClientSession(
        connector=connector,
        proxy=session_proxy,
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        trust_env=False,
        trace_configs=[attempt_trace_config()],
        middlewares=(error_translator(chosen),),
        response_class=response_class(chosen),
    )


@dataclass(slots=True)
class AttemptClock:
    """perf_counter_ns marks of one request attempt, filled by the trace hooks of
    :func:`attempt_trace_config` (pass it as ``trace_request_ctx``)."""

    started: int = 0
    dns_start: int | None = None
    dns_end: int | None = None
    connect_start: int | None = None
    connect_end: int | None = None
    reused_at: int | None = None
    headers_at: int | None = None
    finished: int | None = None

    @property
    def connected(self) -> bool:
        return self.connect_end is not None or self.reused_at is not None

    def phases(self) -> dict[str, float]:
        def ms(start: int | None, end: int | None) -> float | None:
            return None if start is None or end is None else (end - start) / 1e6

        result: dict[str, float | None] = {
            "dns": ms(self.dns_start, self.dns_end),
            "connect": ms(self.connect_start, self.connect_end) if not self.reused_at else 0.0,
            "http": ms(self.connect_end or self.reused_at, self.headers_at),
            "total": ms(self.started, self.finished),
        }
        return {k: v for k, v in result.items() if v is not None}


_TRACE_CONFIG: aiohttp.TraceConfig | None = None


def attempt_trace_config() -> aiohttp.TraceConfig:
    """One shared TraceConfig whose hooks fill the :class:`AttemptClock` passed as
    ``trace_request_ctx``; requests without one are ignored."""
    global _TRACE_CONFIG
    if _TRACE_CONFIG is not None:
        return _TRACE_CONFIG
    import aiohttp

    def mark(attribute: str) -> Callable[..., Awaitable[None]]:
        async def hook(_session: object, context: Any, _params: object) -> None:
            clock = getattr(context, "trace_request_ctx", None)
            if isinstance(clock, AttemptClock) and getattr(clock, attribute) is None:
                setattr(clock, attribute, time.perf_counter_ns())

        return hook

    config = aiohttp.TraceConfig()
    config.on_dns_resolvehost_start.append(mark("dns_start"))
    config.on_dns_resolvehost_end.append(mark("dns_end"))
    config.on_connection_create_start.append(mark("connect_start"))
    config.on_connection_create_end.append(mark("connect_end"))
    config.on_connection_reuseconn.append(mark("reused_at"))
    config.on_request_end.append(mark("headers_at"))
    config.freeze()
    _TRACE_CONFIG = config
    return config


__all__ = [
    "AttemptClock",
    "HTTPSessionManager",
    "SessionInfo",
    "attempt_trace_config",
    "session_info",
]
