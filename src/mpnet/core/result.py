"""Probe results (pure data): what the probe engine produces and every renderer consumes.

The JSON shape is DESIGN.md's; :meth:`ProbeReport.to_dict` is the one place it is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mpnet.core.proxy import ProxyDecision
from mpnet.core.ratelimit import Skip
from mpnet.core.tls import TLSDecision

PHASE_ORDER = (
    "bootstrap",
    "dns",
    "tcp",
    "proxy",
    "tls",
    "http",
    "ws_upgrade",
    "first_message",
    "ping_rtt",
)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A probe error as data. ``status``/``headers``/``body`` are set for HTTP and upgrade
    refusals; ``issuer`` for certificate errors; ``proxy_status`` for proxy refusals."""

    phase: str
    kind: str
    message: str
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""
    issuer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "kind": self.kind, "message": self.message}


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """What the TLS handshake showed about the peer."""

    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    cert_subject: str | None = None
    cert_issuer: str | None = None
    cert_not_after: str | None = None  # ISO 8601, UTC
    cert_days_left: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "cipher": self.cipher,
            "cert_not_after": self.cert_not_after,
            "cert_days_left": self.cert_days_left,
            "issuer": self.cert_issuer,
            "subject": self.cert_subject,
            "alpn": self.alpn,
        }


@dataclass(frozen=True, slots=True)
class Finding:
    """A diagnosis: ``code`` is stable (GEO_BLOCKED), ``message`` shows the evidence,
    ``hint`` says what to do. ``severity`` is ``error`` (explains a failure) or ``warning``."""

    code: str
    message: str
    hint: str
    severity: str = "error"

    def to_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
            "severity": self.severity,
        }


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of one probe target.

    ``server_date`` is the raw ``Date`` header of an HTTP answer and ``local_time`` the Unix
    time at which its first byte arrived (for clock-skew findings). ``messages`` holds the
    decoded messages seen on a WebSocket (at most a few, for display).
    ``warnings`` holds the errors of steps that did not fail the attempt (a ping left
    unanswered after data arrived). ``skipped`` is set when
    the attempt was never sent because the exchange's rate-limit wait was running: it is then
    neither a success nor a failure (``ok`` is False, ``error`` None).
    """

    ok: bool
    phases: Mapping[str, float] = field(default_factory=dict)
    error: ErrorInfo | None = None
    status: int | None = None
    server_date: str | None = None
    local_time: float | None = None
    addresses: tuple[str, ...] = ()
    address: str | None = None
    tls: TLSInfo | None = None
    warnings: tuple[ErrorInfo, ...] = ()
    skipped: Skip | None = None

    @property
    def total_ms(self) -> float:
        return sum(v for k, v in self.phases.items() if k != "ping_rtt")


@dataclass(frozen=True, slots=True)
class LatencyStats:
    min: float
    p50: float
    p95: float
    max: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(getattr(self, k), 3) for k in ("min", "p50", "p95", "max")}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_stats(values: Sequence[float]) -> LatencyStats | None:
    if not values:
        return None
    return LatencyStats(
        min=min(values), p50=percentile(values, 50), p95=percentile(values, 95), max=max(values)
    )


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """All attempts at one exchange x target, with the decisions that shaped them."""

    exchange: str
    target: str  # "rest" | "ws"
    url: str
    attempts: tuple[Attempt, ...]
    proxy: ProxyDecision
    ssl: TLSDecision
    findings: tuple[Finding, ...] = ()

    @property
    def made(self) -> tuple[Attempt, ...]:
        """The attempts that were sent (not skipped for a rate-limit wait)."""
        return tuple(a for a in self.attempts if a.skipped is None)

    @property
    def skips(self) -> tuple[Skip, ...]:
        return tuple(a.skipped for a in self.attempts if a.skipped is not None)

    @property
    def all_skipped(self) -> bool:
        """Every attempt was skipped: nothing was measured, nothing failed."""
        return bool(self.attempts) and not self.made

    @property
    def ok(self) -> bool:
        made = self.made
        return bool(made) and all(a.ok for a in made)

    @property
    def successes(self) -> int:
        return sum(1 for a in self.attempts if a.ok)

    @property
    def shown_attempt(self) -> Attempt | None:
        """The attempt whose phases are shown: the first failure, else the last success."""
        made = self.made
        for attempt in made:
            if not attempt.ok:
                return attempt
        return made[-1] if made else None

    @property
    def phases(self) -> Mapping[str, float]:
        shown = self.shown_attempt
        return shown.phases if shown else {}

    @property
    def error(self) -> ErrorInfo | None:
        shown = self.shown_attempt
        return shown.error if shown else None

    @property
    def tls(self) -> TLSInfo | None:
        for attempt in reversed(self.attempts):
            if attempt.tls is not None:
                return attempt.tls
        return None

    @property
    def latency(self) -> LatencyStats | None:
        return latency_stats([a.total_ms for a in self.attempts if a.ok])

    def with_findings(self, findings: Sequence[Finding]) -> ProbeResult:
        return replace(self, findings=tuple(findings))

    def to_dict(self) -> dict[str, Any]:
        latency = self.latency
        phases = {
            k: round(v, 3)
            for k, v in sorted(
                self.phases.items(),
                key=lambda kv: PHASE_ORDER.index(kv[0]) if kv[0] in PHASE_ORDER else 99,
            )
        }
        error = self.error
        return {
            "exchange": self.exchange,
            "target": self.target,
            "url": self.url,
            "ok": self.ok,
            "attempts": len(self.made),
            "successes": self.successes,
            # Attempts not sent because the exchange's rate-limit wait was running.
            "skipped": len(self.skips),
            "skip": self.skips[0].to_dict() if self.skips else None,
            "phases": phases,
            "latency_ms": latency.to_dict() if latency else None,
            # DESIGN's {"url", "layer", "scheme"} and {"verify", "ca", "layer", "reason"}, extended
            # with the winning setting's name, the no_proxy entry and the TLS warnings.
            "proxy": self.proxy.to_dict(),
            "ssl": self.ssl.to_dict(),
            "tls": self.tls.to_dict() if self.tls else None,
            "error": error.to_dict() if error else None,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """One run of ``mpnet probe``: every result, in the order the targets were planned."""

    mpnet_version: str
    started_at: str  # ISO 8601 UTC
    results: tuple[ProbeResult, ...]
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.ok for r in self.results) and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        ok = sum(1 for r in self.results if r.ok)
        skipped = sum(1 for r in self.results if r.all_skipped)
        return {
            "mpnet_version": self.mpnet_version,
            "started_at": self.started_at,
            "results": [r.to_dict() for r in self.results],
            "summary": {
                "total": len(self.results),
                "ok": ok,
                "failed": len(self.results) - ok - skipped,
                "skipped": skipped,
            },
        }
