"""The timed HTTP/1.1 exchange: one request on a connection :func:`~mpnet.net.dial.dial` opened.

:func:`timed_request` dials the target itself (every phase timed) and speaks HTTP/1.1 on the raw
stream, so its ``http`` phase is exactly "request written -> first response byte" (curl's
``time_starttransfer - time_pretransfer``). This is what ``mpnet probe`` uses for REST.

HTTP/1.1 itself (request framing, status line, header fields, chunked bodies, trailers) is
h11's: a sans-I/O parser that is handed bytes and returns events, so this module alone decides
when bytes are read and the clock stops at the first byte read, before any parsing.

What the server sends back is not trusted: the response head (:data:`MAX_HEAD_BYTES`), the
number of header fields (:data:`MAX_HEADER_COUNT`), the body (``max_body``) and what a
compressed body inflates to are all bounded, and every malformed answer becomes a
:class:`~mpnet.errors.ProtocolError` in the ``http`` phase: kind ``invalid_http`` for what is
not HTTP/1.x, ``closed`` for an answer cut short.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import ssl
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11

from mpnet import __version__
from mpnet.core.proxy import ProxyDecision
from mpnet.core.proxy_url import ProxyURL, redact_url_text
from mpnet.core.tls import TLSDecision
from mpnet.errors import (
    ConnectError,
    Phase,
    ProbeError,
    ProbeTimeout,
    ProtocolError,
    ProxyAuthError,
    UsageError,
)
from mpnet.net.dial import PeerInfo, PhaseTimings, dial, parse_target, release_frames
from mpnet.net.tls import HTTP_ALPN
from mpnet.net.tunnel import proxy_auth_error

USER_AGENT = f"mpnet/{__version__}"
#: Response heads larger than this are not HTTP a probe should believe.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADER_COUNT = 200

#: What one read asks the stream for.
READ_SIZE = 64 * 1024

_HTTP_PREFIX = b"HTTP/"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BYTEARRAY_REPR = re.compile(r"bytearray\((b'(?:[^'\\]|\\.)*'|b\"(?:[^\"\\]|\\.)*\")\)")


def header_lookup(headers: Mapping[str, str], name: str, default: str | None) -> str | None:
    """``headers[name]`` in any case, for headers stored with lower-case names."""
    return headers.get(name.lower(), default)


def parse_json(body: bytes, *, url: str) -> Any:
    """``body`` parsed as JSON.

    Raises:
        ProtocolError: kind ``invalid_json``, quoting the first 100 characters.
    """
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # RecursionError: a body of nested brackets ([[[[...) deeper than the stack.
        start = body[:100].decode("utf-8", "replace")
        raise ProtocolError(
            f"{redact_url_text(url)} did not answer JSON: {start!r}",
            phase=Phase.HTTP,
            kind="invalid_json",
        ) from exc


@dataclass(frozen=True, slots=True)
class TimedResponse:
    """One HTTP answer with the timings of the connection that carried it.

    ``headers`` has lower-case names (repeated headers joined with ``", "``); use
    :meth:`header` for a case-insensitive lookup. ``received_at`` is the Unix time at which the
    first response byte arrived (compare with ``Date`` for clock skew), ``sent_at`` the Unix time
    just before the request was written: the server stamped its answer between the two.
    ``truncated`` is True when the body was longer than ``max_body`` and was cut.
    """

    url: str
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    timings: PhaseTimings
    peer: PeerInfo
    received_at: float
    truncated: bool = False
    sent_at: float | None = None

    def header(self, name: str, default: str | None = None) -> str | None:
        """The value of header ``name`` (any case), or ``default``."""
        return header_lookup(self.headers, name, default)

    def json(self) -> Any:
        """The body parsed as JSON.

        Raises:
            ProtocolError: kind ``invalid_json``, quoting the first 100 characters.
        """
        return parse_json(self.body, url=self.url)


#: Sees every answer :func:`timed_request` receives in this context, whatever its status: the
#: rate-limit gate (:mod:`mpnet.probe.pacing`) reads Retry-After and weight headers with it,
#: without every caller passing the answer along. A context variable, so concurrent attempts
#: (each its own task) keep their own observer.
response_observer: ContextVar[Callable[[TimedResponse], None] | None] = ContextVar(
    "mpnet_response_observer", default=None
)


async def timed_request(
    method: str,
    url: str,
    *,
    proxy: ProxyDecision,
    tls: TLSDecision,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    max_body: int = 1 << 20,
    timings: PhaseTimings | None = None,
) -> TimedResponse:
    """Send one HTTP/1.1 request on a freshly dialed, phase-timed connection.

    ``dns``, ``tcp``, ``proxy`` and ``tls`` come from :func:`~mpnet.net.dial.dial`; ``http`` is
    the time from the last request byte handed to the kernel to the first response byte. The
    connection is closed afterwards (``Connection: close``); redirects are not followed. A plain
    http target goes through an HTTP(S) proxy in absolute form (``GET http://host:port/path``,
    with ``Proxy-Authorization`` when the proxy URL has credentials), as curl, urllib and
    aiohttp send it, not by CONNECT (which proxies such as Squid allow to port 443 only): there
    is then no ``proxy`` phase for an ``http://`` proxy, and the proxy's own answer (a 407, a
    403, a 502 when it cannot reach the target) is the HTTP answer.

    Args:
        method: e.g. ``GET``.
        url: an http or https URL.
        proxy: the proxy decision for this URL.
        tls: the TLS decision for this URL.
        timeout: one budget in seconds for dialing, sending and reading the whole answer.
        headers: extra request headers; they replace the defaults of the same name.
        json_body: sent as ``application/json`` when not None.
        max_body: bodies longer than this are cut (``truncated`` is set).
        timings: filled in as phases complete (a new one when omitted); pass your own to keep
            the phases measured before the request was cancelled from outside.

    Raises:
        UsageError: not an http/https URL, or a header value with a line break.
        ConfigError: the CA bundle cannot be loaded.
        DNSError, ConnectError, ProxyError, TLSError: from dialing.
        ProtocolError: kind ``invalid_http`` (malformed answer), ``closed`` (the peer hung up
            before the answer was complete), ``invalid_encoding`` (bad gzip/deflate).
        ProxyAuthError: a plain http request sent to a proxy in absolute form was answered
            407 (phase ``http``; status, headers and body kept).
        ProbeTimeout: the budget ran out; ``phase`` says where.

    Every ProbeError raised carries ``.phases``: the phases that completed before it.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise UsageError(f"invalid URL {url!r}: timed_request needs an http or https URL")
    forward = forwarded_through(proxy, url)
    request = _build_request(
        method, url, headers=headers, json_body=json_body, proxy=proxy.proxy if forward else None
    )
    timings = timings if timings is not None else PhaseTimings()
    try:
        response = await _timed_exchange(url, request, proxy, tls, timeout, timings, max_body)
    except ProbeError as exc:
        # The phases that did complete, for the failed attempt's waterfall.
        exc.phases = timings.to_dict()
        # The error is kept; the closed connection in its traceback's frames need not be.
        release_frames(exc)
        raise
    if forward and response.status == 407 and proxy.proxy is not None:
        # Only the proxy sends 407; as for CONNECT, it is the proxy asking, not the target.
        auth_error = _forwarded_auth_error(response, proxy.proxy)
        auth_error.phases = timings.to_dict()
        raise auth_error
    observer = response_observer.get()
    if observer is not None:
        observer(response)
    return response


async def _timed_exchange(
    url: str,
    request: _Request,
    proxy: ProxyDecision,
    tls: TLSDecision,
    timeout: float,
    timings: PhaseTimings,
    max_body: int,
) -> TimedResponse:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    conn = await dial(
        url,
        proxy=proxy,
        tls=tls,
        timeout=timeout,
        alpn=HTTP_ALPN,
        timings=timings,
        tunnel=not request.forwarded,
    )
    try:
        remaining = deadline - loop.time()
        try:
            if remaining <= 0:
                timings.http = 0.0
                raise TimeoutError
            async with asyncio.timeout(remaining):
                return await _exchange(
                    conn.reader,
                    conn.writer,
                    request,
                    url=url,
                    timings=timings,
                    peer=conn.peer,
                    max_body=max_body,
                )
        except TimeoutError as exc:
            raise ProbeTimeout(
                f"timed out after {timeout:g} s waiting for the HTTP answer of "
                f"{redact_url_text(url)}",
                phase=Phase.HTTP,
            ) from exc
    finally:
        await conn.aclose()


def _forwarded_auth_error(response: TimedResponse, proxy: ProxyURL) -> ProxyAuthError:
    """A proxy's 407 to an absolute-form request: the same error as its 407 to CONNECT, in
    the ``http`` phase where it was answered."""
    return proxy_auth_error(
        proxy,
        redact_url_text(response.url),
        f"{response.status} {response.reason}".strip(),
        status=response.status,
        headers=response.headers,
        body=response.body,
        phase=Phase.HTTP,
    )


@dataclass(frozen=True, slots=True)
class _Request:
    """A request ready to go: its bytes, and the h11 client that wrote them (it knows the
    method, so it frames the answer: no body for HEAD, 204 or 304)."""

    raw: bytes
    client: h11.Connection
    forwarded: bool = False


def forwarded_through(proxy: ProxyDecision, url: str) -> bool:
    """True when a request to ``url`` goes to ``proxy`` in absolute form rather than through a
    CONNECT tunnel: a plain http:// URL and an HTTP or HTTPS proxy."""
    chosen = proxy.proxy
    return chosen is not None and not chosen.is_socks and urlsplit(url).scheme.lower() == "http"


def _build_request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None,
    json_body: Any,
    proxy: ProxyURL | None = None,
) -> _Request:
    parts = urlsplit(url)
    target = parse_target(url)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    default_port = 443 if target.secure else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    authority = host if target.port == default_port else f"{host}:{target.port}"
    body = b""
    fields: dict[str, tuple[str, str]] = {}

    def put(name: str, value: str) -> None:
        fields[name.lower()] = (name, value)

    if proxy is not None:
        # Absolute form (RFC 9112 3.2.2): the proxy reads the target from the request line.
        path = f"http://{authority}{path}"
    put("Host", authority)
    put("User-Agent", USER_AGENT)
    put("Accept", "*/*")
    # identity: the body's size and timing should be the server's, not a compressor's.
    put("Accept-Encoding", "identity")
    put("Connection", "close")
    if json_body is not None:
        body = json.dumps(json_body, separators=(",", ":")).encode()
        put("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        # Checked here rather than left to h11, so the message names the header and never
        # quotes its value (which may be a credential).
        if not _TOKEN.fullmatch(name) or any(c in value for c in "\r\n\0"):
            raise UsageError(f"invalid request header {name!r}: names are tokens, values one line")
        put(name, value)
    if body or method.upper() in ("POST", "PUT", "PATCH"):
        put("Content-Length", str(len(body)))
    if proxy is not None and proxy.username is not None:
        secret = f"{proxy.username}:{proxy.password or ''}".encode()
        put("Proxy-Authorization", f"Basic {base64.b64encode(secret).decode('ascii')}")
    if not _TOKEN.fullmatch(method):
        raise UsageError(f"invalid HTTP method {method!r}")
    client = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
    try:
        raw = (
            client.send(
                h11.Request(
                    method=method.upper().encode("ascii"),
                    target=path.encode("latin-1"),
                    headers=[
                        (name.encode("latin-1"), value.encode("latin-1"))
                        for name, value in fields.values()
                    ],
                )
            )
            or b""
        )
        if body:
            raw += client.send(h11.Data(data=body)) or b""
        raw += client.send(h11.EndOfMessage()) or b""
    except UnicodeEncodeError:
        raise UsageError("request headers and path must be latin-1 text") from None
    except h11.LocalProtocolError as exc:
        raise UsageError(f"invalid HTTP request to {redact_url_text(url)}: {exc}") from None
    return _Request(raw=raw, client=client, forwarded=proxy is not None)


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: _Request,
    *,
    url: str,
    timings: PhaseTimings,
    peer: PeerInfo,
    max_body: int,
) -> TimedResponse:
    shown = redact_url_text(url)
    # Until the first byte, a failure (the budget running out, a reset) still shows how long
    # the http phase ran: from the request written, or from here if writing never completed.
    waiting_since = time.perf_counter_ns()
    try:
        # Before the write: the server's stamp cannot predate it (NTP's t0).
        sent_at = time.time()
        # Head and body in one write: one TLS record, one segment where it fits (TCP_NODELAY).
        writer.write(request.raw)
        await writer.drain()
        waiting_since = written = time.perf_counter_ns()
        # read() returns as soon as any byte is in: the clock stops at the first byte, before
        # anything is parsed.
        first = await reader.read(READ_SIZE)
        if not first:
            raise ProtocolError(
                f"{shown}: the server closed the connection without answering",
                phase=Phase.HTTP,
                kind="closed",
            )
        timings.http = (time.perf_counter_ns() - written) / 1e6
        received_at = time.time()
        answer = _AnswerReader(request.client, reader, shown, first)
        head = await answer.read_head()
        body, truncated = await answer.read_body(max_body)
    except (ConnectionError, ssl.SSLError, OSError) as exc:
        _http_phase_so_far(timings, waiting_since)
        raise ConnectError(
            f"{shown}: connection lost during the HTTP exchange ({type(exc).__name__}: "
            f"{redact_url_text(str(exc)) or 'no detail'})",
            phase=Phase.HTTP,
            kind="reset",
        ) from exc
    except BaseException:
        # CancelledError when the budget runs out (asyncio.timeout), ProtocolError...
        _http_phase_so_far(timings, waiting_since)
        raise
    headers = _header_map(head.headers)
    body, inflated_too_far = _decode_content(body, headers.get("content-encoding"), max_body, shown)
    return TimedResponse(
        url=url,
        status=head.status_code,
        reason=head.reason.decode("latin-1"),
        headers=headers,
        body=body,
        timings=timings,
        peer=peer,
        received_at=received_at,
        truncated=truncated or inflated_too_far,
        sent_at=sent_at,
    )


def _http_phase_so_far(timings: PhaseTimings, since: int) -> None:
    if timings.http is None:
        timings.http = (time.perf_counter_ns() - since) / 1e6


def _header_map(fields: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-case names; a repeated field's values joined with ", " (RFC 9110 5.3)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in fields:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _invalid(shown: str, what: str) -> ProtocolError:
    return ProtocolError(
        f"{shown}: invalid HTTP answer: {what}", phase=Phase.HTTP, kind="invalid_http"
    )


def _closed(shown: str, what: str) -> ProtocolError:
    return ProtocolError(
        f"{shown}: the server closed the connection {what}", phase=Phase.HTTP, kind="closed"
    )


class _AnswerReader:
    """Feeds what the server sends to h11 and turns what h11 refuses into ProtocolErrors.

    h11 parses (status line, header fields, obs-fold, chunked framing, trailers) and bounds an
    incomplete head at :data:`MAX_HEAD_BYTES`; this class adds what h11 leaves to its user:
    the answer must start like HTTP/1.x (a server that sends something else is told at once,
    not when a blank line finally comes), a complete head that arrived in one read is bounded
    too, header fields are counted, and the peer hanging up is told apart from bad syntax.
    """

    def __init__(
        self, client: h11.Connection, reader: asyncio.StreamReader, shown: str, first: bytes
    ) -> None:
        self._client = client
        self._reader = reader
        self._shown = shown
        self._start = b""  # the answer's first bytes, until they show it is HTTP
        self._fed = 0  # bytes handed to h11
        self._head_from = 0  # where in them the current head began
        self._eof = False
        self._head: h11.Response | None = None
        self._body_bytes = 0
        self._feed(first)

    def _feed(self, data: bytes) -> None:
        if len(self._start) < len(_HTTP_PREFIX):
            self._start = (self._start + data)[: len(_HTTP_PREFIX)]
            if not _HTTP_PREFIX.startswith(self._start):
                raise _invalid(self._shown, f"it starts with {data[:40]!r}, not HTTP/")
        self._fed += len(data)
        self._eof = not data
        self._client.receive_data(data)

    async def _next_event(self) -> h11.Event:
        while True:
            try:
                event = self._client.next_event()
            except h11.RemoteProtocolError as exc:
                raise self._refusal(exc) from exc
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            if self._eof:  # h11 raises at the end of input; never wait for more after it
                raise self._cut_short()
            self._feed(await self._reader.read(READ_SIZE))

    async def read_head(self) -> h11.Response:
        """The final answer's head; interim ones (100 Continue, 103 Early Hints) are skipped."""
        while True:
            event = await self._next_event()
            if not isinstance(event, h11.InformationalResponse | h11.Response):
                raise _invalid(self._shown, f"no response head ({type(event).__name__})")
            self._check_head(event)
            if isinstance(event, h11.Response):
                self._head = event
                return event

    def _check_head(self, head: h11.InformationalResponse | h11.Response) -> None:
        unread = len(self._client.trailing_data[0])
        size, self._head_from = self._fed - unread - self._head_from, self._fed - unread
        if size > MAX_HEAD_BYTES:
            raise _invalid(self._shown, f"response head longer than {MAX_HEAD_BYTES} bytes")
        if not head.http_version.startswith(b"1."):
            version = head.http_version.decode("latin-1")
            raise _invalid(self._shown, f"HTTP/{version} is not HTTP/1.x")
        if len(head.headers) > MAX_HEADER_COUNT:
            raise _invalid(self._shown, f"more than {MAX_HEADER_COUNT} headers")

    async def read_body(self, max_body: int) -> tuple[bytes, bool]:
        """The body, cut at ``max_body`` bytes (then True: the rest is not read)."""
        collected = bytearray()
        while True:
            event = await self._next_event()
            if isinstance(event, h11.EndOfMessage):
                return bytes(collected), False
            if not isinstance(event, h11.Data):
                raise _invalid(self._shown, f"unexpected {type(event).__name__} in the body")
            room = max_body - len(collected)
            if len(event.data) > room:
                collected += event.data[:room]
                return bytes(collected), True
            collected += event.data
            self._body_bytes = len(collected)

    def _refusal(self, exc: h11.RemoteProtocolError) -> ProtocolError:
        if self._eof:
            # Everything h11 refuses once the input has ended is an answer cut short.
            return self._cut_short()
        if exc.error_status_hint == 431:  # h11's "Receive buffer too long"
            return _invalid(self._shown, f"response head longer than {MAX_HEAD_BYTES} bytes")
        return _invalid(self._shown, _h11_reason(exc))

    def _cut_short(self) -> ProtocolError:
        if self._head is None:
            return _closed(self._shown, "in the middle of the response head")
        headers = _header_map(self._head.headers)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return _closed(
                self._shown,
                f"in the middle of a chunked body ({self._body_bytes} bytes received)",
            )
        length = headers.get("content-length", "?")
        return _closed(self._shown, f"after {self._body_bytes} of {length} body bytes")


def _h11_reason(exc: h11.RemoteProtocolError) -> str:
    """h11's words for what it refused, with bytearray(b'...') shown as b'...' and cut short:
    the offending line may be tens of kilobytes."""
    reason = _BYTEARRAY_REPR.sub(r"\1", str(exc)) or type(exc).__name__
    return reason if len(reason) <= 160 else f"{reason[:157]}..."


def _decode_content(
    body: bytes, encoding: str | None, max_body: int, shown: str
) -> tuple[bytes, bool]:
    """The body with its content coding undone, at most ``max_body`` bytes of it, and whether
    it inflated beyond that and was cut (a small compressed body must not become gigabytes)."""
    name = (encoding or "identity").strip().lower()
    if name in ("identity", "") or not body:
        return body, False
    if name in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif name == "deflate":
        # "deflate" is zlib-wrapped by the RFC but raw in some servers; 32+ detects either
        # zlib or gzip headers, and raw deflate is retried below.
        wbits = 32 + zlib.MAX_WBITS
    else:
        return body, False  # unknown coding: hand over the bytes as they came
    try:
        return _inflate(body, wbits, max_body)
    except zlib.error as exc:
        if name == "deflate":
            with contextlib.suppress(zlib.error):
                return _inflate(body, -zlib.MAX_WBITS, max_body)
        raise ProtocolError(
            f"{shown}: the body is not valid {name}: {exc}",
            phase=Phase.HTTP,
            kind="invalid_encoding",
        ) from exc


def _inflate(body: bytes, wbits: int, max_body: int) -> tuple[bytes, bool]:
    inflater = zlib.decompressobj(wbits)
    # max_length: never more than max_body bytes out, whatever the ratio. A stream that filled
    # them and did not reach its end had more to give.
    inflated = inflater.decompress(body, max_body)
    return inflated, len(inflated) >= max_body and not inflater.eof


__all__ = [
    "MAX_HEADER_COUNT",
    "MAX_HEAD_BYTES",
    "USER_AGENT",
    "TimedResponse",
    "forwarded_through",
    "header_lookup",
    "parse_json",
    "response_observer",
    "timed_request",
]
