"""net/exchange, net/sessions, net/retry and net/translate: timed_request, HTTPSessionManager
and request_with_retry against servers and pproxy on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Iterator

import pytest
from http_fixtures import ScriptedApp, running_app, running_raw_server

from fixtures_servers import (
    PROXY_PASSWORD,
    TLSMaterial,
    closed_port,
    direct_decision,
    insecure_decision,
    proxy_decision,
    start_pproxy,
    with_scheme,
)
from mpnet import __version__
from mpnet.core.proxy import ProxyDecision
from mpnet.core.tls import TLSDecision
from mpnet.errors import (
    ConnectError,
    Phase,
    ProbeTimeout,
    ProtocolError,
    ProxyAuthError,
    TLSError,
    UsageError,
)
from mpnet.net.exchange import (
    MAX_HEAD_BYTES,
    MAX_HEADER_COUNT,
    _build_request,
    timed_request,
)
from mpnet.net.retry import is_retryable_status, request_with_retry
from mpnet.net.sessions import HTTPSessionManager
from mpnet.net.tls import VERIFY_KINDS
from mpnet.net.translate import translate_client_error


@pytest.fixture
async def app() -> AsyncIterator[ScriptedApp]:
    async with running_app() as server:
        yield server


@pytest.fixture
async def tls_app(tls_material: TLSMaterial) -> AsyncIterator[ScriptedApp]:
    async with running_app(tls_material.server_context()) as server:
        yield server


@pytest.fixture
async def manager() -> AsyncIterator[HTTPSessionManager]:
    async with HTTPSessionManager() as sessions:
        yield sessions


class SleepRecorder:
    """Stands in for asyncio.sleep: records the delays, waits for nothing."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> Iterator[SleepRecorder]:
    yield SleepRecorder()


def _proxy(proxies: dict[str, str], name: str | None, scheme: str | None = None) -> ProxyDecision:
    if name is None:
        return direct_decision()
    url = proxies[name]
    return proxy_decision(with_scheme(url, scheme) if scheme else url)


PATHS = [
    pytest.param(None, None, id="direct"),
    pytest.param("http", None, id="http-connect"),
    pytest.param("http_auth", None, id="http-connect-auth"),
    pytest.param("socks5_auth", "socks5h", id="socks5h-auth"),
]


# -- timed_request ------------------------------------------------------------------------------


@pytest.mark.parametrize(("proxy_name", "scheme"), PATHS)
@pytest.mark.parametrize("secure", [False, True], ids=["http", "https"])
async def test_timed_request_times_every_phase(
    proxies: dict[str, str],
    tls_material: TLSMaterial,
    proxy_name: str | None,
    scheme: str | None,
    secure: bool,
) -> None:
    decision = _proxy(proxies, proxy_name, scheme)
    context = tls_material.server_context() if secure else None
    async with running_app(context) as server:
        before = time.time()
        response = await timed_request(
            "GET",
            server.url("/json"),
            proxy=decision,
            tls=tls_material.verify_decision(),
            timeout=10,
        )
        after = time.time()
    assert response.status == 200
    assert response.json() == {"ok": True}
    phases = response.timings.to_dict()
    expected = {"dns", "tcp", "http"}
    # A plain http target goes to an HTTP proxy in absolute form: no CONNECT, no proxy phase.
    if proxy_name and (secure or not proxy_name.startswith("http")):
        expected.add("proxy")
    if secure:
        expected.add("tls")
    assert set(phases) == expected
    assert all(value >= 0 for value in phases.values())
    assert before <= response.received_at <= after
    assert (response.peer.tls is not None) is secure
    if proxy_name:
        assert response.peer.via_proxy is not None
        assert PROXY_PASSWORD not in response.peer.via_proxy
    assert server.requests == {"/json": 1}


async def test_timed_request_reads_a_chunked_body(app: ScriptedApp) -> None:
    response = await timed_request(
        "GET", app.url("/chunked"), proxy=direct_decision(), tls=insecure_decision(), timeout=5
    )
    assert response.header("Transfer-Encoding") == "chunked"
    assert response.json() == [1, 2, 3]


async def test_timed_request_sends_json_and_default_headers(app: ScriptedApp) -> None:
    response = await timed_request(
        "POST",
        app.url("/echo?x=1"),
        proxy=direct_decision(),
        tls=insecure_decision(),
        timeout=5,
        headers={"X-Probe": "yes"},
        json_body={"op": "ping"},
    )
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["path"] == "/echo?x=1"
    assert seen["body"] == '{"op":"ping"}'
    assert seen["headers"]["Content-Type"] == "application/json"
    assert seen["headers"]["Content-Length"] == str(len(seen["body"]))
    assert seen["headers"]["User-Agent"] == f"mpnet/{__version__}"
    assert seen["headers"]["Accept-Encoding"] == "identity"
    assert seen["headers"]["X-Probe"] == "yes"
    assert seen["headers"]["Host"] == f"127.0.0.1:{app.port}"
    assert response.header("content-type") == response.header("CONTENT-TYPE") is not None


async def test_request_head_and_body_are_one_write(
    monkeypatch: pytest.MonkeyPatch, app: ScriptedApp
) -> None:
    writes: list[bytes] = []
    real_write = asyncio.StreamWriter.write

    def write(writer: asyncio.StreamWriter, data: bytes) -> None:
        writes.append(bytes(data))
        real_write(writer, data)

    monkeypatch.setattr(asyncio.StreamWriter, "write", write)
    response = await timed_request(
        "POST",
        app.url("/echo"),
        proxy=direct_decision(),
        tls=insecure_decision(),
        timeout=5,
        json_body={"op": "ping"},
    )
    assert response.json()["body"] == '{"op":"ping"}'
    # One write, so one segment (TCP_NODELAY) or one TLS record carries head and body.
    assert len(writes) == 1
    assert writes[0].startswith(b"POST /echo HTTP/1.1\r\n")
    assert writes[0].endswith(b'\r\n\r\n{"op":"ping"}')


@pytest.mark.parametrize(
    ("proxy_name", "scheme"),
    [*PATHS, pytest.param("socks5", None, id="socks5"), pytest.param("socks4", None, id="socks4")],
)
async def test_session_sockets_have_tcp_nodelay(
    manager: HTTPSessionManager,
    proxies: dict[str, str],
    tls_material: TLSMaterial,
    tls_app: ScriptedApp,
    proxy_name: str | None,
    scheme: str | None,
) -> None:
    session = await manager.get_session(
        "s", proxy=_proxy(proxies, proxy_name, scheme), tls=tls_material.verify_decision()
    )
    async with session.get(tls_app.url("/held")) as response:
        # The body is not complete yet, so the connection is still the response's.
        assert response.connection is not None and response.connection.transport is not None
        sock = response.connection.transport.get_extra_info("socket")
        nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        tls_app.release.set()
        assert await response.read() == b"held released"
    assert nodelay == 1


async def test_timed_request_lets_headers_replace_defaults(app: ScriptedApp) -> None:
    response = await timed_request(
        "GET",
        app.url("/echo"),
        proxy=direct_decision(),
        tls=insecure_decision(),
        timeout=5,
        headers={"user-agent": "custom/1"},
    )
    assert response.json()["headers"]["User-Agent"] == "custom/1"


async def test_timed_request_decodes_gzip(app: ScriptedApp) -> None:
    response = await timed_request(
        "GET", app.url("/gzip"), proxy=direct_decision(), tls=insecure_decision(), timeout=5
    )
    assert response.json() == {"zipped": True}


async def test_timed_request_cuts_long_bodies(app: ScriptedApp) -> None:
    response = await timed_request(
        "GET",
        app.url("/text"),
        proxy=direct_decision(),
        tls=insecure_decision(),
        timeout=5,
        max_body=16,
    )
    assert response.truncated
    assert response.body == b"<html>Access den"


async def test_timed_request_returns_error_statuses(app: ScriptedApp) -> None:
    response = await timed_request(
        "GET", app.url("/status/404"), proxy=direct_decision(), tls=insecure_decision(), timeout=5
    )
    assert (response.status, response.reason) == (404, "Not Found")


async def test_invalid_json_quotes_the_start_of_the_body(app: ScriptedApp) -> None:
    response = await timed_request(
        "GET", app.url("/text"), proxy=direct_decision(), tls=insecure_decision(), timeout=5
    )
    with pytest.raises(ProtocolError) as caught:
        response.json()
    assert (caught.value.kind, caught.value.phase) == ("invalid_json", Phase.HTTP)
    assert "<html>Access denied" in caught.value.message
    assert response.body.decode()[:101] not in caught.value.message  # only the first 100


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "invalid_http", id="not-http"),
        pytest.param(b"HTTP/1.1 2000 OK\r\n\r\n", "invalid_http", id="bad-status"),
        pytest.param(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "invalid_http", id="bad-header"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "invalid_http", id="bad-length"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "invalid_http",
            id="bad-chunk",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope",
            "invalid_encoding",
            id="bad-gzip",
        ),
        pytest.param(b"", "closed", id="closed-before-status"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-", "closed", id="closed-in-head"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b", "closed", id="short-body"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            "closed",
            id="short-chunk",
        ),
    ],
)
async def test_malformed_answers_are_protocol_errors(answer: bytes, kind: str) -> None:
    async with running_raw_server(answer) as server:
        with pytest.raises(ProtocolError) as caught:
            await timed_request(
                "GET",
                f"http://127.0.0.1:{server.port}/",
                proxy=direct_decision(),
                tls=insecure_decision(),
                timeout=5,
            )
    assert (caught.value.kind, caught.value.phase) == (kind, Phase.HTTP)


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        pytest.param(b"HTTP/1.1 200 OK\r\n\r\nuntil close", b"until close", id="until-close"),
        pytest.param(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"ok",
            id="interim-100",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-Long: a\r\n  b\r\nContent-Length: 1\r\n\r\nz",
            b"z",
            id="obs-fold",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n",
            b"abc",
            id="chunk-ext-trailer",
        ),
        pytest.param(b"HTTP/1.0 204 No Content\r\n\r\n", b"", id="no-content"),
    ],
)
async def test_well_formed_edge_cases(answer: bytes, body: bytes) -> None:
    async with running_raw_server(answer) as server:
        response = await timed_request(
            "GET",
            f"http://127.0.0.1:{server.port}/",
            proxy=direct_decision(),
            tls=insecure_decision(),
            timeout=5,
        )
    assert response.body == body


_HEADERS_201 = b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADER_COUNT + 1))
_HEADERS_200 = b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADER_COUNT))


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\n" + _HEADERS_201 + b"\r\n",
            f"more than {MAX_HEADER_COUNT} headers",
            id="too-many-headers",
        ),
        pytest.param(
            # Never ends: h11's bound on an incomplete head.
            b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * (2 * MAX_HEAD_BYTES),
            f"response head longer than {MAX_HEAD_BYTES} bytes",
            id="endless-head",
        ),
        pytest.param(
            # Complete, but too long: checked once h11 hands the head over.
            b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n",
            f"response head longer than {MAX_HEAD_BYTES} bytes",
            id="long-head",
        ),
        pytest.param(b"HTTP/2.0 200 OK\r\n\r\n", "HTTP/2.0 is not HTTP/1.x", id="http2"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{}\r\n0\r\n\r\n",
            "malformed chunk footer",
            id="chunk-longer-than-announced",
        ),
    ],
)
async def test_protections_name_what_was_wrong(answer: bytes, words: str) -> None:
    async with running_raw_server(answer) as server:
        with pytest.raises(ProtocolError) as caught:
            await timed_request(
                "GET",
                f"http://127.0.0.1:{server.port}/",
                proxy=direct_decision(),
                tls=insecure_decision(),
                timeout=5,
            )
    assert (caught.value.kind, caught.value.phase) == ("invalid_http", Phase.HTTP)
    assert words in caught.value.message
    assert "bytearray" not in caught.value.message
    assert len(caught.value.message) < 300


async def test_as_many_headers_as_allowed_are_read() -> None:
    answer = b"HTTP/1.1 200 OK\r\n" + _HEADERS_200 + b"\r\nok"
    async with running_raw_server(answer) as server:
        response = await timed_request(
            "GET",
            f"http://127.0.0.1:{server.port}/",
            proxy=direct_decision(),
            tls=insecure_decision(),
            timeout=5,
        )
    assert (response.body, response.header("x-h199")) == (b"ok", "v")


async def test_a_greeting_that_is_not_http_is_refused_on_its_first_bytes() -> None:
    """A server that greets with something else (SSH, SMTP) and then waits: refused as soon as
    its first bytes are in, not when the budget runs out waiting for a blank line."""

    async def greet_and_wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        with contextlib.suppress(OSError):
            await writer.drain()
            await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(greet_and_wait, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ProtocolError) as caught:
            await timed_request(
                "GET",
                f"http://127.0.0.1:{port}/",
                proxy=direct_decision(),
                tls=insecure_decision(),
                timeout=60,
            )
    finally:
        server.close()
        await server.wait_closed()
    assert caught.value.kind == "invalid_http"
    assert "SSH-2.0" in caught.value.message


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_a_compressed_body_inflates_no_further_than_max_body(coding: str) -> None:
    """A decompression bomb: 64 MiB of zeros in about 64 KiB; the client stops at max_body and
    says the body was cut."""
    zeros = b"\0" * (64 << 20)
    packed = gzip.compress(zeros, compresslevel=9) if coding == "gzip" else zlib.compress(zeros, 9)
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: {coding}\r\nContent-Length: {len(packed)}\r\n\r\n"
    async with running_raw_server(head.encode() + packed) as server:
        response = await timed_request(
            "GET",
            f"http://127.0.0.1:{server.port}/",
            proxy=direct_decision(),
            tls=insecure_decision(),
            timeout=10,
            max_body=1 << 20,
        )
    assert len(packed) < 1 << 20  # all of it was read: only inflating cut it
    assert response.body == b"\0" * (1 << 20)
    assert response.truncated


async def test_a_compressed_body_that_fits_is_not_marked_cut() -> None:
    body = b"x" * 1000
    packed = gzip.compress(body)
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(packed)}\r\n\r\n"
    async with running_raw_server(head.encode() + packed) as server:
        response = await timed_request(
            "GET",
            f"http://127.0.0.1:{server.port}/",
            proxy=direct_decision(),
            tls=insecure_decision(),
            timeout=10,
            max_body=len(body),
        )
    assert (response.body, response.truncated) == (body, False)


async def test_timed_request_times_out_in_the_http_phase(app: ScriptedApp) -> None:
    with pytest.raises(ProbeTimeout) as caught:
        await timed_request(
            "GET", app.url("/hang"), proxy=direct_decision(), tls=insecure_decision(), timeout=0.3
        )
    assert caught.value.phase == Phase.HTTP
    # the phases that completed stay on the error, for the failed attempt's waterfall
    assert {"dns", "tcp"} <= set(caught.value.phases)


@pytest.mark.parametrize("proxy_name", [None, "http"], ids=["direct", "http-connect"])
async def test_http_timeout_keeps_the_time_spent_waiting(
    proxies: dict[str, str],
    tls_material: TLSMaterial,
    silent_tls_server: int,
    proxy_name: str | None,
) -> None:
    budget = 1.0
    with pytest.raises(ProbeTimeout) as caught:
        await timed_request(
            "GET",
            f"https://127.0.0.1:{silent_tls_server}/",
            proxy=_proxy(proxies, proxy_name),
            tls=tls_material.verify_decision(),
            timeout=budget,
        )
    assert caught.value.phase is Phase.HTTP
    phases = caught.value.phases
    assert {"dns", "tcp", "tls", "http"} <= set(phases)
    # Everything but the quick loopback dial went to waiting for the answer (a lower bound
    # only: no assertion on how long anything may take).
    assert phases["http"] >= 0.8 * budget


async def test_timed_request_refused_port() -> None:
    with pytest.raises(ConnectError) as caught:
        await timed_request(
            "GET",
            f"http://127.0.0.1:{closed_port()}/",
            proxy=direct_decision(),
            tls=insecure_decision(),
            timeout=5,
        )
    assert caught.value.kind == "refused"


async def test_timed_request_proxy_without_credentials(
    proxies: dict[str, str], app: ScriptedApp
) -> None:
    anonymous = proxies["http_auth"].replace(f"mpnet:{PROXY_PASSWORD}@", "")
    with pytest.raises(ProxyAuthError):
        await timed_request(
            "GET",
            app.url("/json"),
            proxy=proxy_decision(anonymous),
            tls=insecure_decision(),
            timeout=5,
        )


@pytest.mark.parametrize(
    ("url", "request_line", "host"),
    [
        ("http://example.test/", "GET / HTTP/1.1", "example.test"),
        ("http://example.test", "GET / HTTP/1.1", "example.test"),
        ("https://example.test:443/a?b=1", "GET /a?b=1 HTTP/1.1", "example.test"),
        ("https://example.test:8443/a", "GET /a HTTP/1.1", "example.test:8443"),
        ("http://[::1]:8080/x", "GET /x HTTP/1.1", "[::1]:8080"),
    ],
)
def test_request_line_and_host(url: str, request_line: str, host: str) -> None:
    head = _build_request("get", url, headers=None, json_body=None).raw.decode("latin-1")
    lines = head.split("\r\n")
    assert lines[0] == request_line
    assert f"Host: {host}" in lines
    assert "Connection: close" in lines
    assert "Content-Length: 0" not in lines


@pytest.mark.parametrize(
    "headers", [{"X-Evil": "a\r\nInjected: 1"}, {"Bad Name": "x"}, {"X-Null": "a\0b"}]
)
def test_header_injection_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(UsageError):
        _build_request("GET", "http://example.test/", headers=headers, json_body=None)


async def test_timed_request_refuses_websocket_urls() -> None:
    with pytest.raises(UsageError):
        await timed_request(
            "GET",
            "wss://example.test/",
            proxy=direct_decision(),
            tls=insecure_decision(),
            timeout=1,
        )


# -- HTTPSessionManager -------------------------------------------------------------------------


async def test_sessions_are_created_once_per_name(manager: HTTPSessionManager) -> None:
    tls = insecure_decision()
    first = await manager.get_session("rest", proxy=direct_decision(), tls=tls)
    again = await manager.get_session("rest", proxy=direct_decision(), tls=tls)
    other = await manager.get_session("other", proxy=direct_decision(), tls=tls)
    assert first is again
    assert other is not first
    assert set(manager.sessions) == {"rest", "other"}
    assert manager.sessions["rest"].proxy_layer == "default"
    await manager.close("rest")
    assert first.closed
    assert set(manager.sessions) == {"other"}
    await manager.close_all()
    assert other.closed
    assert manager.sessions == {}


async def test_a_name_cannot_change_its_proxy(
    manager: HTTPSessionManager, proxies: dict[str, str]
) -> None:
    await manager.get_session("rest", proxy=direct_decision(), tls=insecure_decision())
    with pytest.raises(UsageError) as caught:
        await manager.get_session(
            "rest", proxy=_proxy(proxies, "http_auth"), tls=insecure_decision()
        )
    assert PROXY_PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ("proxy_name", "scheme"),
    [*PATHS, pytest.param("socks5", None, id="socks5"), pytest.param("socks4", None, id="socks4")],
)
@pytest.mark.parametrize("secure", [False, True], ids=["http", "https"])
async def test_session_follows_the_proxy_decision(
    manager: HTTPSessionManager,
    proxies: dict[str, str],
    tls_material: TLSMaterial,
    proxy_name: str | None,
    scheme: str | None,
    secure: bool,
) -> None:
    async with running_app(tls_material.server_context() if secure else None) as server:
        session = await manager.get_session(
            "s", proxy=_proxy(proxies, proxy_name, scheme), tls=tls_material.verify_decision()
        )
        response = await request_with_retry("GET", server.url("/json"), session=session)
    assert response.status == 200
    assert response.json() == {"ok": True}
    assert response.attempts == 1
    phases = response.elapsed_ms[0]
    assert {"connect", "http", "total"} <= set(phases)
    assert server.requests == {"/json": 1}


async def test_pooled_connection_reports_reuse(
    manager: HTTPSessionManager, app: ScriptedApp
) -> None:
    session = await manager.get_session("s", proxy=direct_decision(), tls=insecure_decision())
    first = await request_with_retry("GET", app.url("/json"), session=session)
    second = await request_with_retry("GET", app.url("/json"), session=session)
    assert not first.history[0].reused_connection
    assert second.history[0].reused_connection
    assert second.elapsed_ms[0]["connect"] == 0.0


# -- request_with_retry -------------------------------------------------------------------------


@pytest.fixture
async def direct_session(manager: HTTPSessionManager) -> HTTPSessionManager:
    await manager.get_session("default", proxy=direct_decision(), tls=insecure_decision())
    return manager


async def test_retries_503_then_succeeds(
    direct_session: HTTPSessionManager, app: ScriptedApp, sleeps: SleepRecorder
) -> None:
    app.script += [(503, {}), (502, {})]
    response = await request_with_retry(
        "GET",
        app.url("/script"),
        manager=direct_session,
        max_attempts=4,
        base_delay=0.5,
        sleep=sleeps,
        random=lambda: 0.5,
    )
    assert response.status == 200
    assert [r.status for r in response.history] == [503, 502, 200]
    # full jitter with the draw fixed at 0.5: half of 0.5 * 2**n
    assert sleeps.delays == [0.25, 0.5]
    assert [r.delay for r in response.history] == [0.25, 0.5, None]
    assert app.requests["/script"] == 3


@pytest.mark.parametrize(
    ("retry_after", "max_delay", "expected"),
    [("7", 10.0, 7.0), ("120", 10.0, 10.0), ("0", 10.0, 0.0)],
)
async def test_429_honours_retry_after(
    direct_session: HTTPSessionManager,
    app: ScriptedApp,
    sleeps: SleepRecorder,
    retry_after: str,
    max_delay: float,
    expected: float,
) -> None:
    app.script.append((429, {"Retry-After": retry_after}))
    response = await request_with_retry(
        "GET",
        app.url("/script"),
        manager=direct_session,
        max_delay=max_delay,
        sleep=sleeps,
        random=lambda: 0.99,
    )
    assert response.status == 200
    assert sleeps.delays == [expected]
    assert response.history[0].retry_after == expected


async def test_unparseable_retry_after_falls_back_to_backoff(
    direct_session: HTTPSessionManager, app: ScriptedApp, sleeps: SleepRecorder
) -> None:
    app.script.append((503, {"Retry-After": "whenever"}))
    await request_with_retry(
        "GET", app.url("/script"), manager=direct_session, sleep=sleeps, random=lambda: 0.5
    )
    assert sleeps.delays == [0.25]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 418, 451])
async def test_no_retry_on_4xx(
    direct_session: HTTPSessionManager, app: ScriptedApp, sleeps: SleepRecorder, status: int
) -> None:
    response = await request_with_retry(
        "GET", app.url(f"/status/{status}"), manager=direct_session, sleep=sleeps
    )
    assert response.status == status
    assert response.attempts == 1
    assert sleeps.delays == []


async def test_gives_back_the_last_5xx(
    direct_session: HTTPSessionManager, app: ScriptedApp, sleeps: SleepRecorder
) -> None:
    response = await request_with_retry(
        "GET", app.url("/status/503"), manager=direct_session, max_attempts=3, sleep=sleeps
    )
    assert response.status == 503
    assert response.attempts == 3
    assert len(sleeps.delays) == 2


async def test_refused_connection_is_retried_then_translated(
    direct_session: HTTPSessionManager, sleeps: SleepRecorder
) -> None:
    with pytest.raises(ConnectError) as caught:
        await request_with_retry(
            "GET",
            f"http://127.0.0.1:{closed_port()}/",
            manager=direct_session,
            max_attempts=3,
            sleep=sleeps,
        )
    assert caught.value.kind == "refused"
    assert caught.value.phase == Phase.TCP
    assert caught.value.__cause__ is not None
    assert len(sleeps.delays) == 2


async def test_timeout_is_translated_with_its_phase(
    direct_session: HTTPSessionManager, app: ScriptedApp, sleeps: SleepRecorder
) -> None:
    with pytest.raises(ProbeTimeout) as caught:
        await request_with_retry(
            "GET",
            app.url("/hang"),
            manager=direct_session,
            max_attempts=2,
            sleep=sleeps,
            timeout=0.2,
        )
    assert caught.value.phase == Phase.HTTP
    assert len(sleeps.delays) == 1


@pytest.mark.parametrize("secure", [False, True], ids=["http", "https"])
async def test_proxy_407_is_translated_and_not_retried(
    manager: HTTPSessionManager,
    proxies: dict[str, str],
    tls_material: TLSMaterial,
    sleeps: SleepRecorder,
    secure: bool,
) -> None:
    wrong = proxies["http_auth"].replace(PROXY_PASSWORD, "wrong-password")
    session = await manager.get_session(
        "p", proxy=proxy_decision(wrong), tls=tls_material.verify_decision()
    )
    async with running_app(tls_material.server_context() if secure else None) as server:
        with pytest.raises(ProxyAuthError) as caught:
            await request_with_retry("GET", server.url("/json"), session=session, sleep=sleeps)
    assert sleeps.delays == []
    assert "wrong-password" not in str(caught.value)
    # Worded as dial's CONNECT refusal is, with the proxy's answer kept as evidence.
    assert "rejected the credentials of" in str(caught.value)
    assert caught.value.status == 407


async def test_socks_wrong_password_is_a_proxy_auth_error(
    manager: HTTPSessionManager, proxies: dict[str, str], app: ScriptedApp, sleeps: SleepRecorder
) -> None:
    wrong = proxies["socks5_auth"].replace(PROXY_PASSWORD, "wrong-password")
    session = await manager.get_session("p", proxy=proxy_decision(wrong), tls=insecure_decision())
    with pytest.raises(ProxyAuthError) as caught:
        await request_with_retry("GET", app.url("/json"), session=session, sleep=sleeps)
    assert "wrong-password" not in str(caught.value)
    assert sleeps.delays == []


async def test_untrusted_certificate_is_not_retried(
    manager: HTTPSessionManager, tls_material: TLSMaterial, sleeps: SleepRecorder
) -> None:
    session = await manager.get_session(
        "t", proxy=direct_decision(), tls=tls_material.verify_decision()
    )
    async with running_app(tls_material.untrusted_context()) as server:
        with pytest.raises(TLSError) as caught:
            await request_with_retry("GET", server.url("/json"), session=session, sleep=sleeps)
    assert caught.value.kind == "untrusted"
    assert sleeps.delays == []


async def test_system_trust_store_refuses_the_test_ca(tls_app: ScriptedApp) -> None:
    system = TLSDecision(verify=True, ca=None, ca_kind="system", layer="default", reason="default")
    async with HTTPSessionManager() as sessions:
        session = await sessions.get_session("s", proxy=direct_decision(), tls=system)
        with pytest.raises(TLSError):
            await request_with_retry("GET", tls_app.url("/json"), session=session, max_attempts=1)


@pytest.mark.parametrize("argument", ["proxy", "ssl", "proxy_auth"])
async def test_proxy_and_tls_arguments_are_refused(
    direct_session: HTTPSessionManager, argument: str
) -> None:
    with pytest.raises(UsageError):
        await request_with_retry(
            "GET", "http://127.0.0.1:1/", manager=direct_session, **{argument: None}
        )


@pytest.mark.parametrize("max_attempts", [0, -1])
async def test_max_attempts_must_be_positive(
    direct_session: HTTPSessionManager, max_attempts: int
) -> None:
    with pytest.raises(UsageError):
        await request_with_retry(
            "GET", "http://127.0.0.1:1/", manager=direct_session, max_attempts=max_attempts
        )


async def test_a_session_is_required(manager: HTTPSessionManager) -> None:
    with pytest.raises(UsageError):
        await request_with_retry("GET", "http://127.0.0.1:1/", manager=manager)
    with pytest.raises(UsageError):
        await request_with_retry("GET", "http://127.0.0.1:1/")


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(200, False), (404, False), (407, False), (429, True), (500, True), (503, True), (599, True)],
)
def test_retryable_statuses(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


# -- https:// proxy -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def https_proxy(
    tls_material: TLSMaterial, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """pproxy speaking HTTP CONNECT over TLS, with a certificate from the test CA."""
    directory = tmp_path_factory.mktemp("https-proxy")
    cert, key = directory / "cert.pem", directory / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in tls_material.server.cert_chain_pems))
    key.write_bytes(tls_material.server.private_key_pem.bytes())
    process = start_pproxy({"https": "http+ssl"}, ssl_files=(str(cert), str(key)))
    try:
        yield process.urls["https"]
    finally:
        process.stop()


@pytest.mark.parametrize("secure", [False, True], ids=["http", "https"])
async def test_https_proxy(
    https_proxy: str, tls_material: TLSMaterial, manager: HTTPSessionManager, secure: bool
) -> None:
    assert https_proxy.startswith("https://")
    async with running_app(tls_material.server_context() if secure else None) as server:
        timed = await timed_request(
            "GET",
            server.url("/json"),
            proxy=proxy_decision(https_proxy),
            tls=tls_material.verify_decision(),
            timeout=10,
        )
        session = await manager.get_session(
            "https-proxy", proxy=proxy_decision(https_proxy), tls=tls_material.verify_decision()
        )
        pooled = await request_with_retry("GET", server.url("/json"), session=session)
    assert timed.json() == pooled.json() == {"ok": True}
    assert "proxy" in timed.timings.to_dict()
    assert server.requests == {"/json": 2}


# -- one TLS verify-code table ------------------------------------------------------------------


def _verify_error(code: int) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"certificate verify failed: code {code}")
    error.verify_code = code
    error.verify_message = f"code {code}"
    return error


@pytest.mark.parametrize(("code", "kind"), sorted(VERIFY_KINDS.items()))
def test_aiohttp_path_uses_the_one_verify_table(code: int, kind: str) -> None:
    from aiohttp import ClientConnectorCertificateError
    from aiohttp.client_reqrep import ConnectionKey

    key = ConnectionKey("example.test", 443, True, True, None, None, None)
    translated = translate_client_error(
        ClientConnectorCertificateError(key, _verify_error(code)),
        url="https://example.test/",
        proxy=None,
    )
    assert isinstance(translated, TLSError)
    assert (translated.kind, translated.phase) == (kind, Phase.TLS)


async def test_aiohttp_path_names_the_refused_certificate(
    manager: HTTPSessionManager, tls_material: TLSMaterial
) -> None:
    # Signed by a CA nobody trusts: OpenSSL code 20 (unable to get local issuer certificate),
    # one of the codes the old copy of the table in http.py did not have.
    session = await manager.get_session(
        "t", proxy=direct_decision(), tls=tls_material.verify_decision()
    )
    async with running_app(tls_material.untrusted_context()) as server:
        with pytest.raises(TLSError) as caught:
            await request_with_retry("GET", server.url("/json"), session=session, max_attempts=1)
    cause = caught.value.__cause__
    verify_error = getattr(cause, "certificate_error", cause)
    assert getattr(verify_error, "verify_code", None) == 20
    assert caught.value.kind == VERIFY_KINDS[20] == "untrusted"
    assert caught.value.issuer and "trustme" in caught.value.issuer
    assert caught.value.issuer in caught.value.message
