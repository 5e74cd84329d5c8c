"""How requests go through an HTTP proxy, checked against a Squid-like proxy on 127.0.0.1.

Plain http:// requests go in absolute form (``GET http://host:port/path``) as curl, urllib and
aiohttp send them, not by CONNECT: Squid's default rules allow CONNECT to port 443 only, so a
CONNECT to port 80 gets a 403 that is no sign of the exchange being denied.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
from http_fixtures import running_app

from fixtures_servers import (
    PROXY_PASSWORD,
    PROXY_USER,
    SquidLikeProxy,
    TLSMaterial,
    closed_port,
    proxy_decision,
    running_squid_like,
)
from mpnet.errors import Phase, ProxyAuthError, ProxyDenied
from mpnet.net.dial import dial
from mpnet.net.exchange import timed_request
from mpnet.net.retry import request_with_retry
from mpnet.net.sessions import HTTPSessionManager

CREDENTIALS = f"{PROXY_USER}:{PROXY_PASSWORD}"
BASIC = "Basic " + base64.b64encode(CREDENTIALS.encode()).decode()


@pytest.fixture
async def squid() -> AsyncIterator[SquidLikeProxy]:
    async with running_squid_like(credentials=CREDENTIALS) as proxy:
        yield proxy


async def test_timed_request_sends_plain_http_in_absolute_form(
    squid: SquidLikeProxy, tls_material: TLSMaterial
) -> None:
    async with running_app() as server:
        response = await timed_request(
            "GET",
            server.url("/json"),
            proxy=proxy_decision(squid.url),
            tls=tls_material.verify_decision(),
            timeout=10,
        )
    assert response.status == 200
    assert response.json() == {"ok": True}
    assert squid.request_lines == [f"GET http://127.0.0.1:{server.port}/json HTTP/1.1"]
    assert squid.proxy_authorization == [BASIC]
    assert server.requests == {"/json": 1}
    # No CONNECT, so no proxy phase: tcp is the proxy's, http the request through it.
    assert list(response.timings.to_dict()) == ["dns", "tcp", "http"]
    assert response.peer.via_proxy is not None and PROXY_PASSWORD not in response.peer.via_proxy


async def test_session_sends_plain_http_in_absolute_form(
    squid: SquidLikeProxy, tls_material: TLSMaterial
) -> None:
    async with HTTPSessionManager() as manager, running_app() as server:
        session = await manager.get_session(
            "squid", proxy=proxy_decision(squid.url), tls=tls_material.verify_decision()
        )
        response = await request_with_retry("GET", server.url("/json"), session=session)
    assert response.status == 200
    assert squid.request_lines == [f"GET http://127.0.0.1:{server.port}/json HTTP/1.1"]
    assert squid.proxy_authorization == [BASIC]


async def test_a_target_the_proxy_cannot_reach_is_the_proxys_answer(
    squid: SquidLikeProxy, tls_material: TLSMaterial
) -> None:
    port = closed_port()
    response = await timed_request(
        "GET",
        f"http://127.0.0.1:{port}/json",
        proxy=proxy_decision(squid.url),
        tls=tls_material.verify_decision(),
        timeout=10,
    )
    assert squid.request_lines == [f"GET http://127.0.0.1:{port}/json HTTP/1.1"]
    assert response.status == 503
    assert response.header("X-Squid-Error") == "ERR_CONNECT_FAIL 111"
    assert response.header("server", "").startswith("squid")


async def test_a_407_to_absolute_form_is_the_proxys_auth_error(
    tls_material: TLSMaterial,
) -> None:
    async with running_squid_like(credentials=CREDENTIALS) as squid, running_app() as server:
        with pytest.raises(ProxyAuthError) as caught:
            await timed_request(
                "GET",
                server.url("/json"),
                proxy=proxy_decision(squid.url.replace(f"{CREDENTIALS}@", "")),
                tls=tls_material.verify_decision(),
                timeout=10,
            )
    assert squid.proxy_authorization == [None]
    assert server.requests == {}
    assert (caught.value.status, caught.value.phase) == (407, Phase.HTTP)
    assert "wants credentials" in str(caught.value)
    assert caught.value.headers.get("proxy-authenticate") == 'Basic realm="squid"'
    assert list(caught.value.phases) == ["dns", "tcp", "http"]


async def test_websocket_keeps_connect_as_browsers_do(
    squid: SquidLikeProxy, tls_material: TLSMaterial
) -> None:
    # RFC 6455 4.1: a client behind a proxy asks for a CONNECT tunnel; Squid's default rules
    # refuse one to a port other than 443, which mpnet reports as the proxy's refusal.
    port = closed_port()
    with pytest.raises(ProxyDenied) as caught:
        await dial(
            f"ws://127.0.0.1:{port}/ws",
            proxy=proxy_decision(squid.url),
            tls=tls_material.verify_decision(),
            timeout=10,
        )
    assert squid.request_lines == [f"CONNECT 127.0.0.1:{port} HTTP/1.1"]
    assert caught.value.status == 403


async def test_squid_connect_fail_is_the_proxy_not_reaching_the_target(
    tls_material: TLSMaterial,
) -> None:
    port = closed_port()
    async with running_squid_like(connect_ports=frozenset({port})) as squid:
        with pytest.raises(ProxyDenied) as caught:
            await dial(
                f"https://127.0.0.1:{port}/",
                proxy=proxy_decision(squid.url),
                tls=tls_material.verify_decision(),
                timeout=10,
            )
    error = caught.value
    assert (error.kind, error.status, error.phase) == ("proxy_upstream", 503, Phase.PROXY)
    assert f"could not reach 127.0.0.1:{port}" in str(error)
    assert "ERR_CONNECT_FAIL 111" in str(error)
    assert "refused" not in str(error)


async def test_squid_access_denied_is_a_refusal(
    squid: SquidLikeProxy, tls_material: TLSMaterial
) -> None:
    with pytest.raises(ProxyDenied) as caught:
        await dial(
            "https://127.0.0.1:8443/",
            proxy=proxy_decision(squid.url),
            tls=tls_material.verify_decision(),
            timeout=10,
        )
    assert (caught.value.kind, caught.value.status) == ("proxy_denied", 403)
