"""ReconnectingWebSocket against a real server that is stopped and restarted on the same port.

The injected ``sleep`` is the synchronisation point: the client calls it before every
reconnection attempt, and the test decides there whether the server is back yet. Nothing
sleeps for real.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

import pytest

from fixtures_servers import TLSMaterial, WebSocketServer, direct_decision
from mpnet.errors import ConnectError, ProtocolError, UsageError
from mpnet.net.ws import ReconnectingWebSocket, WebSocketWrapper

SUBSCRIBE = {"op": "subscribe", "args": ["BTC-USDT"]}


class Outage:
    """Stops the server on demand; the client's n-th sleep of an outage brings it back."""

    def __init__(self, server: WebSocketServer, *, failed_attempts: int) -> None:
        self.server = server
        self.failed_attempts = failed_attempts
        self.delays: list[float] = []
        self._stopping: asyncio.Task[None] | None = None
        self._sleeps_this_outage = 0

    def begin(self) -> None:
        self._stopping = asyncio.create_task(self.server.stop())
        self._sleeps_this_outage = 0

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        self._sleeps_this_outage += 1
        if self._stopping is not None:
            await self._stopping
        if self._sleeps_this_outage > self.failed_attempts and self.server._server is None:
            await self.server.start()


def _connect_factory(server: WebSocketServer, tls: TLSMaterial, backend: str) -> Any:
    return functools.partial(
        WebSocketWrapper.connect,
        server.url("/ticker"),
        proxy=direct_decision(),
        tls=tls.verify_decision(),
        timeout=5,
        backend=backend,
    )


async def _one_round(rws: ReconnectingWebSocket) -> list[dict[str, Any]]:
    """What the server sends per subscription: the ack, then three ticks."""
    return [json.loads(await rws.recv()) for _ in range(4)]


ROUND = [
    {"event": "subscribed", "args": ["BTC-USDT"]},
    {"tick": 0, "args": ["BTC-USDT"]},
    {"tick": 1, "args": ["BTC-USDT"]},
    {"tick": 2, "args": ["BTC-USDT"]},
]


@pytest.mark.parametrize("backend", ["websockets", "aiohttp"])
async def test_reconnects_resubscribes_and_counts_gaps(
    tls_material: TLSMaterial, ws_server: WebSocketServer, backend: str
) -> None:
    outage = Outage(ws_server, failed_attempts=1)
    rws = ReconnectingWebSocket(
        _connect_factory(ws_server, tls_material, backend),
        initial_delay=0.2,
        max_delay=1.0,
        random=lambda: 0.5,
        sleep=outage.sleep,
    )
    async with rws:
        await rws.subscribe(SUBSCRIBE)
        rounds = [await _one_round(rws)]
        for _ in range(3):
            outage.begin()
            rounds.append(await _one_round(rws))
    assert rounds == [ROUND] * 4
    assert rws.reconnects == 3
    assert len(rws.gaps) == 3
    assert all(gap.end is not None and gap.end >= gap.start for gap in rws.gaps)
    # One refused attempt per outage: delays 0.5 * 0.2 * 2**n for n = 0, 1, every time.
    assert outage.delays == pytest.approx([0.1, 0.2] * 3)
    subscriptions = [json.loads(m) for m in ws_server.received]
    assert subscriptions == [SUBSCRIBE] * 4
    assert isinstance(rws.last_error, (ProtocolError, ConnectError))
    assert rws.closed and rws.connection is None


async def test_gives_up_after_max_attempts(
    tls_material: TLSMaterial, ws_server: WebSocketServer
) -> None:
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)

    rws = ReconnectingWebSocket(
        _connect_factory(ws_server, tls_material, "websockets"),
        initial_delay=1.0,
        max_delay=3.0,
        max_attempts=4,
        random=lambda: 1.0,
        sleep=record,
    )
    await rws.connect()
    await ws_server.stop()
    with pytest.raises(ConnectError) as caught:
        await rws.recv()
    await rws.close()
    assert caught.value.kind == "refused"
    # One wait before each of the four attempts: capped full-jitter windows, with random()
    # pinned to its upper end.
    assert delays == [1.0, 2.0, 3.0, 3.0]
    assert len(rws.gaps) == 1 and rws.gaps[0].end is None
    assert rws.reconnects == 0


async def test_answers_application_keepalives(
    tls_material: TLSMaterial, ws_server: WebSocketServer
) -> None:
    def htx_pong(message: str | bytes) -> dict[str, Any] | None:
        data = json.loads(message)
        return {"pong": data["ping"]} if "ping" in data else None

    factory = functools.partial(
        WebSocketWrapper.connect,
        ws_server.url("/ticker?app_ping=1"),
        proxy=direct_decision(),
        tls=tls_material.verify_decision(),
        timeout=5,
    )
    async with ReconnectingWebSocket(factory, keepalive=htx_pong) as rws:
        await rws.subscribe(SUBSCRIBE)
        messages = await _one_round(rws)
    assert messages == ROUND
    assert ws_server.pongs == [1]


async def test_close_ends_iteration(tls_material: TLSMaterial, ws_server: WebSocketServer) -> None:
    rws = ReconnectingWebSocket(_connect_factory(ws_server, tls_material, "websockets"))
    await rws.subscribe(SUBSCRIBE)
    seen = []
    async for message in rws:
        seen.append(message)
        if len(seen) == 2:
            await rws.close()
    assert len(seen) == 2
    with pytest.raises(ProtocolError):
        await rws.recv()


def test_max_attempts_must_be_positive() -> None:
    async def never() -> WebSocketWrapper:
        raise AssertionError("not called")

    with pytest.raises(UsageError):
        ReconnectingWebSocket(never, max_attempts=0)
