"""Nothing a connection made stays reachable after it closed: a few hundred dials and timed
requests, then gc.collect() and a count of the objects one connection makes. Counts, not time.

Before the shared SSL contexts, every dial left its SSLContext, an SSLObject subclass and that
subclass's SSLObject behind for good (a cycle through the C-level SSL socket that the collector
cannot see), with the CA store loaded in each: about 0.9 MiB per dial with the system store.
"""

from __future__ import annotations

import asyncio
import gc
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from http_fixtures import running_app

from fixtures_servers import (
    EchoServer,
    TLSMaterial,
    direct_decision,
    proxy_decision,
    start_echo_server,
)
from mpnet.core.proxy import ProxyDecision
from mpnet.errors import ProbeError, ProtocolError, TLSError
from mpnet.net.dial import dial
from mpnet.net.exchange import timed_request
from mpnet.net.retry import request_with_retry
from mpnet.net.sessions import HTTPSessionManager

#: Per kind of connection; a leak of one object per connection shows as hundreds.
ROUNDS = 100


@dataclass(frozen=True)
class Census:
    ssl_object_classes: int
    ssl_objects: int
    ssl_contexts: int
    ssl_protocols: int
    transports: int
    tasks: int


def census() -> Census:
    gc.collect()
    objects = gc.get_objects()

    def count(kind: type) -> int:
        return sum(1 for o in objects if isinstance(o, kind))

    return Census(
        ssl_object_classes=len(ssl.SSLObject.__subclasses__()),
        ssl_objects=count(ssl.SSLObject),
        ssl_contexts=count(ssl.SSLContext),
        ssl_protocols=count(asyncio.sslproto.SSLProtocol),
        transports=count(asyncio.Transport),
        tasks=len(asyncio.all_tasks()),
    )


async def _settled(*servers: EchoServer) -> None:
    """Until the servers have dropped every connection the client closed (bounded)."""
    async with asyncio.timeout(10):
        while any(server.connections for server in servers):
            await asyncio.sleep(0.01)


@pytest.fixture
async def echo_servers(tls_material: TLSMaterial) -> AsyncIterator[dict[str, EchoServer]]:
    servers = {
        "ok": await start_echo_server(tls_material.server_context()),
        "expired": await start_echo_server(tls_material.expired_context()),
    }
    try:
        yield servers
    finally:
        for server in servers.values():
            await server.close()


async def _assert_no_growth(
    rounds: list[Callable[[], Awaitable[None]]], settle: Callable[[], Awaitable[None]]
) -> None:
    for one in rounds:  # warm-up: shared contexts, imports, caches
        await one()
    await settle()
    before = census()
    for one in rounds:
        for _ in range(ROUNDS):
            await one()
    await settle()
    after = census()
    assert after == before, (
        f"left behind after {ROUNDS * len(rounds)} connections: {before} -> {after}"
    )


async def test_dial_leaves_nothing_behind(
    proxies: dict[str, str], tls_material: TLSMaterial, echo_servers: dict[str, EchoServer]
) -> None:
    tls = tls_material.verify_decision()
    ok = f"https://127.0.0.1:{echo_servers['ok'].port}/"
    expired = f"https://127.0.0.1:{echo_servers['expired'].port}/"

    def connect(proxy: ProxyDecision) -> Callable[[], Awaitable[None]]:
        async def one() -> None:
            conn = await dial(ok, proxy=proxy, tls=tls, timeout=10)
            await conn.aclose()

        return one

    kept: list[TLSError] = []

    async def refused() -> None:
        with pytest.raises(TLSError) as caught:
            await dial(expired, proxy=direct_decision(), tls=tls, timeout=10)
        assert caught.value.issuer  # the refused certificate's issuer is still reported
        # Errors are kept (results, retry histories): they must not keep the connection.
        kept.append(caught.value)

    await _assert_no_growth(
        [connect(direct_decision()), connect(proxy_decision(proxies["http"])), refused],
        lambda: _settled(*echo_servers.values()),
    )
    assert len(kept) == ROUNDS + 1


async def test_timed_request_leaves_nothing_behind(
    proxies: dict[str, str], tls_material: TLSMaterial, echo_servers: dict[str, EchoServer]
) -> None:
    tls = tls_material.verify_decision()
    expired = f"https://127.0.0.1:{echo_servers['expired'].port}/"
    # The echo server answers a request with the request: not HTTP, a ProtocolError.
    closing = f"https://127.0.0.1:{echo_servers['ok'].port}/"
    async with running_app(tls_material.server_context()) as app:

        def get(proxy: ProxyDecision) -> Callable[[], Awaitable[None]]:
            async def one() -> None:
                response = await timed_request(
                    "GET", app.url("/json"), proxy=proxy, tls=tls, timeout=10
                )
                assert response.status == 200

            return one

        kept: list[ProbeError] = []

        async def refused() -> None:
            with pytest.raises(TLSError) as caught:
                await timed_request("GET", expired, proxy=direct_decision(), tls=tls, timeout=10)
            kept.append(caught.value)

        async def not_http() -> None:
            # An error raised once the connection was up: the echo is no HTTP answer.
            with pytest.raises(ProtocolError) as caught:
                await timed_request("GET", closing, proxy=direct_decision(), tls=tls, timeout=10)
            kept.append(caught.value)

        async def settle() -> None:
            await _settled(*echo_servers.values())
            assert app.connections is not None
            async with asyncio.timeout(10):
                await app.connections.idle()

        await _assert_no_growth(
            [get(direct_decision()), get(proxy_decision(proxies["http"])), refused, not_http],
            settle,
        )
        assert len(kept) == 2 * (ROUNDS + 1)


async def test_request_with_retry_errors_keep_no_connection(
    tls_material: TLSMaterial, echo_servers: dict[str, EchoServer]
) -> None:
    """Errors out of request_with_retry (kept in results and retry histories) must not pin the
    connection they report on, as dial's and timed_request's do not."""
    tls = tls_material.verify_decision()
    expired = f"https://127.0.0.1:{echo_servers['expired'].port}/"
    # The echo server answers a request with the request: not HTTP, a ProtocolError.
    echoing = f"https://127.0.0.1:{echo_servers['ok'].port}/"
    kept: list[ProbeError] = []
    async with HTTPSessionManager() as sessions:
        session = await sessions.get_session("leaks", proxy=direct_decision(), tls=tls)

        async def refused() -> None:
            with pytest.raises(TLSError) as caught:
                await request_with_retry("GET", expired, session=session, max_attempts=1)
            kept.append(caught.value)

        async def not_http() -> None:
            with pytest.raises(ProtocolError) as caught:
                await request_with_retry("GET", echoing, session=session, max_attempts=1)
            kept.append(caught.value)

        await _assert_no_growth([refused, not_http], lambda: _settled(*echo_servers.values()))
    assert len(kept) == 2 * (ROUNDS + 1)
