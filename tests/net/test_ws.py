"""WebSocketWrapper on both backends, direct and through pproxy, against loopback servers."""

from __future__ import annotations

import asyncio
import json

import pytest

from fixtures_servers import (
    PROXY_PASSWORD,
    TLSMaterial,
    WebSocketServer,
    closed_port,
    direct_decision,
    insecure_decision,
    proxy_decision,
    with_scheme,
)
from mpnet.core.proxy import ProxyDecision
from mpnet.errors import (
    DNSError,
    Phase,
    ProbeTimeout,
    ProtocolError,
    ProxyAuthError,
    ProxyUnreachable,
    TLSError,
    UsageError,
    WebSocketHandshakeError,
)
from mpnet.net.dial import PhaseTimings
from mpnet.net.ws import WebSocketWrapper, encode_message

BACKENDS = ["websockets", "aiohttp"]

PROXY_CASES = [
    pytest.param(None, None, id="direct"),
    pytest.param("http", None, id="http-connect"),
    pytest.param("http_auth", None, id="http-connect-auth"),
    pytest.param("socks5", None, id="socks5"),
    pytest.param("socks5_auth", "socks5h", id="socks5h-auth"),
    pytest.param("socks4", None, id="socks4"),
]


def _decision(proxies: dict[str, str], name: str | None, scheme: str | None) -> ProxyDecision:
    if name is None:
        return direct_decision()
    url = proxies[name]
    return proxy_decision(with_scheme(url, scheme) if scheme else url)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("proxy_name", "scheme"), PROXY_CASES)
@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
async def test_echo_matrix(
    proxies: dict[str, str],
    tls_material: TLSMaterial,
    ws_server: WebSocketServer,
    wss_server: WebSocketServer,
    backend: str,
    proxy_name: str | None,
    scheme: str | None,
    secure: bool,
) -> None:
    server = wss_server if secure else ws_server
    decision = _decision(proxies, proxy_name, scheme)

    async with await WebSocketWrapper.connect(
        server.url("/echo"),
        proxy=decision,
        tls=tls_material.verify_decision(),
        timeout=10,
        backend=backend,
    ) as ws:
        await ws.send({"op": "hello", "n": 1})
        await ws.send(b"\x00\x01binary")
        first = await ws.recv(timeout=5)
        second = await ws.recv(timeout=5)
        rtt = await ws.ping(timeout=5)

    assert json.loads(first) == {"op": "hello", "n": 1}
    assert second == b"\x00\x01binary"
    assert ws.closed
    assert ws.backend == backend
    assert rtt >= 0
    phases = ws.timings.to_dict()
    expected = (
        ["dns", "tcp"]
        + (["proxy"] if proxy_name else [])
        + (["tls"] if secure else [])
        + ["ws_upgrade", "first_message", "ping_rtt"]
    )
    assert list(phases) == expected
    assert ws.peer.via_proxy == (decision.proxy.redacted() if decision.proxy else None)
    if decision.proxy and decision.proxy.password:
        assert PROXY_PASSWORD not in repr(ws)
    assert (ws.peer.tls is not None) is secure


@pytest.mark.parametrize("backend", BACKENDS)
async def test_refused_upgrade(
    tls_material: TLSMaterial, wss_server: WebSocketServer, backend: str
) -> None:
    timings = PhaseTimings()
    with pytest.raises(WebSocketHandshakeError) as caught:
        await WebSocketWrapper.connect(
            wss_server.url("/forbidden"),
            proxy=direct_decision(),
            tls=tls_material.verify_decision(),
            timeout=10,
            backend=backend,
            timings=timings,
        )
    assert caught.value.status == 403
    assert caught.value.phase is Phase.WS_UPGRADE
    assert timings.tls is not None
    if backend == "websockets":
        # aiohttp does not read the body of a refused upgrade.
        assert b"access from your region is restricted" in caught.value.body
        assert caught.value.headers.get("Content-Type") == "text/html"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_wrong_proxy_credentials(
    proxies: dict[str, str], tls_material: TLSMaterial, ws_server: WebSocketServer, backend: str
) -> None:
    bad = with_scheme(proxies["socks5_auth"], "socks5h").replace(PROXY_PASSWORD, "nope")
    with pytest.raises(ProxyAuthError) as caught:
        await WebSocketWrapper.connect(
            ws_server.url(),
            proxy=proxy_decision(bad),
            tls=tls_material.verify_decision(),
            timeout=10,
            backend=backend,
        )
    assert caught.value.phase is Phase.PROXY


async def test_closed_proxy_port(tls_material: TLSMaterial, ws_server: WebSocketServer) -> None:
    with pytest.raises(ProxyUnreachable) as caught:
        await WebSocketWrapper.connect(
            ws_server.url(),
            proxy=proxy_decision(f"http://127.0.0.1:{closed_port()}"),
            tls=tls_material.verify_decision(),
            timeout=10,
        )
    assert caught.value.phase is Phase.TCP


@pytest.mark.parametrize(
    ("context", "kind"),
    [
        ("expired_context", "expired"),
        ("untrusted_context", "untrusted"),
        ("wrong_host_context", "hostname_mismatch"),
    ],
)
@pytest.mark.parametrize("backend", BACKENDS)
async def test_certificate_failures(
    tls_material: TLSMaterial, context: str, kind: str, backend: str
) -> None:
    server = await WebSocketServer(ssl_context=getattr(tls_material, context)()).start()
    try:
        with pytest.raises(TLSError) as caught:
            await WebSocketWrapper.connect(
                server.url(),
                proxy=direct_decision(),
                tls=tls_material.verify_decision(),
                timeout=10,
                backend=backend,
            )
    finally:
        await server.stop()
    assert (caught.value.phase, caught.value.kind) == (Phase.TLS, kind)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_insecure_connects_to_an_expired_certificate(
    tls_material: TLSMaterial, backend: str
) -> None:
    server = await WebSocketServer(ssl_context=tls_material.expired_context()).start()
    try:
        async with await WebSocketWrapper.connect(
            server.url(), proxy=direct_decision(), tls=insecure_decision(), timeout=10
        ) as ws:
            await ws.send("x")
            assert await ws.recv(timeout=5) == "x"
    finally:
        await server.stop()
    assert ws.peer.tls_verified is False
    assert ws.peer.tls is not None and ws.peer.tls.cert_not_after == "2021-01-01T00:00:00Z"


async def test_unresolvable_host(tls_material: TLSMaterial) -> None:
    with pytest.raises(DNSError):
        await WebSocketWrapper.connect(
            "wss://name.invalid/ws",
            proxy=direct_decision(),
            tls=tls_material.verify_decision(),
            timeout=10,
        )


@pytest.mark.parametrize("backend", BACKENDS)
async def test_server_close_is_reported_with_its_code(
    tls_material: TLSMaterial, ws_server: WebSocketServer, backend: str
) -> None:
    ws = await WebSocketWrapper.connect(
        ws_server.url(),
        proxy=direct_decision(),
        tls=tls_material.verify_decision(),
        timeout=10,
        backend=backend,
    )
    try:
        # The server closes every connection with 1001 going away, and waits for the close
        # frame that recv() makes the client send.
        stopping = asyncio.create_task(ws_server.stop())
        with pytest.raises(ProtocolError) as caught:
            await ws.recv(timeout=5)
        await stopping
        assert caught.value.kind == "closed"
        assert caught.value.phase is Phase.FIRST_MESSAGE
        assert "1001" in str(caught.value)
        assert [m async for m in ws] == []
    finally:
        await ws.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_iteration_and_recv_timeout(
    tls_material: TLSMaterial, ws_server: WebSocketServer, backend: str
) -> None:
    async with await WebSocketWrapper.connect(
        ws_server.url("/ticker"),
        proxy=direct_decision(),
        tls=tls_material.verify_decision(),
        timeout=10,
        backend=backend,
    ) as ws:
        await ws.send({"op": "subscribe", "args": ["BTC"]})
        seen = []
        async for message in ws:
            seen.append(json.loads(message))
            if len(seen) == 4:
                break
        with pytest.raises(ProbeTimeout) as caught:
            await ws.recv(timeout=0.05)
    assert seen[0] == {"event": "subscribed", "args": ["BTC"]}
    assert [m["tick"] for m in seen[1:]] == [0, 1, 2]
    assert caught.value.phase is Phase.FIRST_MESSAGE


async def test_extra_headers_reach_the_server(
    tls_material: TLSMaterial, ws_server: WebSocketServer
) -> None:
    seen_headers: list[str | None] = []
    original = ws_server._process_request

    def remember(connection, request):  # type: ignore[no-untyped-def]
        seen_headers.append(request.headers.get("X-Mpnet-Test"))
        return original(connection, request)

    ws_server._process_request = remember  # type: ignore[method-assign]
    await ws_server.stop()
    await ws_server.start()
    async with await WebSocketWrapper.connect(
        ws_server.url(),
        proxy=direct_decision(),
        tls=tls_material.verify_decision(),
        timeout=10,
        headers={"X-Mpnet-Test": "yes"},
    ):
        pass
    assert seen_headers == ["yes"]


@pytest.mark.parametrize(
    ("url", "backend", "compression"),
    [
        ("https://127.0.0.1/", "websockets", None),
        ("ws://127.0.0.1/", "curl", None),
        ("ws://127.0.0.1/", "websockets", "brotli"),
    ],
)
async def test_bad_input_is_refused_before_any_io(
    tls_material: TLSMaterial, url: str, backend: str, compression: str | None
) -> None:
    with pytest.raises(UsageError):
        await WebSocketWrapper.connect(
            url,
            proxy=direct_decision(),
            tls=tls_material.verify_decision(),
            timeout=1,
            backend=backend,
            compression=compression,
        )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"a": [1, 2]}, '{"a":[1,2]}'),
        ([1, "x"], '[1,"x"]'),
        ("text", "text"),
        (b"\x00", b"\x00"),
    ],
)
def test_encode_message(data: object, expected: str | bytes) -> None:
    assert encode_message(data) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_upgrade_timeout_names_ws_upgrade(
    tls_material: TLSMaterial, silent_server: int, backend: str
) -> None:
    timings = PhaseTimings()
    with pytest.raises(ProbeTimeout) as caught:
        await WebSocketWrapper.connect(
            f"ws://127.0.0.1:{silent_server}/",
            proxy=direct_decision(),
            tls=tls_material.verify_decision(),
            timeout=0.2,
            backend=backend,
            timings=timings,
        )
    assert caught.value.phase is Phase.WS_UPGRADE
    assert timings.tcp is not None
