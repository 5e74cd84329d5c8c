"""The proxy phase of a dial: an HTTP CONNECT tunnel or a SOCKS4/SOCKS5 negotiation, on a TCP
connection to the proxy that :func:`~mpnet.net.dial.dial` opened and timed.

:func:`open_tunnel` runs the handshake (after TLS to the proxy for an ``https://`` proxy) and
turns every refusal into a :class:`~mpnet.errors.ProxyError` that names the proxy (redacted)
and the target: 401/407 and RFC 1929 failures are :class:`~mpnet.errors.ProxyAuthError`, other
refusals :class:`~mpnet.errors.ProxyDenied` with the start of the proxy's explanation. On return
the stream reaches the target; what follows (TLS to the target) is the dial's next phase.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import Mapping

# Private python-socks names, on purpose: its public API (Proxy.connect, Proxy.from_url) opens
# its own TCP connection and runs the SOCKS negotiation in the same call, so tcp and proxy could
# not be timed apart. Its connectors take an already-connected stream, which keeps tcp and proxy
# separately timed phases. pyproject.toml bounds python-socks to the versions tested with these
# names, and tests/net/test_python_socks_internals.py fails with a clear message if they move or
# their signatures change. Imported here, not in the proxy phase, so the import is not proxy time.
from python_socks import ProxyType
from python_socks._connectors.factory_async import create_connector
from python_socks._protocols.errors import ReplyError
from python_socks.async_.asyncio._resolver import Resolver

from mpnet.core.proxy_url import ProxyURL
from mpnet.errors import MpnetError, Phase, ProxyAuthError, ProxyDenied
from mpnet.net.tls import tls_error

#: An HTTP proxy's answer to CONNECT larger than this is not an answer to CONNECT.
MAX_CONNECT_RESPONSE = 64 * 1024


def authority(host: str, port: int) -> str:
    """``host:port``, with an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def open_tunnel(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    proxy: ProxyURL,
    *,
    host: str,
    port: int,
    target: str,
    proxy_context: ssl.SSLContext | None,
) -> None:
    """Ask ``proxy`` (connected on ``reader``/``writer``) for a tunnel to ``host``:``port``.

    Args:
        host: what the proxy is asked to reach: the target's name, or its address when mpnet
            resolved it (socks4, socks5).
        port: the target's port.
        target: the target as messages name it (``host:port`` of the URL).
        proxy_context: the context of an ``https://`` proxy's own TLS, else None.

    Raises:
        TLSError: an ``https://`` proxy's handshake failed (phase ``proxy``).
        ProxyAuthError: the proxy wants credentials or refused them.
        ProxyDenied: the proxy refused the tunnel, answered something else than its protocol,
            or closed the connection during the handshake.
    """
    try:
        if proxy_context is not None:
            await proxy_tls(writer, proxy, proxy_context)
        if proxy.is_socks:
            await _socks_handshake(reader, writer, proxy, host, port)
        else:
            await _http_connect(reader, writer, proxy, authority(host, port))
    except MpnetError:
        raise
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise ProxyDenied(
            f"proxy {proxy.redacted()} closed the connection during the "
            f"{'SOCKS' if proxy.is_socks else 'CONNECT'} handshake to {target}",
            kind="proxy_closed",
        ) from exc


def proxy_auth_error(
    proxy: ProxyURL,
    request: str,
    shown: str,
    *,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    phase: Phase | None = None,
) -> ProxyAuthError:
    """A proxy's 401 or 407 to ``request`` (``CONNECT host:port``, or the URL of an
    absolute-form request): it wants credentials, or rejected the ones it was given."""
    given = "rejected the credentials of" if proxy.username else "wants credentials for"
    return ProxyAuthError(
        f"proxy {proxy.redacted()} {given} {request}: {shown}",
        phase=phase,
        status=status,
        headers=headers,
        body=body,
    )


async def proxy_tls(
    writer: asyncio.StreamWriter, proxy: ProxyURL, proxy_context: ssl.SSLContext
) -> None:
    """The TLS handshake with an ``https://`` proxy itself (phase ``proxy``).

    Raises:
        TLSError: the proxy's certificate was refused or the handshake failed.
        ProxyDenied: the proxy closed the connection during the handshake.
    """
    try:
        await writer.start_tls(proxy_context, server_hostname=proxy.host)
    except ssl.SSLError as exc:
        raise tls_error(exc, f"proxy {proxy.host}", phase=Phase.PROXY) from exc
    except (OSError, asyncio.IncompleteReadError) as exc:
        raise ProxyDenied(
            f"proxy {proxy.redacted()} closed the connection during its TLS handshake",
            kind="proxy_closed",
        ) from exc


async def _http_connect(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proxy: ProxyURL, target: str
) -> None:
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if proxy.username is not None:
        secret = f"{proxy.username}:{proxy.password or ''}".encode()
        lines.append(f"Proxy-Authorization: Basic {base64.b64encode(secret).decode('ascii')}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_CONNECT_RESPONSE:
        raise ProxyDenied(f"proxy {proxy.redacted()} sent an oversized answer to CONNECT")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        raise ProxyDenied(
            f"proxy {proxy.redacted()} answered CONNECT with {status_line[:80]!r}, not HTTP",
            kind="proxy_protocol",
        ) from None
    reason = parts[2] if len(parts) > 2 else ""
    if 200 <= status < 300:
        return
    shown = f"{status} {reason}".strip()
    headers = _header_fields(head)
    # The refusal's page says why (Squid's ERR_ACCESS_DENIED...): keep its start.
    body = await _read_refusal_body(reader, headers)
    if status in (401, 407):
        # tinyproxy answers wrong credentials with 401 instead of 407: both mean authentication.
        raise proxy_auth_error(
            proxy, f"CONNECT {target}", shown, status=status, headers=headers, body=body
        )
    if _could_not_reach(status, headers):
        # Squid's ERR_CONNECT_FAIL / ERR_DNS_FAIL, a 502 Bad Gateway: the proxy tried and
        # failed to reach the target; it did not deny access.
        squid = _field(headers, "x-squid-error")
        raise ProxyDenied(
            f"proxy {proxy.redacted()} could not reach {target}: {shown}"
            + (f" ({squid})" if squid else ""),
            kind="proxy_upstream",
            status=status,
            headers=headers,
            body=body,
        )
    raise ProxyDenied(
        f"proxy {proxy.redacted()} refused CONNECT {target}: {shown}",
        status=status,
        headers=headers,
        body=body,
    )


#: Squid's X-Squid-Error names that mean it could not reach the target.
SQUID_UPSTREAM_ERRORS = frozenset(
    {
        "ERR_CONNECT_FAIL",
        "ERR_DNS_FAIL",
        "ERR_READ_TIMEOUT",
        "ERR_LIFETIME_EXP",
        "ERR_GATEWAY_FAILURE",
        "ERR_CANNOT_FORWARD",
        "ERR_READ_ERROR",
        "ERR_ZERO_SIZE_OBJECT",
    }
)


def _field(headers: dict[str, str], name: str) -> str:
    return next((v for k, v in headers.items() if k.lower() == name), "")


def _could_not_reach(status: int, headers: dict[str, str]) -> bool:
    """A CONNECT refusal that says the proxy could not reach the target (502/503/504, or a
    Squid upstream error name), rather than that its policy denies it."""
    squid = _field(headers, "x-squid-error").split(" ", 1)[0].upper()
    if squid:
        return squid in SQUID_UPSTREAM_ERRORS
    return status in (502, 503, 504)


def _header_fields(head: bytes) -> dict[str, str]:
    """The header fields of an HTTP response head (names as sent; a repeated field's values
    joined with ", ", as RFC 9110 allows)."""
    fields: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip():
            key = next((k for k in fields if k.lower() == name.strip().lower()), name.strip())
            fields[key] = f"{fields[key]}, {value.strip()}" if key in fields else value.strip()
    return fields


REFUSAL_BODY_LIMIT = 500
#: How long a refusal's body may take to arrive once its head is in.
REFUSAL_BODY_WAIT = 0.5


async def _read_refusal_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    """The start of a refusal's body: at most :data:`REFUSAL_BODY_LIMIT` bytes, no more than its
    Content-Length, and what arrives within :data:`REFUSAL_BODY_WAIT` (a proxy that sends less
    than it promised must not turn its refusal into a timeout)."""
    length = next((v for k, v in headers.items() if k.lower() == "content-length"), "")
    want = min(int(length), REFUSAL_BODY_LIMIT) if length.strip().isdigit() else 0
    body = b""
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout(REFUSAL_BODY_WAIT):
            while len(body) < want:
                chunk = await reader.read(want - len(body))
                if not chunk:
                    break
                body += chunk
    return body


_SOCKS5_AUTH_VERSION = b"\x01"  # RFC 1929 username/password sub-negotiation
_SOCKS5_NO_AUTH_GREETING = b"\x05\x01\x00"  # RFC 1928: version 5, one method, "no auth"


class _StreamAdapter:
    """python-socks' stream interface over an asyncio stream pair (plain or TLS)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.last_written = b""

    async def write(self, data: bytes) -> None:
        self.last_written = data
        self._writer.write(data)
        await self._writer.drain()

    async def read(self, max_bytes: int = 65536) -> bytes:
        return await self._reader.read(max_bytes)

    async def read_exactly(self, n: int) -> bytes:
        return await self._reader.readexactly(n)

    async def close(self) -> None:
        self._writer.transport.abort()


async def _socks_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    proxy: ProxyURL,
    host: str,
    port: int,
) -> None:
    proxy_type = ProxyType.SOCKS4 if proxy.scheme.startswith("socks4") else ProxyType.SOCKS5
    connector = create_connector(
        proxy_type=proxy_type,
        username=proxy.username,
        password=proxy.password,
        rdns=proxy.remote_dns,
        resolver=Resolver(loop=asyncio.get_running_loop()),
    )
    stream = _StreamAdapter(reader, writer)
    shown_target = authority(host, port)
    try:
        await connector.connect(stream=stream, host=host, port=port)  # type: ignore[arg-type]
    except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
        if proxy_type is ProxyType.SOCKS5 and stream.last_written[:1] == _SOCKS5_AUTH_VERSION:
            # RFC 1929: a server that refuses the credentials closes the connection; some
            # (pproxy) do so without sending the failure reply first.
            raise ProxyAuthError(
                f"SOCKS proxy {proxy.redacted()} rejected the credentials "
                "(it closed the connection after receiving them)"
            ) from exc
        if stream.last_written == _SOCKS5_NO_AUTH_GREETING:
            # RFC 1928 wants a 0xFF "no acceptable methods" reply; some servers (pproxy) that
            # require a password just close instead.
            raise ProxyAuthError(
                f"SOCKS proxy {proxy.redacted()} wants credentials (it closed the connection "
                "when offered no authentication)"
            ) from exc
        raise
    except ReplyError as exc:
        text = str(exc)
        if exc.error_code is None and "authentication" in text.lower():
            given = "rejected the credentials" if proxy.username else "wants credentials"
            raise ProxyAuthError(f"SOCKS proxy {proxy.redacted()} {given}: {text}") from exc
        raise ProxyDenied(
            f"SOCKS proxy {proxy.redacted()} refused to connect to {shown_target}: {text}"
        ) from exc


__all__ = [
    "MAX_CONNECT_RESPONSE",
    "REFUSAL_BODY_LIMIT",
    "REFUSAL_BODY_WAIT",
    "authority",
    "open_tunnel",
    "proxy_tls",
]
