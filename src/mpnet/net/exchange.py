"""The timed HTTP/1.1 exchange: one request on a connection :func:`~mpnet.net.dial.dial` opened.

:func:`timed_request` dials the target itself (every phase timed) and speaks HTTP/1.1 on the raw
stream, so its ``http`` phase is exactly "request written -> first response byte" (curl's
``time_starttransfer - time_pretransfer``). This is what ``mpnet probe`` uses for REST.

What the server sends back is not trusted: the response head, the number of header fields, the
body and what a compressed body inflates to are all bounded, and every malformed answer becomes
a :class:`~mpnet.errors.ProtocolError` in the ``http`` phase.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import time
import zlib
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mpnet import __version__
from mpnet.core.proxy import ProxyDecision
from mpnet.core.proxy_url import redact_url_text
from mpnet.core.tls import TLSDecision
from mpnet.errors import ConnectError, Phase, ProbeError, ProbeTimeout, ProtocolError, UsageError
from mpnet.net.dial import PeerInfo, PhaseTimings, dial, parse_target, release_frames
from mpnet.net.tls import HTTP_ALPN

USER_AGENT = f"mpnet/{__version__}"
#: Response heads larger than this are not HTTP a probe should believe.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADER_COUNT = 200

_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: ([^\r\n]*))?\r?\n")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)[ \t]*(?:;[^\r\n]*)?\r?\n")


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
    connection is closed afterwards (``Connection: close``); redirects are not followed. Plain
    http targets go through an HTTP proxy by CONNECT, like https ones.

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
        ProbeTimeout: the budget ran out; ``phase`` says where.

    Every ProbeError raised carries ``.timings``: the phases that completed before it.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise UsageError(f"invalid URL {url!r}: timed_request needs an http or https URL")
    request = _build_request(method, url, headers=headers, json_body=json_body)
    timings = timings if timings is not None else PhaseTimings()
    try:
        response = await _timed_exchange(
            url, request, method.upper(), proxy, tls, timeout, timings, max_body
        )
    except ProbeError as exc:
        # The phases that did complete, for the failed attempt's waterfall.
        exc.timings = timings  # type: ignore[attr-defined]
        # The error is kept; the closed connection in its traceback's frames need not be.
        release_frames(exc)
        raise
    observer = response_observer.get()
    if observer is not None:
        observer(response)
    return response


async def _timed_exchange(
    url: str,
    request: bytes,
    method: str,
    proxy: ProxyDecision,
    tls: TLSDecision,
    timeout: float,
    timings: PhaseTimings,
    max_body: int,
) -> TimedResponse:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    conn = await dial(url, proxy=proxy, tls=tls, timeout=timeout, alpn=HTTP_ALPN, timings=timings)
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
                    method=method,
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


def _build_request(
    method: str, url: str, *, headers: Mapping[str, str] | None, json_body: Any
) -> bytes:
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
        if not _TOKEN.fullmatch(name) or any(c in value for c in "\r\n\0"):
            raise UsageError(f"invalid request header {name!r}: names are tokens, values one line")
        put(name, value)
    if body or method.upper() in ("POST", "PUT", "PATCH"):
        put("Content-Length", str(len(body)))
    if not _TOKEN.fullmatch(method):
        raise UsageError(f"invalid HTTP method {method!r}")
    lines = [f"{method.upper()} {path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in fields.values()]
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise UsageError("request headers must be latin-1 text") from None
    return head + body


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: bytes,
    *,
    url: str,
    method: str,
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
        writer.write(request)
        await writer.drain()
        waiting_since = written = time.perf_counter_ns()
        first = await reader.read(1)
        if not first:
            raise ProtocolError(
                f"{shown}: the server closed the connection without answering",
                phase=Phase.HTTP,
                kind="closed",
            )
        timings.http = (time.perf_counter_ns() - written) / 1e6
        received_at = time.time()
        status, reason, headers = await _read_head(reader, first, shown)
        while 100 <= status < 200 and status != 101:
            # Interim answers (100 Continue, 103 Early Hints) precede the real one.
            status, reason, headers = await _read_head(reader, b"", shown)
        body, truncated = await _read_body(reader, method, status, headers, max_body, shown)
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
    body = _decode_content(body, headers.get("content-encoding"), max_body, shown)
    return TimedResponse(
        url=url,
        status=status,
        reason=reason,
        headers=headers,
        body=body,
        timings=timings,
        peer=peer,
        received_at=received_at,
        truncated=truncated,
        sent_at=sent_at,
    )


def _http_phase_so_far(timings: PhaseTimings, since: int) -> None:
    if timings.http is None:
        timings.http = (time.perf_counter_ns() - since) / 1e6


def _invalid(shown: str, what: str) -> ProtocolError:
    return ProtocolError(
        f"{shown}: invalid HTTP answer: {what}", phase=Phase.HTTP, kind="invalid_http"
    )


async def _read_line(reader: asyncio.StreamReader, shown: str, *, budget: int) -> bytes:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError(
            f"{shown}: the server closed the connection in the middle of the response head",
            phase=Phase.HTTP,
            kind="closed",
        ) from exc
    except asyncio.LimitOverrunError as exc:
        raise _invalid(shown, "a header line longer than the reader's limit") from exc
    if len(line) > budget:
        raise _invalid(shown, f"response head longer than {MAX_HEAD_BYTES} bytes")
    return line


async def _read_head(
    reader: asyncio.StreamReader, first: bytes, shown: str
) -> tuple[int, str, dict[str, str]]:
    budget = MAX_HEAD_BYTES
    line = first + await _read_line(reader, shown, budget=budget)
    budget -= len(line)
    match = _STATUS_LINE.fullmatch(line)
    if match is None or match.group(1) != b"1":
        raise _invalid(shown, f"status line {line[:80].decode('latin-1')!r}")
    status = int(match.group(3))
    reason = (match.group(4) or b"").decode("latin-1").strip()
    headers: dict[str, str] = {}
    last: str | None = None
    while True:
        line = await _read_line(reader, shown, budget=budget)
        budget -= len(line)
        if line in (b"\r\n", b"\n"):
            return status, reason, headers
        text = line.rstrip(b"\r\n").decode("latin-1")
        if text[:1] in (" ", "\t"):
            # obs-fold (RFC 9112 section 5.2): a continuation of the previous value.
            if last is None:
                raise _invalid(shown, "a continuation line before any header")
            headers[last] = f"{headers[last]} {text.strip()}"
            continue
        name, sep, value = text.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise _invalid(shown, f"header line {text[:80]!r}")
        if len(headers) >= MAX_HEADER_COUNT:
            raise _invalid(shown, f"more than {MAX_HEADER_COUNT} headers")
        last = name.lower()
        value = value.strip()
        headers[last] = f"{headers[last]}, {value}" if last in headers else value


async def _read_body(
    reader: asyncio.StreamReader,
    method: str,
    status: int,
    headers: Mapping[str, str],
    max_body: int,
    shown: str,
) -> tuple[bytes, bool]:
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return b"", False
    encoding = headers.get("transfer-encoding", "")
    if "chunked" in encoding.lower():
        return await _read_chunked(reader, max_body, shown)
    length_text = headers.get("content-length")
    if length_text is not None:
        # isdigit() alone admits '²' and other digits that int() refuses.
        if not (length_text.isascii() and length_text.isdigit()):
            raise _invalid(shown, f"Content-Length {length_text!r}")
        length = int(length_text)
        wanted = min(length, max_body)
        try:
            body = await reader.readexactly(wanted)
        except asyncio.IncompleteReadError as exc:
            raise ProtocolError(
                f"{shown}: the server closed the connection after {len(exc.partial)} of "
                f"{length} body bytes",
                phase=Phase.HTTP,
                kind="closed",
            ) from exc
        return body, length > max_body
    # Neither length nor chunks: the body runs until the server closes (RFC 9112 6.3).
    collected = bytearray()
    while len(collected) <= max_body:
        chunk = await reader.read(65536)
        if not chunk:
            return bytes(collected), False
        collected += chunk
    return bytes(collected[:max_body]), True


async def _read_chunked(
    reader: asyncio.StreamReader, max_body: int, shown: str
) -> tuple[bytes, bool]:
    collected = bytearray()
    try:
        while True:
            size_line = await _read_line(reader, shown, budget=1024)
            match = _CHUNK_SIZE.fullmatch(size_line)
            if match is None:
                raise _invalid(shown, f"chunk size line {size_line[:40].decode('latin-1')!r}")
            size = int(match.group(1), 16)
            if size == 0:
                # Trailer section, then the empty line that ends the message.
                while (await _read_line(reader, shown, budget=MAX_HEAD_BYTES)) not in (
                    b"\r\n",
                    b"\n",
                ):
                    pass
                return bytes(collected), False
            if len(collected) + size > max_body:
                collected += await reader.readexactly(max_body - len(collected))
                return bytes(collected), True
            collected += await reader.readexactly(size)
            if (await _read_line(reader, shown, budget=2)) not in (b"\r\n", b"\n"):
                raise _invalid(shown, "chunk data longer than its announced size")
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError(
            f"{shown}: the server closed the connection in the middle of a chunked body "
            f"({len(collected) + len(exc.partial)} bytes received)",
            phase=Phase.HTTP,
            kind="closed",
        ) from exc


def _decode_content(body: bytes, encoding: str | None, max_body: int, shown: str) -> bytes:
    name = (encoding or "identity").strip().lower()
    if name in ("identity", "") or not body:
        return body
    if name in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif name == "deflate":
        # "deflate" is zlib-wrapped by the RFC but raw in some servers; 32+ detects either
        # zlib or gzip headers, and raw deflate is retried below.
        wbits = 32 + zlib.MAX_WBITS
    else:
        return body  # unknown coding: hand over the bytes as they came
    try:
        # max_length: a small compressed body must not inflate beyond max_body.
        return zlib.decompressobj(wbits).decompress(body, max_body)
    except zlib.error as exc:
        if name == "deflate":
            with contextlib.suppress(zlib.error):
                return zlib.decompressobj(-zlib.MAX_WBITS).decompress(body, max_body)
        raise ProtocolError(
            f"{shown}: the body is not valid {name}: {exc}",
            phase=Phase.HTTP,
            kind="invalid_encoding",
        ) from exc


__all__ = [
    "MAX_HEADER_COUNT",
    "MAX_HEAD_BYTES",
    "USER_AGENT",
    "TimedResponse",
    "header_lookup",
    "parse_json",
    "response_observer",
    "timed_request",
]
