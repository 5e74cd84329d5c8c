"""The one place an :class:`ssl.SSLContext` is built from a :class:`TLSDecision`."""

from __future__ import annotations

import ssl

from mpnet.core.tls import TLSDecision
from mpnet.errors import ConfigError


def system_trust_store_available() -> bool:
    """True when OpenSSL's default verify paths hold a CA file or a non-empty CA directory."""
    import os

    paths = ssl.get_default_verify_paths()
    if paths.cafile and os.path.isfile(paths.cafile):
        return True
    capath = paths.capath
    if not (capath and os.path.isdir(capath)):
        return False
    with os.scandir(capath) as entries:
        return any(True for _ in entries)


def build_ssl_context(decision: TLSDecision, *, alpn: list[str] | None = None) -> ssl.SSLContext:
    """Build a client context that does exactly what ``decision`` says.

    Raises:
        ConfigError: the CA bundle or directory cannot be loaded (names the path).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if not decision.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    try:
        if decision.ca_kind == "file":
            ctx.load_verify_locations(cafile=decision.ca)
        elif decision.ca_kind == "dir":
            ctx.load_verify_locations(capath=decision.ca)
        elif decision.ca_kind == "certifi":
            import certifi

            ctx.load_verify_locations(cafile=certifi.where())
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    except (OSError, ssl.SSLError) as exc:
        where = f" (chosen by {decision.layer} layer)" if decision.layer != "default" else ""
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise ConfigError(f"cannot load CA {decision.ca}{where}: {reason}") from exc
    return ctx
