"""The one place an :class:`ssl.SSLContext` is built from a :class:`TLSDecision`."""

from __future__ import annotations

import ssl
import threading
from collections import OrderedDict

from mpnet.core.tls import TLSDecision
from mpnet.errors import ConfigError

#: ALPN offered by the timed HTTP/1.1 exchange.
HTTP_ALPN: tuple[str, ...] = ("http/1.1",)
#: Distinct contexts kept; a long-running process sees a handful of TLS decisions, not more.
CONTEXT_CACHE_SIZE = 32


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
        raise ConfigError(f"cannot load CA {decision.ca}{where}: {_ca_problem(exc)}") from exc
    return ctx


def _ca_problem(exc: OSError) -> str:
    """What is wrong with a CA file, in words rather than OpenSSL's."""
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "NO_CERTIFICATE_OR_CRL_FOUND":
            return (
                "not a PEM bundle: no -----BEGIN CERTIFICATE----- block in it (a DER file "
                "converts with `openssl x509 -inform der`)"
            )
        return "a certificate in it is damaged (not valid PEM)"
    return (exc.strerror or str(exc)).lower()


_ContextKey = tuple[bool, str, str | None, tuple[str, ...]]
_contexts: OrderedDict[_ContextKey, ssl.SSLContext] = OrderedDict()
_contexts_lock = threading.Lock()


def context_for(decision: TLSDecision, *, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """The shared client context of ``decision`` and ``alpn``, built on first use.

    Keyed by what the context is made of (verify, CA kind and path, ALPN), not by the decision's
    trace, so every connection with the same policy shares one context; at most
    :data:`CONTEXT_CACHE_SIZE` are kept (least recently used dropped first).

    Raises:
        ConfigError: the CA bundle or directory cannot be loaded (names the path).
    """
    key: _ContextKey = (decision.verify, decision.ca_kind, decision.ca, tuple(alpn))
    with _contexts_lock:
        context = _contexts.get(key)
        if context is not None:
            _contexts.move_to_end(key)
            return context
    context = build_ssl_context(decision, alpn=list(alpn) or None)
    with _contexts_lock:
        context = _contexts.setdefault(key, context)
        _contexts.move_to_end(key)
        while len(_contexts) > CONTEXT_CACHE_SIZE:
            _contexts.popitem(last=False)
    return context


def clear_context_cache() -> None:
    """Forget every cached context (a CA bundle changed on disk, or a test wants a fresh start)."""
    with _contexts_lock:
        _contexts.clear()
