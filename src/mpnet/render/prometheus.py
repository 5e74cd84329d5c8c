"""Prometheus text exposition of a probe report, named the way blackbox_exporter names things.

Every series carries ``exchange`` and ``target`` (``rest`` | ``ws``); no label is ever built from
credentials, only from profile names and fixed vocabularies (phase names, layer names, proxy
schemes, finding codes, issuer kinds), so a scrape cannot leak a secret and label cardinality
stays bounded.
Two exceptions, both bounded: when routes are compared (``--via``, ``route=``), every series also
carries ``route``, the route's name (a config name, ``direct``, or a proxy URL with its password
masked); ``mpnet_probe_edge_info`` carries the CDN and its point of presence, checked to be short
plain tokens.

The values describe one probe run, so every metric is a gauge, as blackbox_exporter's per-probe
``probe_*`` series are: the counts of one run (``mpnet_probe_attempts``, ``..._successes``,
``..._skipped``) restart with each probe, so they are gauges without the ``_total`` of a counter,
and the latency percentiles of one run are two gauges (``mpnet_probe_latency_p50_seconds``,
``..._p95_seconds``), not a summary, whose ``_count`` and ``_sum`` would be counters. Running
totals across scrapes are the exporter's own counters (``mpnet_exporter_probes_total``). The
exposition passes ``promtool check metrics``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mpnet.core.clock import epoch_seconds
from mpnet.core.diagnose import issuer_kind
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
        "mpnet_probe_tls_info",
        "Always 1: who issued the server's certificate. issuer_kind is public (a public web CA), "
        "private (any other CA: a TLS-inspecting proxy's on an exchange's public name) or "
        "unknown (not readable); no series when no certificate was seen.",
        ("issuer_kind",),
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
        "mpnet_probe_attempts",
        "Attempts made (sent) at this exchange target in this probe.",
        (),
    ),
    (
        "mpnet_probe_skipped",
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
        "mpnet_probe_successes",
        "Attempts at this exchange target that succeeded in this probe.",
        (),
    ),
    (
        "mpnet_probe_latency_p50_seconds",
        "Median (nearest rank) of the total attempt time over this probe's successful attempts.",
        (),
    ),
    (
        "mpnet_probe_latency_p95_seconds",
        "95th percentile (nearest rank) of the total attempt time over this probe's successful "
        "attempts.",
        (),
    ),
    (
        "mpnet_probe_edge_info",
        "Always 1: the CDN whose edge answered and its point of presence (pop, empty when the "
        "CDN does not name it), read from the answer's headers; no series when no CDN was seen.",
        ("cdn", "pop"),
    ),
    (
        "mpnet_probe_loop_lag_seconds",
        "Longest event-loop stall that overlapped an attempt's timed phases (the maximum over the "
        "attempts). Above 0.001 the probe's timings are uncertain: they may include the wait.",
        (),
    ),
    (
        "mpnet_probe_timeout_seconds",
        "Seconds each attempt at this exchange target was allowed (mpnet serve: --timeout, cut "
        "to the scrape timeout minus 0.5 s).",
        (),
    ),
    (
        "mpnet_probe_clock_offset_seconds",
        "The exchange's clock minus this machine's (positive: this machine is behind), from the "
        "server time with the shortest round trip (NTP-style), else from the Date header.",
        (),
    ),
    (
        "mpnet_probe_clock_offset_error_seconds",
        "How far the true clock offset may be from mpnet_probe_clock_offset_seconds: half the "
        "round trip plus the stamp's resolution (a second for the Date header).",
        (),
    ),
    (
        "mpnet_probe_feed_messages",
        "Data messages the WebSocket probe read from its first one to the end of its feed "
        "window (over all attempts).",
        (),
    ),
    (
        "mpnet_probe_feed_messages_per_second",
        "Data messages per second over the feed window.",
        (),
    ),
    (
        "mpnet_probe_feed_lag_p50_seconds",
        "Median time from the exchange's event stamp to the message's arrival (nearest rank), "
        "corrected by the clock offset when mpnet_probe_feed_lag_corrected is 1.",
        (),
    ),
    (
        "mpnet_probe_feed_lag_p95_seconds",
        "95th percentile (nearest rank) of the feed lag.",
        (),
    ),
    (
        "mpnet_probe_feed_lag_max_seconds",
        "Largest feed lag seen.",
        (),
    ),
    (
        "mpnet_probe_feed_lag_corrected",
        "1 when the feed lag was corrected by a clock offset measured for the exchange in the "
        "same probe, 0 when it still includes this machine's clock offset.",
        (),
    ),
)

BASE_LABELS = ("exchange", "target")
SWITCHING_PROTOCOLS = 101
AFTER_UPGRADE = ("first_message", "ping_rtt")
PERCENTILES = (("mpnet_probe_latency_p50_seconds", 50.0), ("mpnet_probe_latency_p95_seconds", 95.0))


def prometheus_text(report: ProbeReport, *, timeout_s: float | None = None) -> str:
    """Render ``report`` in the Prometheus text format (version 0.0.4); ``timeout_s``, the
    seconds each attempt was allowed, becomes ``mpnet_probe_timeout_seconds`` of every target."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ReportCollector(report, timeout_s))
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
    def __init__(self, report: ProbeReport, timeout_s: float | None = None) -> None:
        self.report = report
        self.timeout_s = timeout_s

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
            if self.timeout_s is not None:
                families["mpnet_probe_timeout_seconds"].add_metric(base, self.timeout_s)
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
    expiry = epoch_seconds(tls.cert_not_after) if tls is not None else None
    if expiry is not None:
        yield "mpnet_probe_tls_cert_expiry_timestamp_seconds", (), expiry
    yield "mpnet_probe_tls_verify", (), 1.0 if result.ssl.verify else 0.0
    seen, issuer = _certificate_issuer(result)
    if seen:
        yield "mpnet_probe_tls_info", (issuer_kind(issuer),), 1.0
    yield "mpnet_probe_proxy_info", (result.proxy.layer, result.proxy.scheme or "direct"), 1.0
    for code, count in sorted(Counter(f.code for f in result.findings).items()):
        yield "mpnet_probe_findings", (code,), float(count)
    yield "mpnet_probe_attempts", (), float(len(result.made))
    skips = result.skips
    yield "mpnet_probe_skipped", (), float(len(skips))
    if skips:
        first = skips[0]
        yield "mpnet_probe_rate_limit_wait_seconds", (first.cause,), round(first.remaining_s, 3)
    yield "mpnet_probe_successes", (), float(result.successes)
    totals = [a.total_ms for a in result.attempts if a.ok]
    if totals:
        for name, q in PERCENTILES:
            yield name, (), _seconds(percentile(totals, q))
    edge = result.edge
    if edge.cdn is not None:
        yield "mpnet_probe_edge_info", (edge.cdn, edge.pop or ""), 1.0
    lag = result.loop_lag_ms
    if lag is not None:
        yield "mpnet_probe_loop_lag_seconds", (), _seconds(lag)
    clock = result.clock
    if clock is not None and clock.offset_ms is not None and clock.error_ms is not None:
        yield "mpnet_probe_clock_offset_seconds", (), _seconds(clock.offset_ms)
        yield "mpnet_probe_clock_offset_error_seconds", (), _seconds(clock.error_ms)
    feed = result.feed
    if feed is not None:
        yield "mpnet_probe_feed_messages", (), float(feed.messages)
        if feed.rate_per_s is not None:
            yield "mpnet_probe_feed_messages_per_second", (), round(feed.rate_per_s, 3)
        if feed.lag_ms is not None:
            yield "mpnet_probe_feed_lag_p50_seconds", (), _seconds(feed.lag_ms.p50)
            yield "mpnet_probe_feed_lag_p95_seconds", (), _seconds(feed.lag_ms.p95)
            yield "mpnet_probe_feed_lag_max_seconds", (), _seconds(feed.lag_ms.max)
            yield "mpnet_probe_feed_lag_corrected", (), 1.0 if feed.corrected else 0.0


def _certificate_issuer(result: ProbeResult) -> tuple[bool, str | None]:
    """Whether the exchange's certificate was seen, and its issuer: from the handshake that
    completed, else from the one that refused it (the exchange's, not an https proxy's own)."""
    tls = result.tls
    if tls is not None:
        return True, tls.cert_issuer
    error = result.error
    if error is not None and str(error.phase) == "tls" and error.issuer:
        return True, error.issuer
    return False, None


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
