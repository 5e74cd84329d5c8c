"""TLS policy resolution (pure): verify or not, against which CA, chosen by which layer, and why.

No file reads: whether the system has a trust store is passed in by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from mpnet.core.proxy import Layer, TraceEntry


@dataclass(frozen=True, slots=True)
class TLSSetting:
    """What one layer says about TLS. Unset fields defer to lower layers.

    ``verify=False`` turns verification off (always with a warning); ``ca_bundle`` is a PEM file
    and ``ca_dir`` an OpenSSL hashed directory. ``origin`` says where it was written.
    """

    verify: bool | None = None
    ca_bundle: str | None = None
    ca_dir: str | None = None
    reason: str | None = None
    origin: str = ""


@dataclass(frozen=True, slots=True)
class ProxyCASetting:
    """``proxy_ssl: {ca_bundle: PATH}``: the PEM bundle an ``https://`` proxy's own certificate
    is checked against, apart from the exchanges' (curl's ``--proxy-cacert``). ``origin`` says
    where it was written (``mpnet.yaml:4 proxy_ssl``)."""

    ca_bundle: str
    origin: str = ""


CAKind = Literal["file", "dir", "system", "certifi", "none"]


#: Starts the ``reason`` of :meth:`TLSDecision.for_proxy`, so messages can say "proxy CA".
PROXY_CA_REASON = "proxy CA from "

#: TLS layers are traced exactly like proxy layers.
TLSTraceEntry = TraceEntry


@dataclass(frozen=True, slots=True)
class TLSDecision:
    """The outcome of :func:`resolve_tls`.

    ``ca`` is a path, ``"system"`` or ``"certifi"`` (``None`` when verification is off).
    ``warnings`` is never empty when ``verify`` is False: every surface shows it.

    ``proxy_ca`` is the PEM bundle an ``https://`` proxy's own certificate is checked against
    (curl's ``--proxy-cacert``: ``--proxy-ca-bundle`` or ``proxy_ssl.ca_bundle``), chosen by
    ``proxy_ca_layer`` (``proxy_ca_origin`` names the setting); None means the proxy is checked
    like the target. :meth:`for_proxy` is the policy of the proxy's handshake.
    """

    verify: bool
    ca: str | None
    ca_kind: CAKind
    layer: Layer
    reason: str
    trace: tuple[TLSTraceEntry, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())
    proxy_ca: str | None = None
    proxy_ca_layer: Layer | None = None
    proxy_ca_origin: str = ""

    def for_proxy(self) -> TLSDecision:
        """The policy of an ``https://`` proxy's own TLS handshake: verify against
        ``proxy_ca`` when one was given (whatever the target's policy, as curl's
        ``--proxy-cacert`` is apart from ``--insecure``), else this same decision."""
        if self.proxy_ca is None:
            return self
        layer: Layer = self.proxy_ca_layer or "cli"
        return TLSDecision(
            verify=True,
            ca=self.proxy_ca,
            ca_kind="file",
            layer=layer,
            reason=f"{PROXY_CA_REASON}{self.proxy_ca_origin or layer + ' layer'}",
        )

    def proxy_store(self) -> str:
        """Words for the store that checks an https proxy's certificate."""
        if self.proxy_ca is not None:
            origin = self.proxy_ca_origin or f"{self.proxy_ca_layer} layer"
            return f"the proxy CA bundle {self.proxy_ca} (from {origin})"
        return f"the target's store ({store_words(self)})"

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``ssl`` shape ``{"verify", "ca", "layer", "reason"}`` (docs/architecture.md,
        "JSON contract") plus warnings and the trace of the layers consulted; ``proxy_ca`` and
        its layer when one is set."""
        shape: dict[str, Any] = {
            "verify": self.verify,
            "ca": self.ca,
            "layer": self.layer,
            "reason": self.reason,
            "warnings": list(self.warnings),
            "trace": [entry.to_dict() for entry in self.trace],
        }
        if self.proxy_ca is not None:
            shape["proxy_ca"] = {
                "ca": self.proxy_ca,
                "layer": self.proxy_ca_layer,
                "origin": self.proxy_ca_origin,
            }
        return shape


def store_words(decision: TLSDecision) -> str:
    """``CA bundle /x.pem (cli layer)``, ``system trust store``, ``verification off``..."""
    if not decision.verify:
        return "verification off"
    if decision.ca_kind == "file":
        return f"CA bundle {decision.ca} ({decision.layer} layer)"
    if decision.ca_kind == "dir":
        return f"CA directory {decision.ca} ({decision.layer} layer)"
    if decision.ca_kind == "certifi":
        return "certifi's CA bundle"
    return "system trust store"


def with_proxy_ca(
    decision: TLSDecision, layers: Sequence[tuple[Layer, str | None, str]]
) -> TLSDecision:
    """``decision`` with the proxy CA of the highest layer in ``layers`` that names one
    (``(layer, path or None, origin)``, highest first); unchanged when none does."""
    for layer, path, origin in layers:
        if path:
            return replace(decision, proxy_ca=path, proxy_ca_layer=layer, proxy_ca_origin=origin)
    return decision


def resolve_tls(
    *,
    cli: TLSSetting | None = None,
    exchange: TLSSetting | None = None,
    service: TLSSetting | None = None,
    env: Mapping[str, str] | None = None,
    system_store: bool,
) -> TLSDecision:
    """Decide the TLS policy of one connection.

    Precedence cli > exchange > service > env > default. ``verify`` is taken from the highest
    layer that sets it (a CA bundle implies ``verify: true``); when verifying, the CA comes from
    the highest layer that names one, then ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``, then the system
    store (or certifi when ``system_store`` is False). Verification off always carries a warning.

    ``system_store`` says whether this machine has a system trust store; core does no I/O, so
    the caller finds out (:func:`mpnet.config.layers.system_trust_store_available`).
    """
    env = env or {}
    env_setting = None
    if env.get("SSL_CERT_FILE") or env.get("SSL_CERT_DIR"):
        env_setting = TLSSetting(
            ca_bundle=env.get("SSL_CERT_FILE") or None,
            ca_dir=env.get("SSL_CERT_DIR") or None,
            origin="SSL_CERT_FILE" if env.get("SSL_CERT_FILE") else "SSL_CERT_DIR",
        )
    layers: list[tuple[Layer, TLSSetting | None]] = [
        ("cli", cli),
        ("exchange", exchange),
        ("service", service),
        ("env", env_setting),
    ]

    def has_ca(s: TLSSetting | None) -> bool:
        return s is not None and bool(s.ca_bundle or s.ca_dir)

    def sets_verify(s: TLSSetting | None) -> bool:
        return s is not None and (s.verify is not None or has_ca(s))

    verify_layer = next(((name, s) for name, s in layers if sets_verify(s)), None)
    verify = True if verify_layer is None else verify_layer[1].verify is not False  # type: ignore[union-attr]

    winner: Layer
    trace: list[TLSTraceEntry] = []
    if not verify:
        assert verify_layer is not None and verify_layer[1] is not None
        winner, setting = verify_layer[0], verify_layer[1]
        ca: str | None = None
        ca_kind: CAKind = "none"
        reason = setting.reason or _origin_text(winner, setting)
    else:
        ca_layer = next(((name, s) for name, s in layers if has_ca(s)), None)
        if ca_layer is not None:
            winner, setting = ca_layer[0], ca_layer[1]  # type: ignore[assignment]
            assert setting is not None
            ca = setting.ca_bundle or setting.ca_dir
            ca_kind = "file" if setting.ca_bundle else "dir"
            reason = setting.reason or f"CA from {_origin_text(winner, setting)}"
        else:
            winner = "default"
            ca, ca_kind = ("system", "system") if system_store else ("certifi", "certifi")
            reason = (
                "system trust store"
                if system_store
                else "certifi bundle (the system has no trust store)"
            )
            # A layer may still have said `verify: true` explicitly; it wins in name only.
            if verify_layer is not None:
                winner = verify_layer[0]
                reason = (verify_layer[1].reason if verify_layer[1] else None) or (
                    f"verify: true at {winner} layer; {reason}"
                )

    for name, s in layers:
        if s is None or not sets_verify(s):
            trace.append(TLSTraceEntry(layer=name, value=None, verdict="unset"))
            continue
        value = _setting_text(s)
        verdict = "won" if name == winner else "shadowed"
        trace.append(TLSTraceEntry(layer=name, value=value, verdict=verdict, detail=s.origin))
    default_value = "system" if system_store else "certifi"
    trace.append(
        TLSTraceEntry(
            layer="default",
            value=f"verify with {default_value}",
            verdict="won" if winner == "default" else "shadowed",
        )
    )
    warnings: tuple[str, ...] = ()
    if not verify:
        warnings = (
            f"TLS certificate verification is OFF ({winner} layer: {reason}); "
            "the connection can be intercepted without any sign",
        )
    return TLSDecision(
        verify=verify,
        ca=ca,
        ca_kind=ca_kind,
        layer=winner,
        reason=reason,
        trace=tuple(trace),
        warnings=warnings,
    )


def _setting_text(s: TLSSetting) -> str:
    if s.verify is False:
        return "verify: false"
    parts = []
    if s.ca_bundle:
        parts.append(f"ca_bundle {s.ca_bundle}")
    if s.ca_dir:
        parts.append(f"ca_dir {s.ca_dir}")
    return ", ".join(parts) or "verify: true"


def _origin_text(layer: Layer, s: TLSSetting) -> str:
    return s.origin or f"{layer} layer"
