"""TLS for every connection mpnet opens: contexts, the handshake, and what it showed or why it
failed.

- The one place an :class:`ssl.SSLContext` is built from a :class:`TLSDecision`
  (:func:`context_for`, cached per policy).
- The one table that turns OpenSSL's certificate verification codes into mpnet's error kinds
  (:data:`VERIFY_KINDS`), and the one builder of :class:`~mpnet.errors.TLSError` from an ssl
  exception (:func:`tls_error`), used by :func:`~mpnet.net.dial.dial` and by the aiohttp error
  translation (:mod:`mpnet.net.translate`) alike.
- The timed dial's handshake (:func:`start_tls`) and its description (:func:`describe_tls`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from mpnet.core.proxy_url import ProxyURL
from mpnet.core.result import TLSInfo
from mpnet.core.tls import PROXY_CA_REASON, TLSDecision
from mpnet.errors import ConfigError, Phase, TLSError

#: ALPN offered by the timed HTTP/1.1 exchange.
HTTP_ALPN: tuple[str, ...] = ("http/1.1",)
#: Distinct contexts kept; a long-running process sees a handful of TLS decisions, not more.
CONTEXT_CACHE_SIZE = 32


#: OpenSSL ``X509_V_ERR_*`` codes (``SSLCertVerificationError.verify_code``) -> TLSError kind.
#: Codes not listed are ``untrusted``.
VERIFY_KINDS: Mapping[int, str] = {
    9: "not_yet_valid",  # X509_V_ERR_CERT_NOT_YET_VALID
    10: "expired",  # X509_V_ERR_CERT_HAS_EXPIRED
    18: "untrusted",  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
    19: "untrusted",  # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
    20: "untrusted",  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: "untrusted",  # X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
    62: "hostname_mismatch",  # X509_V_ERR_HOSTNAME_MISMATCH
    64: "hostname_mismatch",  # X509_V_ERR_IP_ADDRESS_MISMATCH
}


def verify_kind(exc: ssl.SSLCertVerificationError) -> str:
    """The TLSError kind of a certificate verification failure (``untrusted`` when unknown)."""
    code = getattr(exc, "verify_code", None)
    return VERIFY_KINDS.get(code, "untrusted") if isinstance(code, int) else "untrusted"


def tls_error(exc: BaseException, peer: str, *, phase: Phase | None = None) -> TLSError:
    """The :class:`~mpnet.errors.TLSError` for an ssl exception raised by a handshake with
    ``peer`` (words naming who, e.g. ``proxy 10.0.0.1`` or ``host (through proxy ...)``).

    A refused certificate gives its verification kind (:func:`verify_kind`) and, when the
    handshake ran on a context of :func:`build_ssl_context`, its issuer; anything else is kind
    ``handshake``. ``phase`` defaults to ``tls`` (``proxy`` for an https proxy's handshake).
    """
    # ssl.CertificateError is the same class as SSLCertVerificationError since Python 3.7.
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = getattr(exc, "verify_message", None) or str(exc)
        issuer = refused_certificate_issuer(exc)
        issued = f" (issuer: {issuer})" if issuer else ""
        return TLSError(
            f"certificate of {peer} refused: {reason}{issued}",
            phase=phase,
            kind=verify_kind(exc),
            issuer=issuer,
        )
    reason = getattr(exc, "reason", None) or str(exc)
    return TLSError(f"TLS handshake with {peer} failed: {reason}", phase=phase, kind="handshake")


async def start_tls(
    writer: asyncio.StreamWriter,
    context: ssl.SSLContext,
    host: str,
    *,
    via: ProxyURL | None,
) -> None:
    """Upgrade a dialed stream to TLS with ``host`` (through the tunnel of ``via``, if any).

    Raises:
        TLSError: the certificate was refused, the handshake failed, or the peer hung up.
    """
    where = f" (through proxy {via.redacted()})" if via else ""
    try:
        await writer.start_tls(context, server_hostname=host)
    except ssl.SSLError as exc:
        raise tls_error(exc, f"{host}{where}", phase=Phase.TLS) from exc
    except TypeError as exc:
        # Python 3.11's asyncio, TLS inside an https:// proxy's TLS: a refused handshake makes
        # the outer transport call SSLProtocol._abort(exc), which takes no argument; the
        # handshake's own error is the TypeError's context.
        refused = exc.__context__
        if isinstance(refused, ssl.SSLError):
            raise tls_error(refused, f"{host}{where}", phase=Phase.TLS) from refused
        raise
    except (OSError, asyncio.IncompleteReadError) as exc:
        raise TLSError(
            f"TLS handshake with {host}{where} failed: the connection was closed "
            f"({exc.__class__.__name__})",
            kind="handshake",
        ) from exc


def describe_tls(sslobj: ssl.SSLObject | ssl.SSLSocket | None) -> TLSInfo | None:
    """Version, cipher, ALPN and certificate facts of an established TLS session.

    The certificate is read in binary form so that it shows even when verification is off.
    """
    if sslobj is None:
        return None
    cipher = sslobj.cipher()
    der = None
    with contextlib.suppress(ValueError, ssl.SSLError):
        der = sslobj.getpeercert(binary_form=True)
    cert = certificate_facts(der) if der else None
    return TLSInfo(
        version=sslobj.version(),
        cipher=cipher[0] if cipher else None,
        alpn=sslobj.selected_alpn_protocol(),
        cert_subject=cert.subject if cert else None,
        cert_issuer=cert.issuer if cert else None,
        cert_not_after=cert.not_after if cert else None,
        cert_days_left=cert.days_left if cert else None,
    )


_ENCODING_DER = 2  # _ssl.ENCODING_DER, for the private Certificate.public_bytes
_REFUSED_DER = "mpnet_refused_certificate_der"


class _RefusalRecordingSSLObject(ssl.SSLObject):
    """An SSLObject that, when verification refuses the peer's certificate, attaches that
    certificate (DER) to the exception before re-raising it.

    Installed once on every context :func:`build_ssl_context` makes, so a shared context is never
    mutated per connection. After a failed handshake ``getpeercert()`` refuses and asyncio drops
    the transport, yet a report should still name who issued the refused certificate; the
    exception is the one object that reaches ``start_tls``'s caller (asyncio's sslproto hands
    this very exception to the handshake waiter), and it keeps bytes, not this SSLObject.
    """

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except ssl.SSLCertVerificationError as exc:
            der = _unverified_leaf_der(self)
            if der is not None:
                setattr(exc, _REFUSED_DER, der)
            raise


def _unverified_leaf_der(sslobj: ssl.SSLObject) -> bytes | None:
    # The unverified chain is public from Python 3.13 (DER bytes), on the private _sslobj
    # before (Certificate objects).
    chain_of = getattr(sslobj, "get_unverified_chain", None) or getattr(
        getattr(sslobj, "_sslobj", None), "get_unverified_chain", None
    )
    try:
        chain = chain_of() if chain_of is not None else None
        if not chain:
            return None
        leaf = chain[0]
        der = leaf if isinstance(leaf, bytes) else leaf.public_bytes(_ENCODING_DER)
    except (ValueError, ssl.SSLError, AttributeError, TypeError):
        return None
    return der if isinstance(der, bytes) else None


def refused_certificate_der(exc: BaseException) -> bytes | None:
    """The certificate (DER) that verification refused in ``exc``, when the handshake ran on a
    context from :func:`build_ssl_context`; else None."""
    der = getattr(exc, _REFUSED_DER, None)
    return der if isinstance(der, bytes) else None


def refused_certificate_issuer(exc: BaseException) -> str | None:
    """The issuer (RFC 4514) of the certificate that verification refused in ``exc``, or None."""
    der = refused_certificate_der(exc)
    facts = certificate_facts(der) if der is not None else None
    return facts.issuer if facts else None


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """What a report says about a certificate: subject and issuer (RFC 4514), expiry."""

    subject: str
    issuer: str
    not_after: str
    days_left: int


def certificate_facts(der: bytes) -> CertificateFacts | None:
    """Subject, issuer and expiry of a DER certificate; None when it cannot be parsed."""
    try:
        from cryptography import x509
    except ImportError:  # pragma: no cover - trustme depends on cryptography
        return None
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    not_after = cert.not_valid_after_utc
    return CertificateFacts(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_after=not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        days_left=(not_after - dt.datetime.now(dt.UTC)).days,
    )


def build_ssl_context(decision: TLSDecision, *, alpn: list[str] | None = None) -> ssl.SSLContext:
    """Build a client context that does exactly what ``decision`` says.

    Raises:
        ConfigError: the CA bundle or directory cannot be loaded (names the path).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.sslobject_class = _RefusalRecordingSSLObject
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
        if decision.reason.startswith(PROXY_CA_REASON):
            origin = decision.reason.removeprefix(PROXY_CA_REASON)
            raise ConfigError(
                f"cannot load proxy CA {decision.ca} ({origin}): {_ca_problem(exc)}"
            ) from exc
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
