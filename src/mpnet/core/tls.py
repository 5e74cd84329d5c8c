"""TLS policy resolution (pure): verify or not, against which CA, chosen by which layer, and why.

No file reads: whether the system has a trust store is passed in by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mpnet.core.proxy import Layer


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


CAKind = Literal["file", "dir", "system", "certifi", "none"]


@dataclass(frozen=True, slots=True)
class TLSTraceEntry:
    layer: Layer
    value: str | None
    verdict: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "value": self.value,
            "verdict": self.verdict,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class TLSDecision:
    """The outcome of :func:`resolve_tls`.

    ``ca`` is a path, ``"system"`` or ``"certifi"`` (``None`` when verification is off).
    ``warnings`` is never empty when ``verify`` is False: every surface shows it.
    """

    verify: bool
    ca: str | None
    ca_kind: CAKind
    layer: Layer
    reason: str
    trace: tuple[TLSTraceEntry, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The DESIGN.md ``ssl`` shape: ``{"verify", "ca", "layer", "reason"}`` plus warnings."""
        return {
            "verify": self.verify,
            "ca": self.ca,
            "layer": self.layer,
            "reason": self.reason,
            "warnings": list(self.warnings),
        }
