"""Every shipped profile against its simulator over TLS: REST health, then the WebSocket
welcome -> subscribe -> ack -> data -> application ping, as the profile describes them."""

from __future__ import annotations

import email.utils
import gzip
import json

import aiohttp
import pytest
from tests.lab.conftest import SHIPPED_NAMES, open_socket, wait_closed

from mpnet.config.profiles import ProfileSet
from mpnet.core.match import matches
from mpnet.lab import Lab


def test_every_expected_exchange_is_shipped(shipped: ProfileSet) -> None:
    assert shipped.names() == sorted(SHIPPED_NAMES)


@pytest.mark.parametrize("name", SHIPPED_NAMES)
async def test_rest_health_answers_like_the_profile_expects(
    lab: Lab, http: aiohttp.ClientSession, name: str
) -> None:
    profile = lab.profile(name)
    assert profile.rest is not None
    health = profile.rest.health
    assert profile.rest.base_url.startswith("https://127.0.0.1:")
    async with http.request(
        health.method,
        profile.rest.health_url,
        ssl=lab.client_ssl_context(),
        headers=dict(profile.rest.headers),
    ) as response:
        assert response.status == health.expect_status
        body = await response.json()
        assert email.utils.parsedate_to_datetime(response.headers["Date"]) is not None
    for key in health.expect_json_keys:
        assert key in body


@pytest.mark.parametrize("name", SHIPPED_NAMES)
async def test_websocket_session_follows_the_profile(
    lab: Lab, http: aiohttp.ClientSession, name: str
) -> None:
    profile = lab.profile(name)
    spec = profile.websocket
    assert spec is not None and spec.ping is not None
    assert spec.url.startswith("wss://127.0.0.1:")
    socket = await open_socket(
        http, profile, lab.client_ssl_context(), autoping=not spec.ping.frame
    )
    try:
        if spec.welcome is not None:
            assert matches(spec.welcome, await socket.receive_matching(spec.welcome, limit=2))
        for message in spec.subscribe:
            await socket.send(message)
        if spec.ack_match is not None:
            # The acknowledgement comes before any data; only a greeting (Kraken's status
            # message) may precede it.
            assert matches(spec.ack_match, await socket.receive_matching(spec.ack_match, limit=2))
        assert matches(spec.data_match, await socket.receive())
        if spec.ping.frame:
            await socket.ws.ping(b"mpnet")
            frame = await _next_pong_frame(socket.ws)
            assert frame.data == b"mpnet"
        else:
            await socket.send(spec.ping.send)
            assert matches(spec.ping.expect, await socket.receive_matching(spec.ping.expect))
    finally:
        await socket.ws.close()


async def _next_pong_frame(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    for _ in range(100):
        frame = await ws.receive(timeout=3)
        if frame.type is aiohttp.WSMsgType.PING:
            await ws.pong(frame.data)
        elif frame.type is aiohttp.WSMsgType.PONG:
            return frame
    raise AssertionError("no pong frame")


async def test_htx_sends_gzip_frames_and_server_pings(
    lab: Lab, http: aiohttp.ClientSession
) -> None:
    profile = lab.profile("htx")
    assert profile.websocket is not None and profile.websocket.server_ping is not None
    socket = await open_socket(http, profile, lab.client_ssl_context())
    try:
        await socket.send(profile.websocket.subscribe[0])
        while not socket.server_pings:
            await socket.receive()
        # Answered pings keep the connection open: more data keeps coming.
        for _ in range(5):
            assert matches(profile.websocket.data_match, await socket.receive_matching("*"))
    finally:
        await socket.ws.close()
    assert set(socket.frame_types) == {aiohttp.WSMsgType.BINARY}
    assert isinstance(socket.server_pings[0]["ping"], int)


async def test_htx_closes_a_client_that_ignores_its_pings(
    lab: Lab, http: aiohttp.ClientSession
) -> None:
    profile = lab.profile("htx")
    socket = await open_socket(http, profile, lab.client_ssl_context(), answer_server_pings=False)
    raw = []
    async with __import__("asyncio").timeout(5):
        while True:
            frame = await socket.ws.receive()
            if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                break
            raw.append(json.loads(gzip.decompress(frame.data)))
    assert socket.ws.close_code == aiohttp.WSCloseCode.GOING_AWAY
    assert [list(m) for m in raw] == [["ping"], ["ping"]]


async def test_binance_sends_ping_frames(lab: Lab, http: aiohttp.ClientSession) -> None:
    profile = lab.profile("binance")
    assert profile.websocket is not None
    ws = await http.ws_connect(profile.websocket.url, ssl=lab.client_ssl_context(), autoping=False)
    try:
        frame = await ws.receive(timeout=5)
        assert frame.type is aiohttp.WSMsgType.PING
        await ws.pong(frame.data)
    finally:
        await ws.close()


async def test_binance_drops_a_client_that_never_answers_ping_frames(
    lab: Lab, http: aiohttp.ClientSession
) -> None:
    profile = lab.profile("binance")
    assert profile.websocket is not None
    ws = await http.ws_connect(profile.websocket.url, ssl=lab.client_ssl_context(), autoping=False)
    assert await wait_closed(ws) is not None
    assert ws.closed


async def test_kucoin_bootstrap_gives_a_token_the_websocket_accepts(
    lab: Lab, http: aiohttp.ClientSession
) -> None:
    profile = lab.profile("kucoin")
    assert profile.rest is not None and profile.websocket is not None
    async with http.post(
        profile.rest.base_url + "/api/v1/bullet-public", ssl=lab.client_ssl_context()
    ) as response:
        document = await response.json()
    assert document["code"] == "200000"
    server = document["data"]["instanceServers"][0]
    assert server["endpoint"] == profile.websocket.url
    assert server["pingInterval"] == 18000
    socket = await open_socket(http, profile, lab.client_ssl_context())
    try:
        assert await socket.receive() == {"id": "test-connect-id", "type": "welcome"}
    finally:
        await socket.ws.close()


async def test_kucoin_refuses_an_unknown_token(lab: Lab, http: aiohttp.ClientSession) -> None:
    profile = lab.profile("kucoin")
    assert profile.websocket is not None
    ws = await http.ws_connect(
        profile.websocket.url + "?token=forged&connectId=x", ssl=lab.client_ssl_context()
    )
    first = await ws.receive(timeout=3)
    assert json.loads(first.data) == {
        "id": "x",
        "type": "error",
        "code": 401,
        "data": "token is verify failed",
    }
    assert await wait_closed(ws) == aiohttp.WSCloseCode.POLICY_VIOLATION


async def test_bitfinex_data_uses_the_channel_id_of_its_ack(
    lab: Lab, http: aiohttp.ClientSession
) -> None:
    profile = lab.profile("bitfinex")
    assert profile.websocket is not None
    socket = await open_socket(http, profile, lab.client_ssl_context())
    try:
        await socket.receive()
        await socket.send(profile.websocket.subscribe[0])
        ack = await socket.receive()
        data = await socket.receive()
    finally:
        await socket.ws.close()
    assert data[0] == ack["chanId"]
