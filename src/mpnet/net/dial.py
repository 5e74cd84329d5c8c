"""Phase-timed dialing: DNS -> TCP -> proxy handshake -> TLS, each phase timed on its own.

:func:`dial` is the one code path by which mpnet opens a connection. It follows a
:class:`~mpnet.core.proxy.ProxyDecision` and a :class:`~mpnet.core.tls.TLSDecision` exactly (no
library reads the environment on its own), records every phase in a :class:`PhaseTimings` with a
monotonic clock, and translates every socket, ssl and python-socks exception into an
:mod:`mpnet.errors` class that names the phase. On failure nothing stays open.

DNS and TCP live here; the proxy phase (HTTP CONNECT, SOCKS) in :mod:`mpnet.net.tunnel`; the TLS
handshake and its description in :mod:`mpnet.net.tls`.

Through a proxy, ``dns`` and ``tcp`` are the proxy's. With ``http``, ``https``, ``socks4a`` and
``socks5h`` proxies the proxy resolves the target's name; with ``socks4`` and ``socks5`` mpnet
resolves it locally (inside the ``dns`` phase) and hands the proxy an address.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import socket
import ssl
import struct
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from mpnet.core.proxy import ProxyDecision
from mpnet.core.proxy_url import ProxyURL
from mpnet.core.result import TLSInfo
from mpnet.core.tls import TLSDecision
from mpnet.errors import (
    ConnectError,
    DNSError,
    MpnetError,
    Phase,
    ProbeTimeout,
    ProxyUnreachable,
    UsageError,
)
from mpnet.net.stamps import stamp_arrivals
from mpnet.net.tls import context_for, describe_tls, start_tls
from mpnet.net.tunnel import authority, open_tunnel, proxy_tls

SECURE_SCHEMES = {"https": 443, "wss": 443}
PLAIN_SCHEMES = {"http": 80, "ws": 80}
AddrInfo = tuple[Any, ...]

#: The address family the names a dial resolves must have (``-4``: AF_INET, ``-6``: AF_INET6,
#: AF_UNSPEC: either), as curl's -4/-6: the target's name, or the proxy's when one is dialled. A
#: context variable, so that concurrent attempts (each its own task) keep their own.
address_family: ContextVar[int] = ContextVar("mpnet_address_family", default=socket.AF_UNSPEC)

_FAMILY_FLAGS: dict[int, tuple[str, str]] = {
    int(socket.AF_INET): ("-4", "IPv4"),
    int(socket.AF_INET6): ("-6", "IPv6"),
}


@dataclass(frozen=True, slots=True)
class AddressReport:
    """What a dial's DNS and TCP phases found: every address resolved (``ip:port``, the proxy's
    when one is dialled), the one connected to (None when none accepted), and each address
    tried before it with the reason it failed."""

    addresses: tuple[str, ...]
    address: str | None
    failures: tuple[tuple[str, str], ...] = ()


#: Sees the :class:`AddressReport` of every dial in this context once its TCP phase ends,
#: connected or not (the probe engine keeps it for the attempt's addresses and family).
address_observer: ContextVar[Callable[[AddressReport], None] | None] = ContextVar(
    "mpnet_address_observer", default=None
)


@dataclass(slots=True)
class PhaseTimings:
    """Milliseconds spent in each phase; ``None`` means the phase did not happen (yet).

    Mutable on purpose: :func:`dial` and the HTTP/WebSocket layers fill it in as the
    connection proceeds, so a failure still shows the phases that completed. The phase that
    failed (or timed out) holds the time spent in it until then; the error names that phase.
    """

    dns: float | None = None
    tcp: float | None = None
    proxy: float | None = None
    tls: float | None = None
    http: float | None = None
    ws_upgrade: float | None = None
    first_message: float | None = None
    ping_rtt: float | None = None
    bootstrap: float | None = None

    def to_dict(self) -> dict[str, float]:
        """The phases that happened, in the order they happen (``bootstrap`` first)."""
        order = ("bootstrap", *(f.name for f in fields(self) if f.name != "bootstrap"))
        return {name: value for name in order if (value := getattr(self, name)) is not None}

    @contextlib.contextmanager
    def measure(self, phase: Phase | str) -> Iterator[None]:
        """Time the body and store it under ``phase``; a phase entered twice adds up."""
        # .value is the member's own string; str() would make a new one per phase and call,
        # which the interpreter's attribute cache then keeps alive.
        name = phase.value if isinstance(phase, Phase) else phase
        started = time.perf_counter_ns()
        try:
            yield
        finally:
            elapsed = (time.perf_counter_ns() - started) / 1e6
            previous = getattr(self, name)
            setattr(self, name, elapsed if previous is None else previous + elapsed)


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """Who mpnet talked to.

    ``addresses`` are all the addresses the name resolved to (the proxy's when proxied),
    ``address`` the ``ip:port`` that accepted the TCP connection, ``via_proxy`` the redacted
    proxy URL, ``tls`` what the target's TLS handshake showed.

    ``tcp_rtt_kernel_ms`` is the kernel's own round-trip estimate of the TCP connection, read
    right after it was established (Linux ``TCP_INFO``: ``tcpi_min_rtt`` when the kernel has it,
    else ``tcpi_rtt``), a cross-check of the ``tcp`` phase that no event loop delay can inflate.
    Through a proxy it is the round trip to the proxy, like the ``tcp`` phase. None where the
    kernel does not tell (not Linux, or the socket option failed).
    """

    addresses: tuple[str, ...] = ()
    address: str | None = None
    via_proxy: str | None = None
    tls: TLSInfo | None = None
    tls_verified: bool | None = None
    tcp_rtt_kernel_ms: float | None = None


@dataclass(slots=True)
class DialedConnection:
    """An open connection to the target; TLS is already established for https/wss."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    timings: PhaseTimings
    peer: PeerInfo
    host: str
    port: int
    secure: bool
    _closed: bool = field(default=False, repr=False)

    async def aclose(self) -> None:
        """Close the connection; never raises."""
        if self._closed:
            return
        self._closed = True
        await close_writer(self.writer)


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a stream writer and wait for it, swallowing the errors a dying peer causes."""
    writer.close()
    with contextlib.suppress(Exception):
        # A TLS close_notify exchange with a silent peer must not hang the caller.
        async with asyncio.timeout(1.0):
            await writer.wait_closed()


@dataclass(frozen=True, slots=True)
class Target:
    """The host, port and security of a ws/wss/http/https URL."""

    host: str
    port: int
    secure: bool

    @property
    def authority(self) -> str:
        return authority(self.host, self.port)


def parse_target(url: str) -> Target:
    """Split ``url`` into host, port and whether it needs TLS.

    Raises:
        UsageError: not a ws, wss, http or https URL with a host.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"invalid URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme in SECURE_SCHEMES:
        default_port, secure = SECURE_SCHEMES[scheme], True
    elif scheme in PLAIN_SCHEMES:
        default_port, secure = PLAIN_SCHEMES[scheme], False
    else:
        raise UsageError(f"invalid URL {url!r}: the scheme must be ws, wss, http or https")
    if not parts.hostname:
        raise UsageError(f"invalid URL {url!r}: no host")
    return Target(host=parts.hostname, port=port or default_port, secure=secure)


class _Progress:
    """The phase in progress, so that a timeout can name it."""

    def __init__(self, timings: PhaseTimings) -> None:
        self.timings = timings
        self.phase = Phase.DNS

    @contextlib.contextmanager
    def step(self, phase: Phase) -> Iterator[None]:
        self.phase = phase
        with self.timings.measure(phase):
            yield


async def dial(
    url: str,
    *,
    proxy: ProxyDecision,
    tls: TLSDecision,
    timeout: float,
    alpn: Sequence[str] | None = None,
    timings: PhaseTimings | None = None,
    tunnel: bool = True,
) -> DialedConnection:
    """Open a connection to ``url``'s host as ``proxy`` and ``tls`` decide, timing each phase.

    Args:
        url: a ws, wss, http or https URL; only scheme, host and port are used.
        proxy: the proxy decision (``proxy.proxy is None`` means direct).
        tls: the TLS decision for the target (and for an ``https://`` proxy).
        timeout: one budget in seconds for the whole dial.
        alpn: ALPN protocols to offer, e.g. ``["http/1.1"]``.
        timings: filled in as phases complete; a new one is made when omitted. Pass your own to
            keep the completed phases when dial fails.
        tunnel: False for a plain http:// request through an HTTP(S) proxy, sent in absolute
            form (``GET http://host/path``) as curl, urllib and aiohttp do: the connection then
            ends at the proxy, with no CONNECT. An ``https://`` proxy's own TLS handshake is
            then the ``proxy`` phase; an ``http://`` proxy has no ``proxy`` phase. Ignored for
            SOCKS proxies and direct connections.

    Raises:
        UsageError: ``url`` is not a ws/wss/http/https URL.
        ConfigError: the CA bundle cannot be loaded.
        DNSError, ConnectError, ProxyUnreachable, ProxyAuthError, ProxyDenied, TLSError,
        ProbeTimeout: the network step that failed, with its phase.

    The SSL context is the shared one of ``tls`` and ``alpn``
    (:func:`mpnet.net.tls.context_for`): built once, before any clock runs when the caller ran
    :func:`mpnet.net.prepare.prepare_network`.
    """
    target = parse_target(url)
    forward = not tunnel and proxy.proxy is not None and not proxy.proxy.is_socks
    if forward and target.secure:
        raise UsageError(
            f"invalid URL {url!r}: only http:// and ws:// go through a proxy unwrapped"
        )
    ssl_context = context_for(tls, alpn=tuple(alpn or ())) if target.secure else None
    # An https:// proxy's certificate is checked against the proxy's own trust store: the
    # target's, unless --proxy-ca-bundle / proxy_ssl named another (TLSDecision.for_proxy).
    https_proxy = proxy.proxy is not None and proxy.proxy.scheme == "https"
    proxy_context = context_for(tls.for_proxy()) if https_proxy else None
    progress = _Progress(timings if timings is not None else PhaseTimings())
    try:
        async with asyncio.timeout(timeout):
            return await _dial(
                target, proxy.proxy, tls, ssl_context, proxy_context, progress, forward=forward
            )
    except MpnetError as exc:
        release_frames(exc)
        raise
    except TimeoutError as exc:
        release_frames(exc)
        # Everything else inside _dial is translated, so this is the overall budget running out.
        where = f" via proxy {proxy.proxy.redacted()}" if proxy.proxy else ""
        raise ProbeTimeout(
            f"timed out after {timeout:g} s during {progress.phase} connecting to "
            f"{target.authority}{where}",
            phase=progress.phase,
        ) from exc


def release_frames(exc: BaseException) -> None:
    """Let an error outlive the connection it reports on without keeping that connection.

    The finished frames in an error's traceback (and in its causes') hold their locals: the
    socket, the stream writer, the transport, a failed handshake's SSLObject and SSLProtocol with
    its 256 KiB buffer; and a finished frame still links to its callers of the time (``f_back``),
    e.g. the transport callback that ran the handshake. Errors are kept (results, retry
    histories, ``--debug``), so those locals are dropped here; the traceback's lines stay.

    Only for errors raised inside the caller's own task, or in tasks that have ended (as
    everything dial, timed_request and request_with_retry raise is: aiohttp's name resolution
    task hands its error over when it ends): frames still running refuse to be cleared and are
    left alone, and no frame of another, suspended coroutine is in such a traceback.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None:
            frame: FrameType | None = tb.tb_frame
            # The frame itself, then its callers until one is still running.
            while frame is not None and _clear_frame(frame):
                frame = frame.f_back
            tb = tb.tb_next
        current = current.__cause__ or current.__context__


def _clear_frame(frame: FrameType) -> bool:
    """Drop a finished frame's locals; False when the frame is still running."""
    try:
        frame.clear()
    except RuntimeError:
        return False
    return True


async def _dial(
    target: Target,
    proxy: ProxyURL | None,
    tls: TLSDecision,
    ssl_context: ssl.SSLContext | None,
    proxy_context: ssl.SSLContext | None,
    progress: _Progress,
    *,
    forward: bool = False,
) -> DialedConnection:
    loop = asyncio.get_running_loop()
    connect_host, connect_port = (proxy.host, proxy.port) if proxy else (target.host, target.port)
    tunnel_host = target.host
    forced = address_family.get()
    with progress.step(Phase.DNS):
        infos = await _resolve(loop, connect_host, connect_port, proxy=proxy, family=forced)
        if proxy is not None and not proxy.remote_dns:
            # socks4/socks5: the proxy expects an address, so mpnet resolves the target itself.
            family = socket.AF_INET if proxy.scheme == "socks4" else forced
            target_infos = await _resolve(loop, target.host, target.port, family=family)
            tunnel_host = target_infos[0][4][0]
    addresses = tuple(_format_address(info[4]) for info in infos)

    failures: list[tuple[str, str]] = []
    connected: str | None = None
    try:
        with progress.step(Phase.TCP):
            sock, connected = await _connect_tcp(
                loop, infos, connect_host, proxy=proxy, failures=failures
            )
    finally:
        observer = address_observer.get()
        if observer is not None:
            observer(AddressReport(addresses, connected, tuple(failures)))
    address = connected
    kernel_rtt = kernel_rtt_ms(sock)

    writer: asyncio.StreamWriter | None = None
    try:
        reader, writer = await asyncio.open_connection(sock=sock)
        if proxy is not None and forward:
            # Absolute form: the request goes to the proxy itself; only an https:// proxy
            # has a handshake of its own before it.
            if proxy_context is not None:
                with progress.step(Phase.PROXY):
                    await proxy_tls(writer, proxy, proxy_context)
        elif proxy is not None:
            with progress.step(Phase.PROXY):
                await open_tunnel(
                    reader,
                    writer,
                    proxy,
                    host=tunnel_host,
                    port=target.port,
                    target=target.authority,
                    proxy_context=proxy_context,
                )
        tls_info: TLSInfo | None = None
        if ssl_context is not None:
            with progress.step(Phase.TLS):
                await start_tls(writer, ssl_context, target.host, via=proxy)
            tls_info = describe_tls(writer.get_extra_info("ssl_object"))
    except BaseException:
        if writer is not None:
            writer.transport.abort()
        sock.close()
        raise
    return DialedConnection(
        reader=reader,
        writer=writer,
        timings=progress.timings,
        peer=PeerInfo(
            addresses=addresses,
            address=address,
            via_proxy=proxy.redacted() if proxy else None,
            tls=tls_info,
            tls_verified=tls.verify if ssl_context is not None else None,
            tcp_rtt_kernel_ms=kernel_rtt,
        ),
        host=target.host,
        port=target.port,
        secure=target.secure,
    )


# -- dns ----------------------------------------------------------------------------------------

_NO_RESOLVER_CODES = {
    getattr(socket, name)
    for name in ("EAI_AGAIN", "EAI_FAIL", "EAI_SYSTEM")
    if hasattr(socket, name)
}


async def _resolve(
    loop: asyncio.AbstractEventLoop,
    host: str,
    port: int,
    *,
    proxy: ProxyURL | None = None,
    family: int = socket.AF_UNSPEC,
) -> list[AddrInfo]:
    literal = _ip_literal_info(host, port, family)
    if literal is not None:
        return [literal]
    if family in _FAMILY_FLAGS and _ip_literal_info(host, port, socket.AF_UNSPEC) is not None:
        flag, wanted = _FAMILY_FLAGS[family]
        raise _no_address(
            f"{host} is not an {wanted} address, and {flag} allows only {wanted}", proxy
        )
    try:
        infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if family in _FAMILY_FLAGS and exc.errno not in _NO_RESOLVER_CODES:
            # Say whether the name lacks only this family (-6 on an IPv4-only name) or all.
            other = await _other_family(loop, host, port)
            if other:
                flag, wanted = _FAMILY_FLAGS[family]
                raise _no_address(
                    f"{host} has no {wanted} address ({flag}); it has {', '.join(other)}", proxy
                ) from exc
        if exc.errno in _NO_RESOLVER_CODES:
            kind, why = "no_resolver", "no DNS resolver answered (no network?)"
        else:
            kind, why = "nxdomain", "the name does not exist (NXDOMAIN)"
        if proxy is not None:
            raise ProxyUnreachable(
                f"cannot resolve proxy {proxy.redacted()}: {why}",
                phase=Phase.DNS,
                kind=f"proxy_{kind}",
            ) from exc
        raise DNSError(f"cannot resolve {host}: {why}", kind=kind) from exc
    except UnicodeError as exc:
        raise DNSError(f"cannot resolve {host}: not a valid host name", kind="nxdomain") from exc
    if not infos:
        raise DNSError(f"cannot resolve {host}: no addresses", kind="nxdomain")
    return infos


def _no_address(message: str, proxy: ProxyURL | None) -> DNSError | ProxyUnreachable:
    if proxy is not None:
        return ProxyUnreachable(
            f"cannot resolve proxy {proxy.redacted()}: {message}",
            phase=Phase.DNS,
            kind="proxy_no_address",
        )
    return DNSError(f"cannot resolve: {message}", kind="no_address")


async def _other_family(loop: asyncio.AbstractEventLoop, host: str, port: int) -> list[str]:
    """The addresses ``host`` has in any family (empty when it has none, or on any error)."""
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _ip_literal_info(host: str, port: int, family: int) -> AddrInfo | None:
    """The addrinfo of an IP literal, built without getaddrinfo: no lookup happens, and libc's
    first-call set-up (milliseconds) would otherwise be reported as DNS time."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 4 and family in (socket.AF_UNSPEC, socket.AF_INET):
        return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (str(ip), port))
    if ip.version == 6 and family in (socket.AF_UNSPEC, socket.AF_INET6):
        return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (str(ip), port, 0, 0))
    return None


def _format_address(sockaddr: tuple[Any, ...]) -> str:
    return authority(sockaddr[0], sockaddr[1])


# -- tcp ----------------------------------------------------------------------------------------


def _connect_error_kind(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError) or exc.errno == errno.ETIMEDOUT:
        return "timeout"
    if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
        return "unreachable"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    return "unreachable"


async def _connect_tcp(
    loop: asyncio.AbstractEventLoop,
    infos: list[AddrInfo],
    host: str,
    *,
    proxy: ProxyURL | None,
    failures: list[tuple[str, str]] | None = None,
) -> tuple[socket.socket, str]:
    """Try each address in order; return the first connected socket and its ``ip:port``.
    Each address that failed is added to ``failures`` with the reason (the errno's text)."""
    last_error: OSError | None = None
    for family, type_, proto, _name, sockaddr in infos:
        sock = socket.socket(family, type_, proto)
        try:
            sock.setblocking(False)
            # Nagle plus delayed ACK adds ~40 ms to small writes through proxies
            # (bench/proxy_write_stall.py shows it).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stamp_arrivals(sock)
            await loop.sock_connect(sock, sockaddr)
        except OSError as exc:
            sock.close()
            last_error = exc
            if failures is not None:
                why = os.strerror(exc.errno) if exc.errno else type(exc).__name__
                failures.append((_format_address(sockaddr), why))
            continue
        except BaseException:
            sock.close()
            raise
        return sock, _format_address(sockaddr)
    assert last_error is not None  # infos is never empty
    kind = _connect_error_kind(last_error)
    # asyncio puts "Connect call failed (addr)" in strerror; the errno's text says more.
    reason = os.strerror(last_error.errno) if last_error.errno else type(last_error).__name__
    tried = ", ".join(_format_address(info[4]) for info in infos)
    if proxy is not None:
        raise ProxyUnreachable(
            f"cannot connect to proxy {proxy.redacted()} ({tried}): {reason}",
            phase=Phase.TCP,
            kind=f"proxy_{kind}",
        ) from last_error
    raise ConnectError(f"cannot connect to {host} ({tried}): {reason}", kind=kind) from last_error


# struct tcp_info (linux/tcp.h): after eight __u8 fields come __u32 fields from byte 8 on, so
# tcpi_rtt (the smoothed RTT, microseconds) is the 16th __u32 at byte 68; tcpi_min_rtt (the
# windowed minimum, microseconds; Linux 4.6+) follows tcpi_total_retrans (100), four __u64
# counters (104-135), tcpi_segs_out, tcpi_segs_in and tcpi_notsent_bytes (136-147), at byte 148.
# Checked with offsetof() against the headers of Linux 6.18 (sizeof 232) and against `ss -ti`.
_TCPI_RTT = struct.Struct("=I")
_TCPI_RTT_OFFSET = 68
_TCPI_MIN_RTT_OFFSET = 148
#: Asked-for size: anything up to the kernel's own struct; it returns what it has.
_TCP_INFO_BUFFER = 256


def parse_tcp_info_rtt_ms(info: bytes) -> float | None:
    """The kernel RTT in a ``TCP_INFO`` answer: ``tcpi_min_rtt`` when the struct is long enough
    to hold it and has a sample, else ``tcpi_rtt``; None when the struct is too short or the
    kernel has no RTT sample yet."""
    if len(info) >= _TCPI_MIN_RTT_OFFSET + _TCPI_RTT.size:
        min_rtt: int = _TCPI_RTT.unpack_from(info, _TCPI_MIN_RTT_OFFSET)[0]
        # The kernel starts tcpi_min_rtt at ~0U: no sample yet.
        if min_rtt != 0xFFFFFFFF:
            return min_rtt / 1000.0
    if len(info) >= _TCPI_RTT_OFFSET + _TCPI_RTT.size:
        rtt: int = _TCPI_RTT.unpack_from(info, _TCPI_RTT_OFFSET)[0]
        # tcpi_rtt is srtt_us >> 3, 0 until the first sample.
        return rtt / 1000.0 if rtt else None
    return None


def kernel_rtt_ms(sock: socket.socket) -> float | None:
    """The kernel's RTT estimate for ``sock`` in ms (see :attr:`PeerInfo.tcp_rtt_kernel_ms`)."""
    option = getattr(socket, "TCP_INFO", None)
    if option is None or not sys.platform.startswith("linux"):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, option, _TCP_INFO_BUFFER)
    except OSError:
        return None
    return parse_tcp_info_rtt_ms(info)


__all__ = [
    "AddressReport",
    "DialedConnection",
    "PeerInfo",
    "PhaseTimings",
    "Target",
    "address_family",
    "address_observer",
    "close_writer",
    "dial",
    "parse_target",
    "release_frames",
]
