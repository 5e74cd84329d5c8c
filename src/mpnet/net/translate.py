"""aiohttp, aiohttp-socks, python-socks, ssl and socket exceptions -> :mod:`mpnet.errors`.

The one place where what an aiohttp session raised becomes an mpnet error naming its phase,
most specific class first (:func:`translate_client_error`), and where a request's exception is
told apart from a bug (:func:`is_network_error`). The TLS errors themselves are built by
:func:`mpnet.net.tls.tls_error`, which :func:`~mpnet.net.dial.dial` uses too. aiohttp is
imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

from mpnet.core.proxy_url import ProxyURL, redact_url_text
from mpnet.errors import (
    ConnectError,
    DNSError,
    MpnetError,
    Phase,
    ProbeTimeout,
    ProtocolError,
    ProxyAuthError,
    ProxyDenied,
    ProxyUnreachable,
    UsageError,
)
from mpnet.net.tls import tls_error


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
            if proxy is None:
                return ProxyAuthError(f"proxy {who} refused CONNECT to {host}: {shown_status}")
            # Worded as dial's own CONNECT refusal, with the proxy's answer kept as evidence
            # (imported here, as aiohttp is: importing this module stays free of python-socks).
            from mpnet.net.dial import PLAIN_SCHEMES, SECURE_SCHEMES
            from mpnet.net.tunnel import authority, proxy_auth_error

            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            default_port = SECURE_SCHEMES.get(scheme) or PLAIN_SCHEMES.get(scheme, 80)
            return proxy_auth_error(
                proxy,
                f"CONNECT {authority(host, parts.port or default_port)}",
                shown_status,
                status=exc.status,
                headers={k.lower(): v for k, v in (exc.headers or {}).items()},
                body=b"",
                phase=Phase.PROXY,
            )
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
    if isinstance(exc, EOFError | ConnectionResetError) and raised_by_python_socks(exc):
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
        return tls_error(exc.certificate_error, f"{host}{via}")
    if isinstance(exc, aiohttp.ClientSSLError):
        return tls_error(exc.os_error, f"{host}{via}")
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return tls_error(exc, f"{host}{via}")
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


def raised_by_python_socks(exc: BaseException) -> bool:
    """True when a frame of python-socks raised ``exc`` (a SOCKS server hanging up shows as a
    bare EOFError or ConnectionResetError, with nothing else to tell it from the target's)."""
    traceback = exc.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_globals.get("__name__", "").startswith("python_socks"):
            return True
        traceback = traceback.tb_next
    return False


def is_network_error(exc: BaseException) -> bool:
    """True for what a request can raise because of the network (and
    :func:`translate_client_error` translates); anything else is a bug and is left alone."""
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


__all__ = ["is_network_error", "translate_client_error"]
