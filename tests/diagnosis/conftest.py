"""Servers for the end-to-end diagnosis tests, each on 127.0.0.1 port 0.

`mpnet probe` runs its own event loop in the test's thread (through CliRunner), so the servers
these tests need besides the lab (which the command starts itself) run on a second event loop in
a background thread: TLS servers with trustme certificates that are expired, issued for another
host, signed by an unknown CA or about to expire; HTTP proxies that refuse every CONNECT or
accept only NTLM; a listening socket whose accept queue is full; and pproxy (a subprocess) as
the real proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
import trustme

from fixtures_servers import (
    STANDARD_PROXIES,
    TLSMaterial,
    closed_port,
    make_tls_material,
    start_pproxy,
)

T = TypeVar("T")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

#: Days of validity left on the certificate that should draw CERT_EXPIRING (threshold: 14).
EXPIRING_IN_DAYS = 5
#: What the refusing proxy says to every CONNECT.
DENIAL_BODY = b"CONNECT to this destination is not allowed by policy\n"


class BackgroundLoop:
    """An event loop in a daemon thread, for servers that must answer while the test's thread
    is busy inside `mpnet probe`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="e2e-servers")
        self._thread.start()

    def run(self, coroutine: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await coroutine

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout=30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()


async def _answer_health(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A minimal HTTP/1.1 server: 200 with a small JSON body, then close."""
    with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError):
        await reader.readuntil(b"\r\n\r\n")
        body = b'{"ok": true}'
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
    writer.transport.abort()


async def _refuse_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An HTTP proxy whose policy refuses every tunnel: CONNECT gets 403 Forbidden."""
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(DENIAL_BODY), DENIAL_BODY)
        )
        await writer.drain()
    writer.transport.abort()


async def _ask_for_ntlm(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An HTTP proxy that accepts only NTLM or Negotiate (Kerberos) authentication."""
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM\r\n"
            b"Proxy-Authenticate: Negotiate\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
    writer.transport.abort()


@dataclass(frozen=True)
class Servers:
    """Ports of the running servers, and the CA that signed the trustme certificates."""

    tls: TLSMaterial
    expired: int
    wrong_host: int
    untrusted: int
    expiring: int
    denying_proxy: int
    ntlm_proxy: int
    full_backlog: int | None  # None when this kernel accepts past a full queue


def _server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    return context


def _full_backlog_listener() -> tuple[int | None, list[socket.socket]]:
    """A listening socket with backlog 0 and one queued, never-accepted connection.

    Linux drops further SYNs while the accept queue is full, so a TCP connect to it gets no
    answer at all: a real connect timeout without leaving loopback. Returns None for the port
    when this kernel does answer anyway (checked once, with a non-blocking connect).
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=5)
    held = [listener, filler]
    check = socket.socket()
    check.settimeout(0.3)
    try:
        check.connect(("127.0.0.1", port))
    except TimeoutError:
        return port, held
    except OSError:
        pass
    finally:
        check.close()
    return None, held


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    material = make_tls_material(tmp_path_factory.mktemp("tls"))
    expiring = material.ca.issue_cert(
        "127.0.0.1",
        "localhost",
        not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=EXPIRING_IN_DAYS, hours=12),
    )
    background = BackgroundLoop()
    started: list[asyncio.Server] = []

    def start(handler: Handler, context: ssl.SSLContext | None = None) -> int:
        server = background.run(asyncio.start_server(handler, "127.0.0.1", 0, ssl=context))
        started.append(server)
        return int(server.sockets[0].getsockname()[1])

    full_backlog, held = _full_backlog_listener()
    try:
        yield Servers(
            tls=material,
            expired=start(_answer_health, material.expired_context()),
            wrong_host=start(_answer_health, material.wrong_host_context()),
            untrusted=start(_answer_health, material.untrusted_context()),
            expiring=start(_answer_health, _server_context(expiring)),
            denying_proxy=start(_refuse_connect),
            ntlm_proxy=start(_ask_for_ntlm),
            full_backlog=full_backlog,
        )
    finally:

        async def close_all() -> None:
            for server in started:
                server.close()
                await server.wait_closed()

        background.run(close_all())
        background.close()
        for sock in held:
            sock.close()


@pytest.fixture(scope="module")
def pproxy_urls() -> Iterator[dict[str, str]]:
    """pproxy listeners: http, http_auth, socks5, socks5_auth, socks4 -> proxy URLs."""
    process = start_pproxy(STANDARD_PROXIES)
    try:
        yield process.urls
    finally:
        process.stop()


@pytest.fixture(scope="module")
def profiles_dir(tmp_path_factory: pytest.TempPathFactory, servers: Servers) -> Path:
    """One REST-only profile per fault that the lab cannot simulate, named after it."""
    directory = tmp_path_factory.mktemp("profiles")
    hosts = {
        "nxdomain": "https://api.exchange.invalid",
        "noresolver": "https://api.exchange.example",
        "refused": f"https://127.0.0.1:{closed_port()}",
        "blackhole": f"https://127.0.0.1:{servers.full_backlog or closed_port()}",
        "expired": f"https://127.0.0.1:{servers.expired}",
        "wronghost": f"https://127.0.0.1:{servers.wrong_host}",
        "untrusted": f"https://127.0.0.1:{servers.untrusted}",
        "expiring": f"https://127.0.0.1:{servers.expiring}",
    }
    for name, base_url in hosts.items():
        (directory / f"{name}.yaml").write_text(
            f"name: {name}\n"
            f"title: {name.title()}\n"
            "rest:\n"
            f"  base_url: {base_url}\n"
            "  health: {method: GET, path: /health, expect_status: 200}\n",
            encoding="utf-8",
        )
    return directory
