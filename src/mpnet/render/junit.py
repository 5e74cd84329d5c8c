"""JUnit XML for CI: one ``<testsuite>``, one ``<testcase>`` per exchange x target.

The shape is the one CI reporters read (GitHub test-reporter actions, GitLab
``artifacts:reports:junit``, Jenkins): ``classname`` is the exchange, ``name`` the target, a
failed probe carries a ``<failure>`` whose message names the phase and the likely cause, and the
full error, findings and hints as its text. Warning and info findings on a success never fail the
case; they go to ``<system-out>`` with the phase timings.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping

from mpnet.core.proxy_url import redact_url_text
from mpnet.core.result import (
    LOOP_LAG_UNCERTAIN_MS,
    PHASE_ORDER,
    Finding,
    ProbeReport,
    ProbeResult,
)

SUITE_NAME = "mpnet probe"

# Characters XML 1.0 cannot carry at all, not even escaped; ElementTree would write them raw and
# produce a file no parser accepts. A server's body can hold any of them.
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def junit_xml(report: ProbeReport) -> str:
    """Render ``report`` as a JUnit XML document (with its XML declaration).

    Counts: ``tests`` is the number of exchange x target results, ``failures`` those not ok,
    ``skipped`` those whose every attempt was held back by the exchange's rate-limit wait (not
    sent: neither a pass nor a failure), ``errors`` is always 0 (a failed probe is a failed
    test, not a broken test run).
    """
    cases = [_testcase(result) for result in report.results]
    skipped = sum(1 for result in report.results if result.all_skipped)
    failures = sum(1 for result in report.results if not result.ok) - skipped
    seconds = sum(_seconds(result) for result in report.results)
    suite = ET.Element(
        "testsuite",
        {
            "name": SUITE_NAME,
            "tests": str(len(report.results)),
            "failures": str(failures),
            "errors": "0",
            "skipped": str(skipped),
            "time": _format_seconds(seconds),
            "timestamp": report.started_at,
        },
    )
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", {"name": "mpnet_version", "value": report.mpnet_version})
    if report.interrupted:
        ET.SubElement(properties, "property", {"name": "interrupted", "value": "true"})
    suite.extend(cases)
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode")


def _testcase(result: ProbeResult) -> ET.Element:
    # Routes asked for (--via) make one test case per route: "rest via tokyo".
    name = result.target if result.route is None else f"{result.target} via {result.route}"
    case = ET.Element(
        "testcase",
        {
            "classname": _clean(result.exchange),
            "name": _clean(name),
            "time": _format_seconds(_seconds(result)),
        },
    )
    if result.ok:
        out = ET.SubElement(case, "system-out")
        out.text = _clean(_success_text(result))
    elif result.all_skipped:
        skipped = ET.SubElement(case, "skipped", {"message": _clean(result.skips[0].message)})
        skipped.text = _clean(_skipped_text(result))
    else:
        failure = ET.SubElement(
            case,
            "failure",
            {"message": _clean(_failure_message(result)), "type": _clean(_failure_type(result))},
        )
        failure.text = _clean(_failure_text(result))
    return case


def _seconds(result: ProbeResult) -> float:
    shown = result.shown_attempt
    return shown.total_ms / 1000 if shown is not None else 0.0


def _format_seconds(seconds: float) -> str:
    return f"{seconds:.3f}"


def _main_finding(result: ProbeResult) -> Finding | None:
    """The finding that explains the failure: the first error-severity one, else the first
    warning; an info finding (TLS_INTERCEPTED) states a fact and explains no failure."""
    for severity in ("error", "warning"):
        for finding in result.findings:
            if finding.severity == severity:
                return finding
    return None


def _failure_message(result: ProbeResult) -> str:
    error = result.error
    phase = error.phase if error is not None else "probe"
    finding = _main_finding(result)
    if finding is not None:
        return f"{phase}: {finding.code}: {finding.message}"
    if error is not None:
        return f"{phase}: {error.message}"
    return f"{phase}: no attempt completed (interrupted)"


def _failure_type(result: ProbeResult) -> str:
    error = result.error
    return error.kind if error is not None else "interrupted"


def _failure_text(result: ProbeResult) -> str:
    lines = [f"{result.exchange} {result.target} {result.url}"]
    error = result.error
    if error is not None:
        lines.append(f"error: phase={error.phase} kind={error.kind}")
        lines.append(f"  {error.message}")
        if error.status is not None:
            lines.append(f"  status: {error.status}")
        if error.issuer:
            lines.append(f"  certificate issuer: {error.issuer}")
        if error.body:
            lines.append(f"  body: {error.body[:500]}")
    lines.append(_attempts_line(result))
    lines.extend(_findings_lines(result.findings))
    lines.extend(_context_lines(result))
    shown = result.shown_attempt
    if shown is not None and shown.phases:
        lines.append(f"phases (ms, up to the failure): {_phases_text(shown.phases)}")
    lines.extend(_timing_lines(result))
    return "\n".join(lines)


def _success_text(result: ProbeResult) -> str:
    many = len(result.attempts) > 1
    label = f"phases (ms, medians of {len(result.attempts)} attempts)" if many else "phases (ms)"
    lines = [
        f"{result.exchange} {result.target} {result.url}",
        f"{label}: {_phases_text(result.phases)}",
        _attempts_line(result),
    ]
    latency = result.latency
    if latency is not None and len(result.made) > 1:
        lines.append(
            f"latency (ms): min {latency.min:.1f} p50 {latency.p50:.1f} "
            f"p95 {latency.p95:.1f} max {latency.max:.1f}"
        )
    tls = result.tls
    if tls is not None and tls.version:
        expiry = f", certificate valid until {tls.cert_not_after}" if tls.cert_not_after else ""
        lines.append(f"tls: {tls.version} {tls.cipher or ''}{expiry}".rstrip())
    lines.extend(_findings_lines(result.findings))
    lines.extend(_context_lines(result))
    lines.extend(_timing_lines(result))
    return "\n".join(lines)


def _skipped_text(result: ProbeResult) -> str:
    lines = [f"{result.exchange} {result.target} {result.url}", _attempts_line(result)]
    lines.extend(_context_lines(result))
    return "\n".join(lines)


def _attempts_line(result: ProbeResult) -> str:
    """``attempts: 1/1 ok`` and, when some were held back, ``; 4 skipped (not sent: ...)``."""
    line = f"attempts: {result.successes}/{len(result.made)} ok"
    skips = result.skips
    if skips:
        line += f"; {len(skips)} skipped ({skips[0].message})"
    return line


def _timing_lines(result: ProbeResult) -> list[str]:
    """The loop lag the figures may include, every timing warning, the clock offset and the
    feed lag."""
    lag = result.loop_lag_ms
    if lag is None:
        return _clock_lines(result)
    verdict = "timings uncertain" if result.uncertain_phases else "timings certain"
    lines = [
        f"loop lag (ms): max {lag:.2f} ({verdict}; uncertain above {LOOP_LAG_UNCERTAIN_MS:g} ms)"
    ]
    lines.extend(f"warning: {warning}" for warning in result.timing_warnings)
    return lines + _clock_lines(result)


def _clock_lines(result: ProbeResult) -> list[str]:
    """The exchange's clock offset and the feed's lag, when measured."""
    lines: list[str] = []
    clock = result.clock
    if clock is not None and clock.offset_ms is not None and clock.error_ms is not None:
        lines.append(
            f"clock offset (ms): {clock.offset_ms:+.1f} ±{clock.error_ms:.1f} ({clock.source}; "
            "positive: this machine is behind)"
        )
    feed = result.feed
    if feed is not None and feed.lag_ms is not None:
        how = "corrected" if feed.corrected else "uncorrected"
        lines.append(
            f"feed lag (ms): p50 {feed.lag_ms.p50:.1f} p95 {feed.lag_ms.p95:.1f} max "
            f"{feed.lag_ms.max:.1f} ({how}; {feed.messages} messages)"
        )
    return lines


def _findings_lines(findings: tuple[Finding, ...]) -> list[str]:
    lines: list[str] = []
    for finding in findings:
        lines.append(f"{finding.severity} {finding.code}: {finding.message}")
        if finding.hint:
            lines.append(f"  hint: {finding.hint}")
    return lines


def _context_lines(result: ProbeResult) -> list[str]:
    proxy = result.proxy
    via = proxy.proxy.redacted() if proxy.proxy is not None else "direct"
    lines = [f"proxy: {via} (layer {proxy.layer})"]
    if result.route is not None:
        lines.append(f"route: {result.route}")
    edge = result.edge
    if edge.known:
        lines.append(f"edge: {edge.label()}" + (f" (id {edge.id})" if edge.id else ""))
    ssl = result.ssl
    if ssl.verify:
        lines.append(f"ssl: verify against {ssl.ca} (layer {ssl.layer})")
    else:
        lines.append(f"ssl: verification OFF (layer {ssl.layer}: {ssl.reason})")
    lines.extend(f"warning: {warning}" for warning in ssl.warnings)
    return lines


def _phases_text(phases: Mapping[str, float]) -> str:
    ordered = sorted(
        phases.items(),
        key=lambda kv: PHASE_ORDER.index(kv[0]) if kv[0] in PHASE_ORDER else len(PHASE_ORDER),
    )
    return " ".join(f"{name}={ms:.1f}" for name, ms in ordered) or "-"


def _clean(text: str) -> str:
    """Mask proxy passwords and drop characters XML 1.0 cannot represent."""
    return _XML_INVALID.sub("\ufffd", redact_url_text(text))
