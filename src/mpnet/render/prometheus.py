"""Prometheus text exposition of a probe report, named the way blackbox_exporter names things.

Every series carries ``exchange`` and ``target`` (``rest`` | ``ws``); no label is ever built from
credentials, only from profile names and fixed vocabularies (phase names, layer names, proxy
schemes, finding codes), so a scrape cannot leak a secret and label cardinality stays bounded.
Two exceptions, both bounded: when routes are compared (``--via``, ``route=``), every series also
carries ``route``, the route's name (a config name, ``direct``, or a proxy URL with its password
masked); ``mpnet_probe_edge_info`` carries the CDN and its point of presence, checked to be short
plain tokens.

The values describe one probe run, so every metric is a gauge, including the two ``*_total``
counts (they restart with each probe, like blackbox_exporter's per-probe series).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mpnet.core.result import PHASE_ORDER, Attempt, ProbeReport, ProbeResult, percentile

#: (name, HELP text, extra labels) of every metric, in exposition order.
METRICS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "mpnet_probe_success",
        "1 when every attempt at this exchange target succeeded, else 0.",
        (),
    ),
    (
        "mpnet_probe_duration_seconds",
        "Seconds the shown attempt took: the sum of its phases except ping_rtt (the first "
        "failure, else the last success); a phase cut off by a timeout counts with the time "
        "spent in it.",
        (),
    ),
    (
        "mpnet_probe_phase_seconds",
        "Seconds each phase of the shown attempt took (dns, tcp, proxy, tls, http, ws_upgrade, "
        "first_message, ping_rtt, bootstrap).",
        ("phase",),
    ),
    (
        "mpnet_probe_tls_cert_expiry_timestamp_seconds",
        "Unix time at which the server's leaf certificate expires.",
        (),
    ),
    (
        "mpnet_probe_tls_verify",
        "1 when the server certificate was verified, 0 when verification was turned off.",
        (),
    ),
    (
        "mpnet_probe_proxy_info",
        "Always 1: which configuration layer chose the route and the proxy scheme "
        "('direct' without a proxy). Never carries the proxy host or credentials.",
        ("layer", "scheme"),
    ),
    (
        "mpnet_probe_findings",
        "Number of diagnosis findings with this code (GEO_BLOCKED, WAF_BLOCKED, ...).",
        ("code",),
    ),
    (
        "mpnet_probe_http_status_code",
        "HTTP status of the REST answer or the WebSocket upgrade (101 once upgraded), when one "
        "arrived.",
        (),
    ),
    (
        "mpnet_probe_attempts_total",
        "Attempts made (sent) at this exchange target in this probe.",
        (),
    ),
    (
        "mpnet_probe_skipped_total",
        "Attempts at this exchange target not sent in this probe because the exchange's "
        "rate-limit wait (after a 429 or 418, or its weight header near the limit) was running.",
        (),
    ),
    (
        "mpnet_probe_rate_limit_wait_seconds",
        "Seconds of the exchange's rate-limit wait left when an attempt was skipped; cause is "
        "http_429, http_418 or weight.",
        ("cause",),
    ),
    (
        "mpnet_probe_successes_total",
        "Attempts at this exchange target that succeeded in this probe.",
        (),
    ),
    (
        "mpnet_probe_latency_seconds",
        "Quantiles (nearest rank) of the total attempt time over the successful attempts.",
        ("quantile",),
    ),
    (
        "mpnet_probe_edge_info",
        "Always 1: the CDN whose edge answered and its point of presence (pop, empty when the "
        "CDN does not name it), read from the answer's headers; no series when no CDN was seen.",
        ("cdn", "pop"),
    ),
    (
        "mpnet_probe_loop_lag_seconds",
        "Longest event-loop stall that overlapped an attempt's timed span (the maximum over the "
        "attempts). Above 0.001 the probe's timings are uncertain: they may include the wait.",
        (),
    ),
)

BASE_LABELS = ("exchange", "target")
SWITCHING_PROTOCOLS = 101
AFTER_UPGRADE = ("first_message", "ping_rtt")
QUANTILES = (("0.5", 50.0), ("0.95", 95.0))


def prometheus_text(report: ProbeReport) -> str:
    """Render ``report`` in the Prometheus text format (version 0.0.4)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ReportCollector(report))
    return (
        generate_latest(registry).decode("utf-8") + _skip_comments(report) + _route_comments(report)
    )


def _route_comments(report: ProbeReport) -> str:
    """The route verdicts (which route is fastest, which failed), as comments for a person."""
    from mpnet.core.compare import compare_routes, route_verdicts

    verdicts = route_verdicts(compare_routes(report.results))
    return "".join(f"# mpnet: routes: {' '.join(v.split())}\n" for v in verdicts)


def _skip_comments(report: ProbeReport) -> str:
    """Why attempts were not sent, for the person reading a scrape (comment lines: Prometheus
    ignores them, and a label must not carry free text)."""
    lines = []
    for result in report.results:
        skips = result.skips
        if skips:
            reason = " ".join(skips[0].message.split())  # never a line break in a comment
            lines.append(
                f"# mpnet: {result.exchange} {result.target}: {len(skips)} attempt(s) {reason}\n"
            )
    return "".join(lines)


class _ReportCollector(Collector):
    def __init__(self, report: ProbeReport) -> None:
        self.report = report

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # Routes asked for: every series says which route it measured.
        routed = any(result.route is not None for result in self.report.results)
        base_labels = (*BASE_LABELS, "route") if routed else BASE_LABELS
        families = {
            name: GaugeMetricFamily(name, help_text, labels=base_labels + extra)
            for name, help_text, extra in METRICS
        }
        for result in self.report.results:
            base = [result.exchange, result.target]
            if routed:
                base.append(result.route_name)
            for name, extra, value in _samples(result):
                families[name].add_metric(base + list(extra), value)
        yield from families.values()


def _samples(result: ProbeResult) -> Iterable[tuple[str, tuple[str, ...], float]]:
    """(metric, extra label values, value) for one result."""
    yield "mpnet_probe_success", (), 1.0 if result.ok else 0.0
    shown = result.shown_attempt
    if shown is not None:
        # An attempt that failed before measuring any phase has no duration, not a zero one.
        if shown.phases:
            yield "mpnet_probe_duration_seconds", (), _seconds(shown.total_ms)
        for phase, ms in sorted(shown.phases.items(), key=lambda kv: _phase_rank(kv[0])):
            yield "mpnet_probe_phase_seconds", (phase,), _seconds(ms)
        status = shown.status if shown.status is not None else _error_status(result)
        if status is None and _upgraded(shown):
            status = SWITCHING_PROTOCOLS
        if status is not None:
            yield "mpnet_probe_http_status_code", (), float(status)
    tls = result.tls
    expiry = _timestamp(tls.cert_not_after) if tls is not None else None
    if expiry is not None:
        yield "mpnet_probe_tls_cert_expiry_timestamp_seconds", (), expiry
    yield "mpnet_probe_tls_verify", (), 1.0 if result.ssl.verify else 0.0
    yield "mpnet_probe_proxy_info", (result.proxy.layer, result.proxy.scheme or "direct"), 1.0
    for code, count in sorted(Counter(f.code for f in result.findings).items()):
        yield "mpnet_probe_findings", (code,), float(count)
    yield "mpnet_probe_attempts_total", (), float(len(result.made))
    skips = result.skips
    yield "mpnet_probe_skipped_total", (), float(len(skips))
    if skips:
        first = skips[0]
        yield "mpnet_probe_rate_limit_wait_seconds", (first.cause,), round(first.remaining_s, 3)
    yield "mpnet_probe_successes_total", (), float(result.successes)
    totals = [a.total_ms for a in result.attempts if a.ok]
    if totals:
        for label, q in QUANTILES:
            yield "mpnet_probe_latency_seconds", (label,), _seconds(percentile(totals, q))
    edge = result.edge
    if edge.cdn is not None:
        yield "mpnet_probe_edge_info", (edge.cdn, edge.pop or ""), 1.0
    lag = result.loop_lag_ms
    if lag is not None:
        yield "mpnet_probe_loop_lag_seconds", (), _seconds(lag)


def _seconds(ms: float) -> float:
    # Microseconds are finer than any network phase; more digits are float noise in the text.
    return round(ms / 1000, 6)


def _phase_rank(phase: str) -> int:
    return PHASE_ORDER.index(phase) if phase in PHASE_ORDER else len(PHASE_ORDER)


def _upgraded(attempt: Attempt) -> bool:
    """True when the WebSocket upgrade completed (its answer was a 101), even if a later phase
    failed."""
    if "ws_upgrade" not in attempt.phases:
        return False
    return attempt.error is None or attempt.error.phase in AFTER_UPGRADE


def _error_status(result: ProbeResult) -> int | None:
    error = result.error
    return error.status if error is not None else None


def _timestamp(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
