"""A connection cut during the WebSocket upgrade is reported as cut, the same on both backends.

Found by the proxy soak (tests/soak): websockets reported a bad HTTP answer, and aiohttp retried
on a second connection that does not exist ("the dialled connection was already used").
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import pytest

from fixtures_servers import direct_decision, insecure_decision
from mpnet.errors import Phase, ProtocolError
from mpnet.net.ws import WebSocketWrapper


async def _cutting_server(how: str) -> tuple[asyncio.Server, set[asyncio.Task[None]]]:
    """Reads the upgrade request, then closes (FIN) or resets (RST) without answering."""
    handlers: set[asyncio.Task[None]] = set()

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        await reader.readuntil(b"\r\n\r\n")
        if how == "reset":
            # Linger 0: close() sends RST instead of FIN.
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_server(cut, "127.0.0.1", 0)
    return server, handlers


@pytest.fixture(params=["closed", "reset"])
async def cutting_server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, int]]:
    server, handlers = await _cutting_server(request.param)
    try:
        yield request.param, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
        await asyncio.gather(*handlers, return_exceptions=True)


@pytest.mark.parametrize("backend", ["websockets", "aiohttp"])
async def test_cut_during_upgrade_is_closed_or_reset(
    cutting_server: tuple[str, int], backend: str
) -> None:
    how, port = cutting_server
    if backend == "websockets":
        # websockets' protocol sees only the end of the stream, not how it ended.
        how = "closed"
    with pytest.raises(ProtocolError) as caught:
        await WebSocketWrapper.connect(
            f"ws://127.0.0.1:{port}/ws",
            proxy=direct_decision(),
            tls=insecure_decision(),
            timeout=5,
            backend=backend,
        )
    assert caught.value.phase == Phase.WS_UPGRADE
    assert caught.value.kind == how
    assert f"was {how} during the WebSocket upgrade" in caught.value.message
