"""HTTP: one phase-timed request for probes, pooled aiohttp sessions, and retries.

Three tools, for three jobs:

- :func:`timed_request` dials the target itself (:func:`mpnet.net.dial.dial`, every phase
  timed) and speaks HTTP/1.1 on the raw stream, so its ``http`` phase is exactly "request
  written -> first response byte" (curl's ``time_starttransfer - time_pretransfer``). This is
  what ``mpnet probe`` uses for REST.
- :class:`HTTPSessionManager` keeps named, pooled :class:`aiohttp.ClientSession` objects that
  follow a :class:`~mpnet.core.proxy.ProxyDecision` and a :class:`~mpnet.core.tls.TLSDecision`
  and nothing else (``trust_env=False``; aiohttp's own proxy and TLS defaults never apply).
- :func:`request_with_retry` sends a request on such a session, retrying connection errors,
  timeouts, 429 and 5xx with full-jitter backoff, and reports each attempt's timings.

aiohttp is imported only inside the functions that use it: ``timed_request`` does not pay for it.
Every aiohttp, aiohttp-socks, ssl and socket exception is translated here into
:mod:`mpnet.errors` (:func:`translate_client_error`), with ``raise ... from exc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random as _random
import re
import ssl
import time
import weakref
import zlib
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mpnet import __version__
from mpnet.core.backoff import backoff_delay, parse_retry_after
from mpnet.core.proxy import Layer, ProxyDecision
from mpnet.core.proxy_url import ProxyURL, redact_url_text
from mpnet.core.tls import TLSDecision
from mpnet.errors import (
    ConnectError,
    DNSError,
    MpnetError,
    Phase,
    ProbeError,
    ProbeTimeout,
    ProtocolError,
    ProxyAuthError,
    ProxyDenied,
    ProxyError,
    ProxyUnreachable,
    TLSError,
    UsageError,
)
from mpnet.net.dial import PeerInfo, PhaseTimings, dial, parse_target, release_frames
from mpnet.net.tls import HTTP_ALPN, context_for, refused_certificate_issuer, verify_kind

if TYPE_CHECKING:
    import aiohttp

USER_AGENT = f"mpnet/{__version__}"
#: Response heads larger than this are not HTTP a probe should believe.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADER_COUNT = 200

_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: ([^\r\n]*))?\r?\n")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]+)[ \t]*(?:;[^\r\n]*)?\r?\n")


def _header_lookup(headers: Mapping[str, str], name: str, default: str | None) -> str | None:
    return headers.get(name.lower(), default)


def _parse_json(body: bytes, *, url: str) -> Any:
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


# -- timed_request ------------------------------------------------------------------------------


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
        return _header_lookup(self.headers, name, default)

    def json(self) -> Any:
        """The body parsed as JSON.

        Raises:
            ProtocolError: kind ``invalid_json``, quoting the first 100 characters.
        """
        return _parse_json(self.body, url=self.url)


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

    Every ProbeError raised carries ``.phases``: the phases that completed before it.
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
        exc.phases = timings.to_dict()
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


# -- error translation (aiohttp, aiohttp-socks) -------------------------------------------------


def _tls_error_from(exc: BaseException, where: str) -> TLSError:
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = getattr(exc, "verify_message", None) or str(exc)
        issuer = refused_certificate_issuer(exc)
        issued = f" (issuer: {issuer})" if issuer else ""
        return TLSError(
            f"certificate of {where} refused: {reason}{issued}",
            kind=verify_kind(exc),
            issuer=issuer,
        )
    if isinstance(exc, ssl.CertificateError):
        return TLSError(f"certificate of {where} refused: {exc}", kind="hostname_mismatch")
    reason = getattr(exc, "reason", None) or str(exc)
    return TLSError(f"TLS handshake with {where} failed: {reason}", kind="handshake")


def _dns_kind(exc: BaseException | None) -> str:
    import socket

    no_resolver = {getattr(socket, n) for n in ("EAI_AGAIN", "EAI_FAIL") if hasattr(socket, n)}
    return "no_resolver" if getattr(exc, "errno", None) in no_resolver else "nxdomain"


def translate_client_error(
    exc: BaseException,
    *,
    url: str,
    proxy: ProxyURL | None,
    phase: Phase = Phase.HTTP,
) -> MpnetError:
    """Map an aiohttp / aiohttp-socks / ssl / socket exception to an :mod:`mpnet.errors` class.

    The most specific classes are matched first. Messages carry redacted URLs only.

    Args:
        exc: the exception raised by a request.
        url: the request's URL, for messages.
        proxy: the session's proxy, if any (decides between "proxy" and "target" errors).
        phase: the phase that was running, used for timeouts and resets.
    """
    import aiohttp
    import aiohttp_socks

    shown = redact_url_text(url)
    host = urlsplit(url).hostname or shown
    via = f" via proxy {proxy.redacted()}" if proxy else ""
    detail = redact_url_text(str(exc)) or type(exc).__name__
    if isinstance(exc, MpnetError):
        return exc
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        who = proxy.redacted() if proxy else "the proxy"
        shown_status = f"{exc.status} {exc.message}".strip()
        if exc.status in (401, 407):
            return ProxyAuthError(f"proxy {who} refused CONNECT to {host}: {shown_status}")
        return ProxyDenied(f"proxy {who} refused CONNECT to {host}: {shown_status}")
    if isinstance(exc, aiohttp_socks.ProxyConnectionError):
        return ProxyUnreachable(
            f"cannot connect to proxy {proxy.redacted() if proxy else ''}: {detail}",
            kind="proxy_refused",
        )
    if isinstance(exc, aiohttp_socks.ProxyTimeoutError):
        return ProbeTimeout(f"proxy{via} did not answer in time: {detail}", phase=Phase.PROXY)
    if isinstance(exc, aiohttp_socks.ProxyError):
        who = proxy.redacted() if proxy else "the proxy"
        if "auth" in str(exc).lower() or exc.error_code in (401, 407):
            return ProxyAuthError(f"proxy {who} refused the credentials: {detail}")
        return ProxyDenied(f"proxy {who} refused to connect to {host}: {detail}")
    if isinstance(exc, EOFError | ConnectionResetError) and _raised_by_python_socks(exc):
        who = proxy.redacted() if proxy else "the proxy"
        if proxy is not None and proxy.username is not None and proxy.scheme.startswith("socks5"):
            # RFC 1929 servers may just hang up on wrong credentials (pproxy does).
            return ProxyAuthError(
                f"SOCKS proxy {who} closed the connection during the handshake: "
                "it rejected the credentials"
            )
        return ProxyDenied(
            f"proxy {who} closed the connection during the SOCKS handshake to {host}",
            kind="proxy_closed",
        )
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return _tls_error_from(exc.certificate_error, f"{host}{via}")
    if isinstance(exc, aiohttp.ClientSSLError):
        return _tls_error_from(exc.os_error, f"{host}{via}")
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return _tls_error_from(exc, f"{host}{via}")
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        refused = isinstance(exc.os_error, ConnectionRefusedError)
        return ProxyUnreachable(
            f"cannot connect to proxy {proxy.redacted() if proxy else ''}: "
            f"{exc.os_error.strerror or type(exc.os_error).__name__}",
            kind="proxy_refused" if refused else "proxy_unreachable",
        )
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        kind = _dns_kind(exc.os_error)
        if proxy is not None and not proxy.is_socks:
            return ProxyUnreachable(
                f"cannot resolve proxy {proxy.redacted()}", phase=Phase.DNS, kind=kind
            )
        return DNSError(f"cannot resolve {host}: {exc.os_error.strerror or detail}", kind=kind)
    if isinstance(exc, aiohttp.ClientConnectorError):
        refused = isinstance(exc.os_error, ConnectionRefusedError)
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return ConnectError(
            f"cannot connect to {host}{via}: {reason}",
            kind="refused" if refused else "unreachable",
        )
    if isinstance(exc, TimeoutError):
        return ProbeTimeout(f"timed out during {phase} on {shown}{via}", phase=phase)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ProtocolError(
            f"{shown}: the server closed the connection without a complete answer",
            phase=Phase.HTTP,
            kind="closed",
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ProtocolError(f"{shown}: invalid response body: {detail}", kind="invalid_body")
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return UsageError(f"invalid URL {shown!r}: {detail}")
    if isinstance(exc, aiohttp.ClientResponseError):
        return ProtocolError(f"{shown}: invalid HTTP answer: {detail}", kind="invalid_http")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return ConnectError(f"{shown}{via}: connection failed: {detail}", phase=phase, kind="reset")
    raise TypeError(f"not a network error: {type(exc).__name__}") from exc


# -- HTTPSessionManager -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What a managed session was built from. ``created_at`` is Unix time."""

    name: str
    proxy: ProxyDecision
    tls: TLSDecision
    timeout: float
    created_at: float

    @property
    def proxy_layer(self) -> Layer:
        return self.proxy.layer

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "proxy": self.proxy.proxy.redacted() if self.proxy.proxy else None,
            "proxy_layer": self.proxy.layer,
            "tls_verify": self.tls.verify,
            "timeout": self.timeout,
            "created_at": self.created_at,
        }


# Which proxy a session uses, for errors and timeout phases; weak so closed sessions vanish.
_SESSION_INFO: weakref.WeakKeyDictionary[aiohttp.ClientSession, SessionInfo] = (
    weakref.WeakKeyDictionary()
)


class HTTPSessionManager:
    """Named, pooled aiohttp sessions that follow mpnet's proxy and TLS decisions.

    Each name gets one :class:`aiohttp.ClientSession`, created on first use and reused after.
    HTTP and HTTPS proxies go through aiohttp's own ``proxy=`` (credentials from the proxy URL;
    an ``https://`` proxy's certificate is checked with the same TLS context as the target's,
    which is all aiohttp 3.14 offers); SOCKS proxies through :mod:`aiohttp_socks`. Sessions never
    read the environment (``trust_env=False``) and always carry a total timeout, because a proxy
    that accepts TCP and never answers would otherwise hang forever.
    """

    def __init__(self) -> None:
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._info: dict[str, SessionInfo] = {}
        self._lock = asyncio.Lock()

    @property
    def sessions(self) -> dict[str, SessionInfo]:
        """Open sessions by name."""
        return {name: info for name, info in self._info.items() if not self._closed(name)}

    def existing(self, name: str) -> aiohttp.ClientSession | None:
        """The open session called ``name``, or None."""
        return None if self._closed(name) else self._sessions[name]

    def _closed(self, name: str) -> bool:
        session = self._sessions.get(name)
        return session is None or session.closed

    async def get_session(
        self,
        name: str = "default",
        *,
        proxy: ProxyDecision,
        tls: TLSDecision,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientSession:
        """The session called ``name``, created with these decisions on first use.

        Raises:
            UsageError: a session of that name is open with another proxy or TLS policy (close
                it first, or use another name), or ``timeout`` is not positive.
            ConfigError: the CA bundle cannot be loaded.
        """
        if timeout <= 0:
            raise UsageError(f"timeout must be positive, not {timeout}")
        async with self._lock:
            if not self._closed(name):
                info = self._info[name]
                if info.proxy.proxy != proxy.proxy or _tls_key(info.tls) != _tls_key(tls):
                    raise UsageError(
                        f"HTTP session {name!r} is open with proxy "
                        f"{info.proxy.proxy.redacted() if info.proxy.proxy else 'direct'} and "
                        f"verify={info.tls.verify}; close it or use another session name"
                    )
                return self._sessions[name]
            session = _build_session(proxy, tls, timeout, headers)
            info = SessionInfo(
                name=name, proxy=proxy, tls=tls, timeout=timeout, created_at=time.time()
            )
            self._sessions[name] = session
            self._info[name] = info
            _SESSION_INFO[session] = info
            return session

    async def close(self, name: str) -> None:
        """Close the session called ``name``; unknown names are ignored."""
        session = self._sessions.pop(name, None)
        self._info.pop(name, None)
        if session is not None and not session.closed:
            await session.close()

    async def close_all(self) -> None:
        """Close every session."""
        for name in list(self._sessions):
            await self.close(name)

    async def __aenter__(self) -> HTTPSessionManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close_all()


def _tls_key(tls: TLSDecision) -> tuple[bool, str | None]:
    return tls.verify, tls.ca


def _build_session(
    proxy: ProxyDecision,
    tls: TLSDecision,
    timeout: float,
    headers: Mapping[str, str] | None,
) -> aiohttp.ClientSession:
    import aiohttp

    from mpnet.net.session_errors import error_translator

    # The shared context of this policy: no CA bundle is loaded per session.
    ssl_context = context_for(tls)
    session_proxy: str | None = None
    # TCP_NODELAY needs no option here: asyncio's socket transports and aiohttp's
    # ResponseHandler.connection_made set it on every connection, SOCKS ones included
    # (tests/net/test_http.py::test_session_sockets_have_tcp_nodelay checks it).
    connector: aiohttp.BaseConnector
    chosen = proxy.proxy
    if chosen is not None and chosen.is_socks:
        from aiohttp_socks import ProxyConnector, ProxyType

        connector = ProxyConnector(
            proxy_type=ProxyType.SOCKS5 if chosen.scheme.startswith("socks5") else ProxyType.SOCKS4,
            host=chosen.host,
            port=chosen.port,
            username=chosen.username,
            password=chosen.password,
            # aiohttp-socks rejects socks5h:// URLs; rdns is how it spells "proxy resolves".
            rdns=chosen.remote_dns,
            ssl=ssl_context,
        )
    else:
        connector = aiohttp.TCPConnector(ssl=ssl_context)
        if chosen is not None:
            session_proxy = chosen.with_credentials()
    return aiohttp.ClientSession(
        connector=connector,
        proxy=session_proxy,
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        trust_env=False,
        trace_configs=[_attempt_trace_config()],
        middlewares=(error_translator(chosen),),
    )


# -- request_with_retry -------------------------------------------------------------------------


@dataclass(slots=True)
class _AttemptClock:
    """perf_counter_ns marks of one attempt, filled by aiohttp trace hooks."""

    started: int = 0
    dns_start: int | None = None
    dns_end: int | None = None
    connect_start: int | None = None
    connect_end: int | None = None
    reused_at: int | None = None
    headers_at: int | None = None
    finished: int | None = None

    @property
    def connected(self) -> bool:
        return self.connect_end is not None or self.reused_at is not None

    def phases(self) -> dict[str, float]:
        def ms(start: int | None, end: int | None) -> float | None:
            return None if start is None or end is None else (end - start) / 1e6

        result: dict[str, float | None] = {
            "dns": ms(self.dns_start, self.dns_end),
            "connect": ms(self.connect_start, self.connect_end) if not self.reused_at else 0.0,
            "http": ms(self.connect_end or self.reused_at, self.headers_at),
            "total": ms(self.started, self.finished),
        }
        return {k: v for k, v in result.items() if v is not None}


_TRACE_CONFIG: aiohttp.TraceConfig | None = None


def _attempt_trace_config() -> aiohttp.TraceConfig:
    """One shared TraceConfig whose hooks fill the :class:`_AttemptClock` passed as
    ``trace_request_ctx``; requests without one are ignored."""
    global _TRACE_CONFIG
    if _TRACE_CONFIG is not None:
        return _TRACE_CONFIG
    import aiohttp

    def mark(attribute: str) -> Callable[..., Awaitable[None]]:
        async def hook(_session: object, context: Any, _params: object) -> None:
            clock = getattr(context, "trace_request_ctx", None)
            if isinstance(clock, _AttemptClock) and getattr(clock, attribute) is None:
                setattr(clock, attribute, time.perf_counter_ns())

        return hook

    config = aiohttp.TraceConfig()
    config.on_dns_resolvehost_start.append(mark("dns_start"))
    config.on_dns_resolvehost_end.append(mark("dns_end"))
    config.on_connection_create_start.append(mark("connect_start"))
    config.on_connection_create_end.append(mark("connect_end"))
    config.on_connection_reuseconn.append(mark("reused_at"))
    config.on_request_end.append(mark("headers_at"))
    config.freeze()
    _TRACE_CONFIG = config
    return config


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt of :func:`request_with_retry`.

    ``phases`` holds milliseconds: ``connect`` (TCP + proxy + TLS together; 0.0 on a reused
    connection), ``http`` (request sent to response headers), ``total`` (start to body read),
    and ``dns`` when aiohttp resolved a name. Sessions not made by :class:`HTTPSessionManager`
    have no trace hooks and report ``total`` only. ``delay`` is the pause that followed it.
    """

    number: int
    phases: Mapping[str, float]
    status: int | None = None
    error: ProbeError | None = None
    reused_connection: bool = False
    delay: float | None = None
    retry_after: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "status": self.status,
            "error": self.error.to_dict() if self.error else None,
            "reused_connection": self.reused_connection,
            "delay": self.delay,
        }


@dataclass(frozen=True, slots=True)
class RetryResponse:
    """The last answer of :func:`request_with_retry` and every attempt that led to it.

    ``headers`` has lower-case names; use :meth:`header` for a case-insensitive lookup.
    """

    url: str
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    history: tuple[AttemptRecord, ...] = field(default=())

    @property
    def attempts(self) -> int:
        return len(self.history)

    @property
    def elapsed_ms(self) -> tuple[Mapping[str, float], ...]:
        """Per-attempt phase timings, in attempt order."""
        return tuple(record.phases for record in self.history)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400

    def header(self, name: str, default: str | None = None) -> str | None:
        return _header_lookup(self.headers, name, default)

    def json(self) -> Any:
        """The body parsed as JSON. Raises ProtocolError (kind ``invalid_json``)."""
        return _parse_json(self.body, url=self.url)


def is_retryable_status(status: int) -> bool:
    """429 and 5xx are worth another try; every other answer is final."""
    return status == 429 or 500 <= status <= 599


def is_retryable_error(error: MpnetError) -> bool:
    """Connection failures and timeouts are worth another try. Certificate problems, proxy
    refusals, names that do not exist and bad input give the same answer every time."""
    if isinstance(error, ProxyAuthError | ProxyDenied | TLSError):
        return False
    if isinstance(error, DNSError):
        return error.kind == "no_resolver"
    if isinstance(error, ProxyUnreachable) and error.phase is Phase.DNS:
        return error.kind == "no_resolver"
    if isinstance(error, ProtocolError):
        return error.kind == "closed"
    return isinstance(error, ConnectError | ProbeTimeout | ProxyError)


_REFUSED_KWARGS = ("proxy", "proxy_auth", "proxy_headers", "ssl", "verify_ssl", "trace_request_ctx")


async def request_with_retry(
    method: str,
    url: str,
    *,
    session: aiohttp.ClientSession | None = None,
    session_name: str = "default",
    manager: HTTPSessionManager | None = None,
    max_attempts: int = 3,
    base_delay: float = 0.5,
    max_delay: float = 10.0,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    random: Callable[[], float] = _random.random,
    **kwargs: Any,
) -> RetryResponse:
    """Send a request, retrying connection errors, timeouts, 429 and 5xx.

    The pause before retry ``n`` (0-based) is ``Retry-After`` when the answer carries one
    (seconds or HTTP-date, at most ``max_delay``), else full jitter
    ``uniform(0, min(max_delay, base_delay * 2**n))``. 4xx answers other than 429 are final. A
    407 answer (a proxy in front of a plain-http target) raises ProxyAuthError, as it does for
    https targets. Note that a POST is retried too: pass ``max_attempts=1`` when the request is
    not safe to repeat.

    Args:
        session: the session to use; else ``manager``'s open session ``session_name``.
        max_attempts: 1 means no retry.
        sleep, random: injectable for tests (``sleep(seconds)``, ``random() -> [0, 1)``).
        kwargs: passed to :meth:`aiohttp.ClientSession.request` (``json``, ``headers``,
            ``params``, ``data``, ``timeout`` ...). Proxy and TLS arguments are refused: the
            session's decisions apply.

    Returns:
        The last answer (which may be a 429 or 5xx when every attempt got one).

    Raises:
        UsageError: no session to use, a refused keyword, or ``max_attempts < 1``.
        DNSError, ConnectError, ProxyError, TLSError, ProbeTimeout, ProtocolError: the last
            attempt's failure, translated from aiohttp's exception.
    """
    if max_attempts < 1:
        raise UsageError(f"max_attempts must be at least 1, not {max_attempts}")
    refused = sorted(k for k in kwargs if k in _REFUSED_KWARGS)
    if refused:
        raise UsageError(
            f"request_with_retry does not take {', '.join(refused)}: the session's proxy and "
            "TLS decisions apply"
        )
    if session is None:
        session = manager.existing(session_name) if manager is not None else None
        if session is None:
            raise UsageError(
                f"no open HTTP session {session_name!r}: pass session= or create it with "
                "HTTPSessionManager.get_session() first"
            )
    info = _SESSION_INFO.get(session)
    proxy = info.proxy.proxy if info else None
    history: list[AttemptRecord] = []
    for attempt in range(max_attempts):
        last = attempt == max_attempts - 1
        clock = _AttemptClock(started=time.perf_counter_ns())
        try:
            response = await _attempt(session, method, url, clock, kwargs)
        except MpnetError as error:
            record = AttemptRecord(
                number=attempt + 1,
                phases=clock.phases(),
                error=error if isinstance(error, ProbeError) else None,
                reused_connection=clock.reused_at is not None,
            )
            if last or not is_retryable_error(error):
                raise
            delay = backoff_delay(attempt, initial=base_delay, maximum=max_delay, random=random)
            history.append(_with_delay(record, delay))
            await sleep(delay)
            continue
        status, reason, headers, body = response
        record = AttemptRecord(
            number=attempt + 1,
            phases=clock.phases(),
            status=status,
            reused_connection=clock.reused_at is not None,
        )
        if status == 407:
            history.append(record)
            who = proxy.redacted() if proxy else "a proxy"
            raise ProxyAuthError(f"{who} wants credentials for {redact_url_text(url)}: {status}")
        if last or not is_retryable_status(status):
            history.append(record)
            return RetryResponse(
                url=url,
                status=status,
                reason=reason,
                headers=headers,
                body=body,
                history=tuple(history),
            )
        retry_after = _retry_after(headers, max_delay)
        if retry_after is not None:
            delay = retry_after
        else:
            delay = backoff_delay(attempt, initial=base_delay, maximum=max_delay, random=random)
        history.append(_with_delay(record, delay, retry_after=retry_after))
        await sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _with_delay(
    record: AttemptRecord, delay: float, *, retry_after: float | None = None
) -> AttemptRecord:
    from dataclasses import replace

    return replace(record, delay=delay, retry_after=retry_after)


def _retry_after(headers: Mapping[str, str], max_delay: float) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = parse_retry_after(value, now=time.time())
    return None if seconds is None else min(seconds, max_delay)


async def _attempt(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    clock: _AttemptClock,
    kwargs: Mapping[str, Any],
) -> tuple[int, str, dict[str, str], bytes]:
    info = _SESSION_INFO.get(session)
    proxy = info.proxy.proxy if info else None
    try:
        async with session.request(method, url, trace_request_ctx=clock, **kwargs) as response:
            if clock.headers_at is None:
                clock.headers_at = time.perf_counter_ns()
            body = await response.read()
            clock.finished = time.perf_counter_ns()
            headers: dict[str, str] = {}
            for name, value in response.headers.items():
                key = name.lower()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
            return response.status, response.reason or "", headers, body
    except Exception as exc:
        clock.finished = time.perf_counter_ns()
        if isinstance(exc, MpnetError):
            raise
        if not _is_network_error(exc):
            raise
        # aiohttp times TCP, proxy and TLS as one step; a proxy that hangs is the common case.
        connecting = Phase.PROXY if proxy is not None else Phase.TCP
        phase = Phase.HTTP if clock.connected else connecting
        raise translate_client_error(exc, url=url, proxy=proxy, phase=phase) from exc


def _raised_by_python_socks(exc: BaseException) -> bool:
    traceback = exc.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_globals.get("__name__", "").startswith("python_socks"):
            return True
        traceback = traceback.tb_next
    return False


def _is_network_error(exc: BaseException) -> bool:
    import aiohttp
    import aiohttp_socks

    return isinstance(
        exc,
        aiohttp.ClientError
        | aiohttp_socks.ProxyError
        | aiohttp_socks.ProxyConnectionError
        | aiohttp_socks.ProxyTimeoutError
        | OSError
        | EOFError
        | TimeoutError,
    )


__all__ = [
    "USER_AGENT",
    "AttemptRecord",
    "HTTPSessionManager",
    "RetryResponse",
    "SessionInfo",
    "TimedResponse",
    "is_retryable_error",
    "is_retryable_status",
    "request_with_retry",
    "timed_request",
    "translate_client_error",
]
