"""The lab's refusals that come with HTTP 200 or inside the WebSocket: subscribe_error, Gate's own
clock check, maintenance on status endpoints, and no_pong. Each answer is the exchange's real
shape, and the profile's pattern (error_match, expect_json) is what tells it apart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from tests.lab.conftest import SHIPPED_NAMES, open_socket

from mpnet.config.profiles import ProfileSet
from mpnet.core.match import dig, matches
from mpnet.lab import Lab

#: A field of each exchange's refusal, as its docs show it.
REFUSAL_SHAPES = {
    "binance": ("error.code", 2),
    "binance-usdm": ("error.code", 2),
    "okx": ("code", "60018"),
    "deribit": ("error.code", -32602),
    "bybit": ("success", False),
    "coinbase": ("message", "failure to subscribe"),
    "kraken": ("success", False),
    "bitget": ("code", 30001),
    "gate": ("error.code", 2),
    "kucoin": ("type", "error"),
    "htx": ("err-code", "bad-request"),
    "bitfinex": ("code", 10300),
    "bitmex": ("status", 400),
}


@pytest.fixture
async def started() -> AsyncIterator[list[Lab]]:
    labs: list[Lab] = []
    yield labs
    for lab in labs:
        await lab.stop()


async def _start(labs: list[Lab], shipped: ProfileSet, name: str, fault: str | None) -> Lab:
    lab = Lab([shipped.get(name)], faults={name: fault} if fault else None, data_interval=0.02)
    await lab.start()
    labs.append(lab)
    return lab


def test_every_shipped_exchange_has_a_refusal_shape() -> None:
    assert set(REFUSAL_SHAPES) == set(SHIPPED_NAMES)


@pytest.mark.parametrize("name", SHIPPED_NAMES)
async def test_subscribe_error_answers_in_the_exchanges_own_shape(
    name: str, shipped: ProfileSet, http: aiohttp.ClientSession, started: list[Lab]
) -> None:
    lab = await _start(started, shipped, name, "subscribe_error")
    profile = lab.profile(name)
    spec = profile.websocket
    assert spec is not None and spec.error_match is not None
    socket = await open_socket(http, profile, lab.client_ssl_context())
    try:
        for message in spec.subscribe:
            await socket.send(message)
        refusal = await socket.receive_matching(spec.error_match, limit=5)
        path, value = REFUSAL_SHAPES[name]
        assert dig(refusal, path) == value, refusal
        assert not matches(spec.data_match, refusal)
        assert spec.ack_match is None or not matches(spec.ack_match, refusal)
        # Refused: no data follows (a dozen data periods).
        with pytest.raises(asyncio.TimeoutError):
            while True:
                assert not matches(spec.data_match, await socket.receive(timeout=0.25))
    finally:
        await socket.ws.close()


@pytest.mark.parametrize(("skew", "refused"), [("120", True), ("-61", True), ("30", False)])
async def test_gate_refuses_a_subscription_more_than_60_s_off_its_clock(
    skew: str, refused: bool, shipped: ProfileSet, http: aiohttp.ClientSession, started: list[Lab]
) -> None:
    lab = await _start(started, shipped, "gate", f"clock_skew:{skew}")
    profile = lab.profile("gate")
    spec = profile.websocket
    assert spec is not None and spec.error_match is not None and spec.ack_match is not None
    socket = await open_socket(http, profile, lab.client_ssl_context())
    try:
        await socket.send(spec.subscribe[0])
        answer = await socket.receive()
    finally:
        await socket.ws.close()
    assert matches(spec.error_match, answer) is refused
    assert matches(spec.ack_match, answer) is not refused


@pytest.mark.parametrize(
    ("name", "maintenance"),
    [
        ("bitfinex", [0]),
        ("kraken", {"result": {"status": "maintenance"}}),
        ("kucoin", {"data": {"status": "close"}}),
    ],
)
async def test_status_endpoints_answer_200_in_maintenance(
    name: str,
    maintenance: object,
    shipped: ProfileSet,
    http: aiohttp.ClientSession,
    started: list[Lab],
) -> None:
    for fault in (None, "maintenance"):
        lab = await _start(started, shipped, name, fault)
        rest = lab.profile(name).rest
        assert rest is not None and rest.health.status_endpoint
        async with http.get(rest.health_url, ssl=lab.client_ssl_context()) as response:
            assert response.status == 200
            body = await response.json()
        operational = matches(rest.health.expect_json, body)
        assert operational is (fault is None), body
        assert matches(maintenance, body) is (fault is not None), body


async def test_maintenance_elsewhere_is_a_503(
    shipped: ProfileSet, http: aiohttp.ClientSession, started: list[Lab]
) -> None:
    lab = await _start(started, shipped, "okx", "maintenance")
    rest = lab.profile("okx").rest
    assert rest is not None and not rest.health.status_endpoint
    async with http.get(rest.health_url, ssl=lab.client_ssl_context()) as response:
        assert response.status == 503
        assert "maintenance" in (await response.text()).lower()


@pytest.mark.parametrize("fault", [None, "no_pong"])
async def test_no_pong_leaves_application_pings_unanswered(
    fault: str | None, shipped: ProfileSet, http: aiohttp.ClientSession, started: list[Lab]
) -> None:
    lab = await _start(started, shipped, "htx", fault)
    profile = lab.profile("htx")
    spec = profile.websocket
    assert spec is not None and spec.ping is not None
    socket = await open_socket(http, profile, lab.client_ssl_context())
    try:
        await socket.send(spec.ping.send)
        if fault is None:
            assert matches(spec.ping.expect, await socket.receive())
        else:
            with pytest.raises(asyncio.TimeoutError):
                await socket.receive(timeout=0.5)
    finally:
        await socket.ws.close()


@pytest.mark.parametrize("fault", [None, "no_pong"])
async def test_no_pong_leaves_ping_frames_unanswered(
    fault: str | None, shipped: ProfileSet, http: aiohttp.ClientSession, started: list[Lab]
) -> None:
    lab = await _start(started, shipped, "binance", fault)
    profile = lab.profile("binance")
    socket = await open_socket(http, profile, lab.client_ssl_context(), autoping=False)
    try:
        await socket.ws.ping(b"mpnet")
        if fault is None:
            frame = await socket.ws.receive(timeout=3)
            assert frame.type is aiohttp.WSMsgType.PONG and frame.data == b"mpnet"
        else:
            with pytest.raises(asyncio.TimeoutError):
                await socket.ws.receive(timeout=0.5)
    finally:
        await socket.ws.close()
