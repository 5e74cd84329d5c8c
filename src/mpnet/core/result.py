"""Probe results (pure data): what the probe engine produces and every renderer consumes.

The JSON shape is the contract of docs/architecture.md ("JSON contract");
:meth:`ProbeReport.to_dict` is the one place it is built.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mpnet.core.address import ConnectFailure, addresses_dict, family_note, family_of
from mpnet.core.clock import (
    ClockEstimate,
    ClockSample,
    FeedRecord,
    FeedSummary,
    best_estimate,
    date_estimate,
    date_sample,
    estimate_clock,
    nearest_rank,
    summarize_feed,
)
from mpnet.core.edge import UNKNOWN_EDGE, Edge
from mpnet.core.proxy import ProxyDecision
from mpnet.core.proxy_url import redact_url_text
from mpnet.core.ratelimit import Skip
from mpnet.core.route import route_name_of
from mpnet.core.tls import TLSDecision
from mpnet.errors import ProbeError, TLSError

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

#: An attempt whose timed window overlapped an event-loop stall longer than this (ms) has
#: uncertain figures: a network event may have waited that long for the loop to notice it.
LOOP_LAG_UNCERTAIN_MS = 1.0
#: How far the user-space ``tcp`` figure may exceed the kernel's round-trip time (ms), on top of
#: the attempt's loop lag, before mpnet says the figure was inflated by this process.
TCP_KERNEL_SLACK_MS = 1.0


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

    @classmethod
    def from_error(cls, error: ProbeError, *, body: bytes | str | None = None) -> ErrorInfo:
        """``error`` as data: the one conversion every surface uses (library, probe, ``ws``).

        Passwords of URLs in the message, the headers and the body are masked (``user:***@``)
        whatever the error's author did.

        Args:
            error: the failure.
            body: what the failure answered when the error carries no body of its own (the
                last message that did not match, for a ``first_message`` failure).
        """
        raw = getattr(error, "body", b"") or body or b""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        headers: Mapping[str, str] = getattr(error, "headers", None) or {}
        return cls(
            phase=str(error.phase),
            kind=error.kind,
            message=redact_url_text(error.message),
            status=getattr(error, "status", None),
            headers={name: redact_url_text(value) for name, value in headers.items()},
            body=redact_url_text(text),
            issuer=error.issuer if isinstance(error, TLSError) else None,
        )


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
    ``hint`` says what to do. ``severity`` is ``error`` (explains a failure), ``warning`` or
    ``info`` (a fact about a working connection, such as TLS inspection); only an ``error``
    explains a failure, and none of them sets the exit code, which follows ``ok``."""

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

    Timing truth: ``started_at`` is the wall-clock start (ISO 8601 UTC), ``window_ns`` the
    ``perf_counter_ns`` span during which the attempt's clocks ran, ``loop_lag_ms`` the longest
    event-loop stall that overlapped that span (None: not measured), ``tcp_rtt_kernel_ms`` the
    kernel's round-trip estimate of the TCP connection (Linux ``TCP_INFO``; None elsewhere).

    ``edge`` is the CDN edge the REST answer or the WebSocket upgrade answer came from (None:
    no answer arrived). ``addresses`` are every address the DNS phase returned (the proxy's
    when one was dialled), ``address`` the one the TCP connection used, ``connect_failures``
    the addresses tried before it (or all of them, when none connected).

    Clocks (:mod:`mpnet.core.clock`): ``clock`` is this attempt's reading of the server's clock
    (the profile's ``rest.server_time`` or ``websocket.ping.server_time``; skipped with its
    reason when the stamp could not be read), ``feed`` what a WebSocket attempt saw of the feed
    from its first data message on (message count, uncorrected lags).
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
    started_at: str | None = None
    window_ns: tuple[int, int] | None = None
    loop_lag_ms: float | None = None
    tcp_rtt_kernel_ms: float | None = None
    edge: Edge | None = None
    connect_failures: tuple[ConnectFailure, ...] = ()
    clock: ClockSample | None = None
    feed: FeedRecord | None = None

    @property
    def total_ms(self) -> float:
        return sum(v for k, v in self.phases.items() if k != "ping_rtt")

    @property
    def uncertain(self) -> bool:
        """True when a loop stall over :data:`LOOP_LAG_UNCERTAIN_MS` overlapped the attempt."""
        return self.loop_lag_ms is not None and self.loop_lag_ms > LOOP_LAG_UNCERTAIN_MS

    @property
    def tcp_inflated(self) -> bool | None:
        """Whether the user-space ``tcp`` figure exceeds the kernel's RTT by more than
        :data:`TCP_KERNEL_SLACK_MS` plus the attempt's loop lag (None: nothing to compare)."""
        tcp = self.phases.get("tcp")
        if tcp is None or self.tcp_rtt_kernel_ms is None:
            return None
        allowed = TCP_KERNEL_SLACK_MS + (self.loop_lag_ms or 0.0)
        return tcp - self.tcp_rtt_kernel_ms > allowed

    def to_sample(self) -> dict[str, Any]:
        """The attempt as one entry of a result's JSON ``samples``."""
        return {
            "phases": ordered_phases(self.phases),
            "ok": self.ok,
            "error": self.error.to_dict() if self.error else None,
            "loop_lag_ms": _rounded(self.loop_lag_ms),
            "started_at": self.started_at,
            "tcp_rtt_kernel_ms": _rounded(self.tcp_rtt_kernel_ms),
            "tcp_inflated": self.tcp_inflated,
            "skipped": self.skipped.to_dict() if self.skipped else None,
            "warnings": [warning.to_dict() for warning in self.warnings],
            "edge": (self.edge or UNKNOWN_EDGE).to_dict(),
            "address": self.address,
            "family": family_of(self.address) if self.address else None,
            "clock": self.clock.to_dict() if self.clock is not None else None,
            "feed": self.feed.to_dict() if self.feed is not None else None,
        }

    @property
    def family_note(self) -> str | None:
        """A sentence when one address family failed where both exist (see core.address)."""
        return family_note(self.addresses, self.address, self.connect_failures)

    @property
    def date_sample(self) -> ClockSample | None:
        """The answer's ``Date`` header as a clock sample: stamped between the request leaving
        (at most the ``http`` or ``ws_upgrade`` wait before the first byte) and ``local_time``."""
        if self.server_date is None or self.local_time is None:
            return None
        waited_ms = self.phases.get("http") or self.phases.get("ws_upgrade") or 0.0
        received = float(self.local_time)
        return date_sample(
            self.server_date,
            sent_at=received - max(0.0, float(waited_ms)) / 1000,
            received_at=received,
        )


def ordered_phases(phases: Mapping[str, float]) -> dict[str, float]:
    """``phases`` in connection order (unknown names last), rounded to microseconds."""
    ranked = sorted(
        phases.items(),
        key=lambda kv: PHASE_ORDER.index(kv[0]) if kv[0] in PHASE_ORDER else len(PHASE_ORDER),
    )
    return {name: round(value, 3) for name, value in ranked}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def median_phases(attempts: Sequence[Attempt]) -> dict[str, float]:
    """Per phase, the median over the attempts that measured that phase.

    An attempt counts for every phase it has a figure for, whether it succeeded or not (a
    phase cut off by a timeout holds the time spent in it); an attempt that stopped before a
    phase does not count for it. An even number of figures gives the mean of the middle two.
    """
    values: dict[str, list[float]] = {}
    for attempt in attempts:
        for name, value in attempt.phases.items():
            values.setdefault(name, []).append(value)
    return {name: statistics.median(figures) for name, figures in values.items()}


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
    return nearest_rank(sorted(values), q)


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
    #: The route asked for (``--via``, an exchange's default routes); None: the usual layers.
    route: str | None = None
    #: The best offset measured for this exchange in the same run, by any of its targets (set
    #: by :func:`with_exchange_clocks`): what corrects this target's feed lag.
    exchange_clock: ClockEstimate | None = None

    @property
    def route_name(self) -> str:
        """The route's name: the one asked for, else ``direct`` or the redacted proxy URL the
        usual layers chose."""
        return self.route if self.route is not None else route_name_of(self.proxy.proxy)

    @property
    def edge(self) -> Edge:
        """The CDN edge of the latest answer (REST answer or WebSocket upgrade answer)."""
        for attempt in reversed(self.made):
            if attempt.edge is not None:
                return attempt.edge
        return UNKNOWN_EDGE

    @property
    def addressed(self) -> Attempt | None:
        """The attempt whose addresses are shown: the shown attempt, else the latest one that
        resolved any."""
        shown = self.shown_attempt
        if shown is not None and (shown.addresses or shown.connect_failures):
            return shown
        for attempt in reversed(self.made):
            if attempt.addresses or attempt.connect_failures:
                return attempt
        return None

    @property
    def address_notes(self) -> list[str]:
        """Where one address family failed and the other exists: one sentence per distinct
        case, with how many attempts it happened in."""
        notes: dict[str, int] = {}
        for attempt in self.made:
            note = attempt.family_note
            if note is not None:
                notes[note] = notes.get(note, 0) + 1
        many = len(self.made) > 1
        return [
            f"{note} (in {count} of {len(self.made)} attempts)" if many else note
            for note, count in notes.items()
        ]

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
        """Per-phase medians over the attempts (see :func:`median_phases`)."""
        return median_phases(self.attempts)

    @property
    def loop_lag_ms(self) -> float | None:
        """The longest loop stall any attempt saw (None: no attempt was measured)."""
        lags = [a.loop_lag_ms for a in self.attempts if a.loop_lag_ms is not None]
        return max(lags) if lags else None

    @property
    def uncertain_phases(self) -> frozenset[str]:
        """Phases whose figure includes an attempt with uncertain timings (loop lag)."""
        return frozenset(name for a in self.attempts if a.uncertain for name in a.phases)

    @property
    def tcp_rtt_kernel_ms(self) -> float | None:
        """The median of the attempts' kernel RTT figures (None: the kernel gave none)."""
        values = [a.tcp_rtt_kernel_ms for a in self.attempts if a.tcp_rtt_kernel_ms is not None]
        return statistics.median(values) if values else None

    @property
    def timing_warnings(self) -> list[str]:
        """What makes these figures less than certain: one sentence for the attempts with loop
        lag over :data:`LOOP_LAG_UNCERTAIN_MS`, one per attempt whose tcp was inflated."""
        many = len(self.attempts) > 1
        warnings: list[str] = []
        shaky = [a.loop_lag_ms for a in self.attempts if a.uncertain and a.loop_lag_ms is not None]
        if shaky:
            which = f"{len(shaky)} of {len(self.attempts)} attempts" if many else "the attempt"
            warnings.append(
                f"loop lag: the event loop stalled for up to {max(shaky):.1f} ms while the "
                f"clocks of {which} ran (over {LOOP_LAG_UNCERTAIN_MS:g} ms): their figures may "
                "include such waits"
            )
        for number, attempt in enumerate(self.attempts, start=1):
            if attempt.tcp_inflated:
                which = f"attempt {number}" if many else "the attempt"
                warnings.append(
                    f"tcp inflated: {which}'s user-space tcp {attempt.phases['tcp']:.2f} ms "
                    f"exceeds the kernel's TCP RTT {attempt.tcp_rtt_kernel_ms:.2f} ms by more "
                    f"than {TCP_KERNEL_SLACK_MS:g} ms + its loop lag "
                    f"{attempt.loop_lag_ms or 0.0:.2f} ms: the user-space tcp figure was "
                    "inflated by this process, not by the network"
                )
        return warnings

    @property
    def clock(self) -> ClockEstimate | None:
        """This target's reading of the exchange's clock: the sample with the smallest round
        trip of the profile's time field; else the ``Date`` headers (coarse); None without any.
        Skipped samples stay in it with their reasons."""
        samples = [a.clock for a in self.attempts if a.clock is not None]
        estimate = estimate_clock(samples)
        if estimate is not None and estimate.known:
            return estimate
        dates = [s for s in (a.date_sample for a in self.attempts) if s is not None]
        fallback = date_estimate(dates)
        if fallback is not None and fallback.known:
            # The skipped readings of the time field stay visible beside the Date's.
            return replace(fallback, samples=(*samples, *fallback.samples))
        return estimate or fallback

    @property
    def feed(self) -> FeedSummary | None:
        """The feed this WebSocket target's attempts read, its lag corrected by
        :attr:`exchange_clock` when one was measured (None: no data message was read)."""
        return summarize_feed(
            [a.feed for a in self.attempts if a.feed is not None], self.exchange_clock
        )

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
        phases = ordered_phases(self.phases)
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
            # The contract's {"url", "layer", "scheme"} and {"verify", "ca", "layer", "reason"},
            # extended with the winning setting's name, the no_proxy entry and the TLS warnings.
            "proxy": self.proxy.to_dict(),
            "ssl": self.ssl.to_dict(),
            "tls": self.tls.to_dict() if self.tls else None,
            "error": error.to_dict() if error else None,
            "findings": [f.to_dict() for f in self.findings],
            # Second wave: every attempt, its loop lag and kernel RTT; the phases above are the
            # medians of these samples.
            "samples": [a.to_sample() for a in self.attempts],
            "loop_lag_ms": _rounded(self.loop_lag_ms),
            "timing_warnings": self.timing_warnings,
            # Second wave: the route, the CDN edge that answered, the addresses.
            "route": self.route_name,
            "edge": self.edge.to_dict(),
            "addresses": self._addresses_dict(),
            "address_notes": self.address_notes,
            # The exchange's clock minus this machine's, and how stale the feed was.
            "clock": clock.to_dict() if (clock := self.clock) is not None else None,
            "feed": feed.to_dict() if (feed := self.feed) is not None else None,
        }

    def _addresses_dict(self) -> dict[str, Any] | None:
        attempt = self.addressed
        if attempt is None:
            return None
        return addresses_dict(
            attempt.addresses,
            attempt.address,
            attempt.connect_failures,
            via_proxy=self.proxy.proxy is not None,
        )


def with_exchange_clocks(results: Sequence[ProbeResult]) -> tuple[ProbeResult, ...]:
    """Give every WebSocket result the best clock offset its exchange showed in this run (the
    known estimate with the smallest error, from any target), to correct its feed lag."""
    best: dict[str, ClockEstimate | None] = {}
    for result in results:
        best[result.exchange] = best_estimate((best.get(result.exchange), result.clock))
    return tuple(
        replace(result, exchange_clock=best.get(result.exchange))
        if result.target == "ws"
        else result
        for result in results
    )


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
        from mpnet.core.compare import compare_routes

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
            # Per exchange and target probed over more than one route: the routes ranked.
            "comparison": [c.to_dict() for c in compare_routes(self.results)],
        }
