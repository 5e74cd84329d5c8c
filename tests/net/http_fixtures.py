"""HTTP servers on 127.0.0.1 for the net/exchange, net/sessions, net/retry and mpnet.client tests.

- :func:`running_app`: an aiohttp.web server (plain or TLS) with scripted answers;
- :func:`running_raw_server`: a TCP server that reads the request head and answers with
  exact bytes, for malformed HTTP and early closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class ScriptedApp:
    """Routes:

    - ``/json``: ``{"ok": true}`` with Content-Length;
    - ``/chunked``: a JSON list sent in several chunks;
    - ``/text``: a non-JSON body;
    - ``/gzip``: a gzip-encoded JSON body;
    - ``/echo``: the request's method, headers and body as JSON;
    - ``/status/{code}``: that status, with any ``?retry_after=`` as Retry-After;
    - ``/script``: pops the next ``(status, headers)`` from ``script`` (200 when empty);
    - ``/hang``: never answers;
    - ``/held``: sends its head and the start of a body, finishes when ``release`` is set.

    ``requests`` counts requests per path; ``connections.idle()`` waits until the server side
    has closed every connection.
    """

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    port: int = 0
    scheme: str = "http"
    _runner: web.AppRunner | None = None
    connections: _OpenConnections | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def build(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/json", self._json)
        app.router.add_get("/chunked", self._chunked)
        app.router.add_get("/text", self._text)
        app.router.add_get("/gzip", self._gzip)
        app.router.add_route("*", "/echo", self._echo)
        app.router.add_get("/status/{code}", self._status)
        app.router.add_get("/script", self._script)
        app.router.add_get("/hang", self._hang)
        app.router.add_get("/held", self._held)
        app.middlewares.append(self._count)
        return app

    @web.middleware
    async def _count(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests[request.path] = self.requests.get(request.path, 0) + 1
        response: web.StreamResponse = await handler(request)
        return response

    async def _json(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _chunked(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"[1,", b"2,", b"3]"):
            await response.write(part)
        await response.write_eof()
        return response

    async def _text(self, request: web.Request) -> web.Response:
        return web.Response(text="<html>Access denied by the edge</html>" * 10)

    async def _gzip(self, request: web.Request) -> web.Response:
        body = gzip.compress(json.dumps({"zipped": True}).encode())
        return web.Response(
            body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.path_qs,
                "headers": dict(request.headers),
                "body": body.decode(),
            }
        )

    async def _status(self, request: web.Request) -> web.Response:
        headers = {}
        if "retry_after" in request.query:
            headers["Retry-After"] = request.query["retry_after"]
        return web.Response(status=int(request.match_info["code"]), text="x", headers=headers)

    async def _script(self, request: web.Request) -> web.Response:
        status, headers = self.script.pop(0) if self.script else (200, {})
        return web.Response(status=status, text=f"answer {status}", headers=headers)

    async def _held(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"held ")
        await self.release.wait()
        await response.write(b"released")
        await response.write_eof()
        return response

    async def _hang(self, request: web.Request) -> web.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


#: How long cleanup waits for a client to answer the server's TLS close_notify before it aborts.
CLOSE_WAIT = 5.0


class _OpenConnections:
    """The server side's open connections, so that cleanup can wait until each is closed.

    ``runner.cleanup()`` closes idle keep-alive connections and returns at once. Over TLS that
    close is a close_notify exchange which ends only when the client's answer arrives; through
    pproxy (another process) that takes a few scheduler ticks, and when the test's event loop
    closed first, the server's socket was left open and collected later with a ResourceWarning
    (the flaky ``test_session_follows_the_proxy_decision[https-http-connect*]``).
    """

    def __init__(self, server: web.Server) -> None:
        self._open: dict[object, asyncio.Transport] = {}
        self._all_closed = asyncio.Event()
        self._all_closed.set()
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: Any, transport: asyncio.Transport) -> None:
            self._open[handler] = transport
            self._all_closed.clear()
            made(handler, transport)

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            # Called from the handler's connection_lost: the socket is closed by then.
            self._open.pop(handler, None)
            if not self._open:
                self._all_closed.set()
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    async def idle(self) -> None:
        """Until no connection is open (the server side closed every one)."""
        await self._all_closed.wait()

    async def wait_closed(self) -> None:
        try:
            async with asyncio.timeout(CLOSE_WAIT):
                await self.idle()
        except TimeoutError:
            # A client that never answers close_notify: stop waiting for it.
            for transport in list(self._open.values()):
                transport.abort()
            await self._all_closed.wait()


@contextlib.asynccontextmanager
async def running_app(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[ScriptedApp]:
    scripted = ScriptedApp(scheme="https" if ssl_context else "http")
    runner = web.AppRunner(scripted.build(), handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    assert runner.server is not None
    scripted.connections = connections = _OpenConnections(runner.server)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    scripted.port = runner.addresses[0][1]
    try:
        yield scripted
    finally:
        await runner.cleanup()
        await connections.wait_closed()


@dataclass
class RawServer:
    """Answers every connection with ``answer`` (after reading the request head), then closes."""

    answer: bytes
    port: int = 0
    connections: int = 0


@contextlib.asynccontextmanager
async def running_raw_server(answer: bytes) -> AsyncIterator[RawServer]:
    raw = RawServer(answer=answer)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raw.connections += 1
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(raw.answer)
            await writer.drain()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    raw.port = server.sockets[0].getsockname()[1]
    try:
        yield raw
    finally:
        server.close()
        await server.wait_closed()
