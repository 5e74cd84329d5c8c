"""Real servers on 127.0.0.1 for network tests: a trustme CA, TLS/plain echo servers, a
WebSocket echo server, pproxy as a real HTTP CONNECT / SOCKS proxy in a subprocess, and the lab
with a probe plan for it.

Plain helpers, not fixtures, so that any conftest can wrap them (see tests/net/conftest.py).
Every server binds 127.0.0.1 port 0; nothing here talks to any other address.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import selectors
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trustme

from mpnet.config.layers import NetworkOptions
from mpnet.config.model import ConfigFile
from mpnet.config.profiles import load_profiles
from mpnet.core.proxy import ProxyDecision
from mpnet.core.proxy_url import parse_proxy_url
from mpnet.core.tls import TLSDecision
from mpnet.lab import Lab
from mpnet.probe.plan import ProbePlan, build_plan

PROXY_USER = "mpnet"
PROXY_PASSWORD = "s3cret-pw"


# -- the lab ------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def lab_plan(
    *names: str,
    count: int = 1,
    concurrency: int = 4,
    timeout: float = 10,
    faults: dict[str, str] | None = None,
    **plan_options: Any,
) -> AsyncIterator[ProbePlan]:
    """A probe plan for the named shipped profiles against a TLS lab serving them (its CA
    trusted); ``plan_options`` go to ``build_plan`` (``rest=False``, say)."""
    async with Lab([load_profiles().get(n) for n in names], tls=True, faults=faults) as lab:
        yield build_plan(
            lab.profiles(),
            config=ConfigFile(),
            options=NetworkOptions(ca_bundle=lab.ca_file),
            env={},
            count=count,
            timeout=timeout,
            concurrency=concurrency,
            **plan_options,
        )


# -- TLS ----------------------------------------------------------------------------------------


@dataclass
class TLSMaterial:
    """A throw-away CA and the server certificates the tests need.

    ``ca_pem`` is the CA written to a file (for ``--ca-bundle`` and TLSDecisions). The
    ``*_context`` methods build server-side contexts: valid for 127.0.0.1/localhost, expired,
    issued for another host name, or signed by a CA nobody trusts.
    """

    ca: trustme.CA
    ca_pem: Path
    server: trustme.LeafCert
    expired: trustme.LeafCert
    wrong_host: trustme.LeafCert
    untrusted: trustme.LeafCert

    @staticmethod
    def _context(cert: trustme.LeafCert) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(ctx)
        return ctx

    def server_context(self) -> ssl.SSLContext:
        return self._context(self.server)

    def expired_context(self) -> ssl.SSLContext:
        return self._context(self.expired)

    def wrong_host_context(self) -> ssl.SSLContext:
        return self._context(self.wrong_host)

    def untrusted_context(self) -> ssl.SSLContext:
        return self._context(self.untrusted)

    def verify_decision(self) -> TLSDecision:
        """Verify against this CA (what ``--ca-bundle ca.pem`` decides)."""
        return TLSDecision(
            verify=True, ca=str(self.ca_pem), ca_kind="file", layer="cli", reason="--ca-bundle"
        )


def make_tls_material(directory: Path) -> TLSMaterial:
    ca = trustme.CA()
    ca_pem = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    return TLSMaterial(
        ca=ca,
        ca_pem=ca_pem,
        server=ca.issue_cert("127.0.0.1", "localhost"),
        expired=ca.issue_cert(
            "127.0.0.1",
            "localhost",
            not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
            not_after=dt.datetime(2021, 1, 1, tzinfo=dt.UTC),
        ),
        wrong_host=ca.issue_cert("elsewhere.example"),
        untrusted=trustme.CA().issue_cert("127.0.0.1", "localhost"),
    )


def insecure_decision() -> TLSDecision:
    return TLSDecision(
        verify=False,
        ca=None,
        ca_kind="none",
        layer="cli",
        reason="--insecure",
        warnings=("TLS verification is off (--insecure)",),
    )


def direct_decision(url: str = "") -> ProxyDecision:
    return ProxyDecision(target_url=url, proxy=None, layer="default")


def proxy_decision(proxy_url: str, url: str = "") -> ProxyDecision:
    return ProxyDecision(
        target_url=url, proxy=parse_proxy_url(proxy_url), layer="cli", source="--proxy"
    )


# -- plain TCP / TLS echo -----------------------------------------------------------------------


@dataclass
class EchoServer:
    """A TCP server that echoes whatever it reads, with or without TLS."""

    server: asyncio.Server
    port: int
    connections: set[asyncio.StreamWriter] = field(default_factory=set)

    async def close(self) -> None:
        self.server.close()
        # asyncio.Server.close() leaves accepted connections open (Python 3.11).
        for writer in list(self.connections):
            writer.transport.abort()
        await self.server.wait_closed()


async def start_echo_server(ssl_context: ssl.SSLContext | None = None) -> EchoServer:
    connections: set[asyncio.StreamWriter] = set()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.add(writer)
        try:
            with contextlib.suppress(OSError, ssl.SSLError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
        finally:
            connections.discard(writer)
            writer.transport.abort()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=ssl_context)
    return EchoServer(
        server=server, port=server.sockets[0].getsockname()[1], connections=connections
    )


# -- WebSocket ----------------------------------------------------------------------------------


@dataclass
class WebSocketServer:
    """A websockets server on 127.0.0.1 with a few paths:

    - ``/echo``: sends every message back;
    - ``/ticker``: answers ``{"op": "subscribe", ...}`` with an ack and then ``{"tick": n}``
      messages for as long as the client stays; sends ``{"ping": n}`` application keepalives
      first when the query has ``app_ping``;
    - ``/forbidden``: refuses the upgrade with 403 and a body.

    ``stop()`` and ``start()`` may be called again to simulate an outage on the same port.
    """

    ssl_context: ssl.SSLContext | None = None
    port: int = 0
    received: list[str | bytes] = field(default_factory=list)
    connections: int = 0
    pongs: list[Any] = field(default_factory=list)
    _server: Any = None

    @property
    def scheme(self) -> str:
        return "wss" if self.ssl_context else "ws"

    def url(self, path: str = "/echo", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    async def start(self) -> WebSocketServer:
        from websockets.asyncio.server import serve

        self._server = await serve(
            self._handle,
            "127.0.0.1",
            self.port,
            ssl=self.ssl_context,
            process_request=self._process_request,
            compression=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _process_request(self, connection: Any, request: Any) -> Any:
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        if request.path.startswith("/forbidden"):
            body = b"<html>403 Forbidden: access from your region is restricted</html>"
            headers = Headers([("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
            return Response(403, "Forbidden", headers, body)
        return None

    async def _handle(self, connection: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        self.connections += 1
        path = connection.request.path
        with contextlib.suppress(ConnectionClosed):
            if path.startswith("/ticker"):
                await self._ticker(connection, app_ping="app_ping" in path)
            else:
                async for message in connection:
                    self.received.append(message)
                    await connection.send(message)

    async def _ticker(self, connection: Any, *, app_ping: bool) -> None:
        if app_ping:
            await connection.send(json.dumps({"ping": 1}))
        async for message in connection:
            self.received.append(message)
            request = json.loads(message)
            if "pong" in request:
                self.pongs.append(request["pong"])
                continue
            if request.get("op") == "subscribe":
                await connection.send(json.dumps({"event": "subscribed", "args": request["args"]}))
                for n in range(3):
                    await connection.send(json.dumps({"tick": n, "args": request["args"]}))


@contextlib.asynccontextmanager
async def running_websocket_server(
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[WebSocketServer]:
    server = await WebSocketServer(ssl_context=ssl_context).start()
    try:
        yield server
    finally:
        await server.stop()


# -- pproxy -------------------------------------------------------------------------------------


@dataclass
class ProxyProcess:
    """One pproxy process with one listener per requested URL; ``urls`` has the real ports."""

    process: subprocess.Popen[bytes]
    urls: dict[str, str]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_pproxy(
    listeners: dict[str, str], *, ssl_files: tuple[str, str] | None = None
) -> ProxyProcess:
    """Start pproxy listening on every ``name -> scheme[#user:pass]`` entry, port 0 each.

    pproxy prints ``Serving on ... 127.0.0.1:PORT`` per listener in the order given, which is
    how the real ports are learnt (no polling). ``--auth 0`` stops pproxy from remembering an
    authenticated client IP, so that wrong credentials are refused every time.
    """
    args: list[str] = [sys.executable, "-u", "-m", "pproxy", "--auth", "0"]
    for spec in listeners.values():
        scheme, _, auth = spec.partition("#")
        args += ["-l", f"{scheme}://127.0.0.1:0" + (f"#{auth}" if auth else "")]
    if ssl_files:
        args += ["--ssl", ",".join(ssl_files)]
    process = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_pproxy_environment(),
        # Unbuffered: a buffered readline() would swallow lines the selector then never sees.
        bufsize=0,
    )
    assert process.stdout is not None
    try:
        ports = _read_listening_ports(process, count=len(listeners))
    except BaseException:
        ProxyProcess(process=process, urls={}).stop()
        raise
    urls = {}
    for (name, spec), port in zip(listeners.items(), ports, strict=True):
        scheme, _, auth = spec.partition("#")
        scheme = scheme.replace("+ssl", "").replace("http", "https") if "+ssl" in scheme else scheme
        urls[name] = f"{scheme}://{auth + '@' if auth else ''}127.0.0.1:{port}"
    return ProxyProcess(process=process, urls=urls)


def _read_listening_ports(process: subprocess.Popen[bytes], *, count: int) -> list[int]:
    """Read pproxy's ``Serving on ... 127.0.0.1:PORT`` lines (raw reads: a buffered readline
    could swallow several lines while select() waits for more)."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    output = b""
    deadline = time.monotonic() + 30
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while output.count(b"Serving on") < count or not output.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise RuntimeError(f"pproxy did not start in time: {output!r}")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"pproxy exited with {process.wait()}: {output!r}")
            output += chunk
    lines = [line for line in output.decode().splitlines() if line.startswith("Serving on")]
    return [int(line.split()[3].rsplit(":", 1)[1]) for line in lines]


def _pproxy_environment() -> dict[str, str]:
    env = dict(os.environ)
    for name in list(env):
        if name.lower().endswith("_proxy"):
            del env[name]
    return env


#: The listeners every network test may use: name -> pproxy scheme[#user:password].
STANDARD_PROXIES = {
    "http": "http",
    "http_auth": f"http#{PROXY_USER}:{PROXY_PASSWORD}",
    "socks5": "socks5",
    "socks5_auth": f"socks5#{PROXY_USER}:{PROXY_PASSWORD}",
    "socks4": "socks4",
}


def with_scheme(url: str, scheme: str) -> str:
    """``socks5://u:p@h:1`` -> ``socks5h://u:p@h:1``: the same listener, another client view."""
    return scheme + url[url.index("://") :]


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


__all__: Sequence[str] = [
    "PROXY_PASSWORD",
    "PROXY_USER",
    "STANDARD_PROXIES",
    "EchoServer",
    "ProxyProcess",
    "TLSMaterial",
    "WebSocketServer",
    "closed_port",
    "direct_decision",
    "insecure_decision",
    "make_tls_material",
    "proxy_decision",
    "running_websocket_server",
    "start_echo_server",
    "start_pproxy",
    "with_scheme",
]


# -- a Squid-like forward proxy -----------------------------------------------------------------

SQUID_SERVER = "squid/6.6"


@dataclass
class SquidLikeProxy:
    """An HTTP forward proxy on 127.0.0.1 that answers as Squid does with its default rules.

    - ``CONNECT`` only to the ports in ``connect_ports`` (Squid's ``http_access deny CONNECT
      !SSL_ports``): others get ``403`` with ``X-Squid-Error: ERR_ACCESS_DENIED 0``;
    - absolute-form requests (``GET http://host:port/path``) are forwarded in origin form;
    - a target it cannot reach gets ``503`` with ``X-Squid-Error: ERR_CONNECT_FAIL 111``;
    - with ``credentials`` (``user:password``), a request without the right
      ``Proxy-Authorization: Basic`` gets ``407``.

    ``request_lines`` records every request line received, ``proxy_authorization`` the
    ``Proxy-Authorization`` value of each (None when absent). With ``ssl_context`` it is an
    ``https://`` proxy (TLS to the proxy itself first).
    """

    credentials: str | None = None
    connect_ports: frozenset[int] = frozenset({443})
    ssl_context: ssl.SSLContext | None = None
    port: int = 0
    request_lines: list[str] = field(default_factory=list)
    proxy_authorization: list[str | None] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        auth = f"{self.credentials}@" if self.credentials else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}"

    async def start(self) -> SquidLikeProxy:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", 0, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    @staticmethod
    def _answer(status: str, headers: dict[str, str], body: str = "") -> bytes:
        data = body.encode()
        lines = [f"HTTP/1.1 {status}", f"Server: {SQUID_SERVER}", f"Content-Length: {len(data)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines += ["Connection: close", "", ""]
        return "\r\n".join(lines).encode("latin-1") + data

    def _error_page(self, status: str, squid_error: str) -> bytes:
        page = (
            "<html><head><title>ERROR: The requested URL could not be retrieved</title></head>"
            f"<body><p>{squid_error}</p></body></html>"
        )
        return self._answer(status, {"X-Squid-Error": squid_error}, page)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        request_line, fields = lines[0], [line for line in lines[1:] if line]
        self.request_lines.append(request_line)
        auth = next(
            (
                v.strip()
                for k, _, v in (f.partition(":") for f in fields)
                if k.lower() == "proxy-authorization"
            ),
            None,
        )
        self.proxy_authorization.append(auth)
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
            if auth != expected:
                writer.write(
                    self._answer(
                        "407 Proxy Authentication Required",
                        {"Proxy-Authenticate": 'Basic realm="squid"'},
                    )
                )
                await writer.drain()
                return
        method, target, _version = request_line.split(" ", 2)
        if method == "CONNECT":
            host, _, port_text = target.rpartition(":")
            port = int(port_text)
            if port not in self.connect_ports:
                writer.write(self._error_page("403 Forbidden", "ERR_ACCESS_DENIED 0"))
                await writer.drain()
                return
            upstream = await self._open(host.strip("[]"), port, writer)
            if upstream is None:
                return
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await _relay(reader, writer, *upstream)
            return
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            writer.write(self._error_page("400 Bad Request", "ERR_INVALID_URL 0"))
            await writer.drain()
            return
        upstream = await self._open(parts.hostname, parts.port or 80, writer)
        if upstream is None:
            return
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        kept = [f for f in fields if not f.lower().startswith("proxy-")]
        up_reader, up_writer = upstream
        up_writer.write(
            "\r\n".join([f"{method} {path} {_version}", *kept, "", ""]).encode("latin-1")
        )
        await up_writer.drain()
        await _relay(reader, writer, up_reader, up_writer)

    async def _open(
        self, host: str, port: int, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await asyncio.open_connection(host, port)
        except OSError:
            writer.write(self._error_page("503 Service Unavailable", "ERR_CONNECT_FAIL 111"))
            await writer.drain()
            return None


async def _relay(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        with contextlib.suppress(OSError, RuntimeError):
            if sink.can_write_eof():
                sink.write_eof()

    try:
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
    finally:
        up_writer.transport.abort()


@contextlib.asynccontextmanager
async def running_squid_like(**options: Any) -> AsyncIterator[SquidLikeProxy]:
    proxy = await SquidLikeProxy(**options).start()
    try:
        yield proxy
    finally:
        await proxy.stop()
