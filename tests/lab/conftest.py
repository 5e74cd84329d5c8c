"""Fixtures for the lab tests: the shipped profiles, a TLS lab of all of them, a client session,
and a small WebSocket client that speaks a profile (gzip, server pings, text messages)."""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from mpnet.config.model import Profile
from mpnet.config.profiles import ProfileSet, load_profiles
from mpnet.core.match import fill_placeholders, matches
from mpnet.lab import Lab

SHIPPED_NAMES = (
    "binance",
    "binance-usdm",
    "okx",
    "deribit",
    "bybit",
    "coinbase",
    "kraken",
    "bitget",
    "gate",
    "kucoin",
    "htx",
    "bitfinex",
    "bitmex",
)


@pytest.fixture(scope="session")
def shipped() -> ProfileSet:
    return load_profiles()


@pytest.fixture
async def lab(shipped: ProfileSet) -> AsyncIterator[Lab]:
    async with Lab(shipped, server_ping_interval=0.1, ping_frame_interval=0.5) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def encode(message: Any) -> str:
    filled = fill_placeholders(message)
    return filled if isinstance(filled, str) else json.dumps(filled)


class ProfileSocket:
    """A WebSocket client for tests: decodes gzip and JSON, answers server pings if asked."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, profile: Profile, *, answer_server_pings: bool
    ) -> None:
        self.ws = ws
        self.profile = profile
        self.answer_server_pings = answer_server_pings
        self.frame_types: list[aiohttp.WSMsgType] = []
        self.server_pings: list[Any] = []

    async def send(self, message: Any) -> None:
        await self.ws.send_str(encode(message))

    async def receive(self, timeout: float = 3.0) -> Any:
        """The next application message (JSON, or text when it is not JSON)."""
        spec = self.profile.websocket
        assert spec is not None
        while True:
            frame = await self.ws.receive(timeout=timeout)
            if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                raise ConnectionError(f"closed: {frame.data} {frame.extra}")
            if frame.type is aiohttp.WSMsgType.PING:
                await self.ws.pong(frame.data)
                continue
            if frame.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                continue
            self.frame_types.append(frame.type)
            data = frame.data
            if frame.type is aiohttp.WSMsgType.BINARY:
                data = gzip.decompress(data).decode()
            try:
                message = json.loads(data)
            except ValueError:
                return data
            server_ping = spec.server_ping
            if server_ping and isinstance(message, dict) and server_ping.field in message:
                self.server_pings.append(message)
                if self.answer_server_pings:
                    await self.send({server_ping.reply_field: message[server_ping.field]})
                continue
            return message

    async def receive_matching(self, pattern: Any, limit: int = 40) -> Any:
        """The first of the next ``limit`` messages that matches ``pattern``."""
        for _ in range(limit):
            message = await self.receive()
            if matches(pattern, message):
                return message
        raise AssertionError(f"no message matching {pattern!r} in {limit} messages")


async def open_socket(
    http: aiohttp.ClientSession,
    profile: Profile,
    ssl_context: ssl.SSLContext | None,
    *,
    autoping: bool = True,
    answer_server_pings: bool = True,
) -> ProfileSocket:
    """Connect to a lab profile's WebSocket, running its bootstrap step first if it has one."""
    spec = profile.websocket
    assert spec is not None
    url = spec.url
    if spec.bootstrap:
        assert profile.rest is not None
        async with http.request(
            spec.bootstrap.method, profile.rest.base_url + spec.bootstrap.path, ssl=ssl_context
        ) as response:
            document = await response.json()
        from urllib.parse import urlencode

        from mpnet.core.match import dig

        values = {"token": dig(document, spec.bootstrap.token), "connect_id": "test-connect-id"}
        query = {k: v.format(**values) for k, v in spec.bootstrap.query.items()}
        url = f"{dig(document, spec.bootstrap.endpoint)}?{urlencode(query)}"
    ws = await http.ws_connect(url, ssl=ssl_context, autoping=autoping, headers=spec.headers)
    return ProfileSocket(ws, profile, answer_server_pings=answer_server_pings)


async def wait_closed(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> int | None:
    """Read until the server closes; returns the close code it sent."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await ws.receive()
            if frame.type is aiohttp.WSMsgType.PING:
                continue
            if frame.type is aiohttp.WSMsgType.CLOSE:
                # The code the server sent, even if our reply could not reach it any more.
                return int(frame.data)
            if frame.type is aiohttp.WSMsgType.CLOSED:
                return ws.close_code
