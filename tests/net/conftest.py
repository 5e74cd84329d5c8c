"""Network fixtures: the generic servers live in tests/fixtures_servers.py for reuse."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator

import pytest

from fixtures_servers import (
    STANDARD_PROXIES,
    EchoServer,
    ProxyProcess,
    TLSMaterial,
    WebSocketServer,
    make_tls_material,
    start_echo_server,
    start_pproxy,
)


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    """A trustme CA (written to ``ca.pem``) and server certificates for 127.0.0.1/localhost."""
    return make_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def proxies() -> Iterator[dict[str, str]]:
    """pproxy listeners: http, http_auth, socks5, socks5_auth, socks4 -> proxy URLs."""
    process: ProxyProcess = start_pproxy(STANDARD_PROXIES)
    try:
        yield process.urls
    finally:
        process.stop()


@pytest.fixture
async def ws_server() -> AsyncIterator[WebSocketServer]:
    server = await WebSocketServer().start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def wss_server(tls_material: TLSMaterial) -> AsyncIterator[WebSocketServer]:
    server = await WebSocketServer(ssl_context=tls_material.server_context()).start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def echo_server() -> AsyncIterator[EchoServer]:
    server = await start_echo_server()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def tls_echo_server(tls_material: TLSMaterial) -> AsyncIterator[EchoServer]:
    server = await start_echo_server(tls_material.server_context())
    try:
        yield server
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def _never_answering(ssl_context: ssl.SSLContext | None) -> AsyncIterator[int]:
    hold = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await hold.wait()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0, ssl=ssl_context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        hold.set()
        for writer in writers:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """Accepts TCP connections and never says a word."""
    async with _never_answering(None) as port:
        yield port


@pytest.fixture
async def silent_tls_server(tls_material: TLSMaterial) -> AsyncIterator[int]:
    """Completes the TLS handshake (trustme certificate for 127.0.0.1), then never answers."""
    async with _never_answering(tls_material.server_context()) as port:
        yield port
