"""Diagnosis (pure): probe results in, findings a person can act on out.

A finding explains an error line rather than repeating it: ``message`` carries the evidence
(status, header values, issuer, clock offset, the proxy and the layer that chose it) and ``hint``
the action (a flag, a config key, a command). Failures get ``error`` findings; healthy probes can
still carry ``warning`` findings (clock skew, a certificate about to expire, verification off,
REST and WebSocket leaving by different paths) and ``info`` ones (TLS_INTERCEPTED: a public name
answered with a certificate from a private CA, an inspecting proxy), which change no exit code.

Every hint is written once, in :data:`CATALOGUE` (code -> variants -> template), so renderers and
the docs can list them. Nothing here does I/O or reads the clock: pass ``now`` to let a
certificate's ``not_after`` stand in for a missing ``cert_days_left``.

Passwords: findings are built from redacted proxy URLs only, and every message and hint is
scrubbed of the result's proxy password and of any ``user:pass@`` in quoted server text.

The package: :mod:`.catalogue` (codes and hint templates), :mod:`.context` (what every rule
needs about one result, and how a finding is built), :mod:`.failure_rules` (why an attempt
failed), :mod:`.warning_rules` (what a healthy result still tells, and across results) and
:mod:`.sniff` (reading server text). Names with a leading underscore are shared between these
modules only.
"""

from __future__ import annotations

from collections.abc import Sequence

from mpnet.core.clock import ClockTolerances
from mpnet.core.diagnose.catalogue import CATALOGUE, HINT_FIELDS, FindingCode, Severity, hint_text
from mpnet.core.diagnose.context import _Context, proxy_origin
from mpnet.core.diagnose.failure_rules import CLOCK_CARRIED, _explain
from mpnet.core.diagnose.sniff import IssuerKind, issuer_kind, looks_public_ca
from mpnet.core.diagnose.warning_rules import (
    CERT_EXPIRY_WARNING_DAYS,
    DEFAULT_RECV_WINDOW_MS,
    PRIVATE_NAME_SUFFIXES,
    SIGNED_AHEAD_LIMIT_MS,
    SLOW_CONSUMER_SHARE,
    STALL_WINDOW_MS,
    UNSTALLED_MAX_MS,
    _cert_expiring,
    _clock_skew,
    _feed_lagging,
    _insecure_tls,
    _path_divergence,
    _ping_unanswered,
    _proxy_write_stalls,
    _tls_intercepted,
    is_public_name,
)
from mpnet.core.result import Finding, ProbeResult

__all__ = [
    "CATALOGUE",
    "CERT_EXPIRY_WARNING_DAYS",
    "CLOCK_CARRIED",
    "DEFAULT_RECV_WINDOW_MS",
    "HINT_FIELDS",
    "PRIVATE_NAME_SUFFIXES",
    "SIGNED_AHEAD_LIMIT_MS",
    "SLOW_CONSUMER_SHARE",
    "STALL_WINDOW_MS",
    "UNSTALLED_MAX_MS",
    "FindingCode",
    "IssuerKind",
    "Severity",
    "diagnose",
    "diagnose_one",
    "hint_text",
    "is_public_name",
    "issuer_kind",
    "looks_public_ca",
    "proxy_origin",
]


def diagnose(
    results: Sequence[ProbeResult],
    *,
    now: float | None = None,
    tolerances: ClockTolerances | None = None,
) -> tuple[ProbeResult, ...]:
    """Attach findings to every result, in the same order.

    Args:
        results: the probe results of one run; cross-result findings (PATH_DIVERGENCE) compare
            the results of the same exchange.
        now: Unix time, used only to compute a certificate's days left from ``cert_not_after``
            when ``cert_days_left`` is missing.
        tolerances: when CLOCK_SKEW and FEED_LAGGING fire (the defaults when None).

    Returns:
        The results, each with ``findings`` replaced by its diagnosis.
    """
    # Every password of the run is masked in every finding, whichever result it came from.
    secrets = _passwords(results)
    limits = tolerances or ClockTolerances()
    findings = [list(_diagnose_one(result, now, secrets, limits)) for result in results]
    for index, finding in _path_divergence(results, secrets):
        findings[index].append(finding)
    for index, finding in _proxy_write_stalls(results, secrets):
        findings[index].append(finding)
    return tuple(result.with_findings(f) for result, f in zip(results, findings, strict=True))


def diagnose_one(
    result: ProbeResult,
    *,
    now: float | None = None,
    tolerances: ClockTolerances | None = None,
) -> tuple[Finding, ...]:
    """The findings of one result alone: failures explained first, then warnings and infos."""
    secrets = _passwords([result])
    stalls = tuple(finding for _, finding in _proxy_write_stalls([result], secrets))
    return _diagnose_one(result, now, secrets, tolerances or ClockTolerances()) + stalls


def _passwords(results: Sequence[ProbeResult]) -> tuple[str, ...]:
    found = {r.proxy.proxy.password for r in results if r.proxy.proxy is not None}
    # Longest first, so a password containing another is masked whole.
    return tuple(sorted((p for p in found if p), key=len, reverse=True))


def _diagnose_one(
    result: ProbeResult,
    now: float | None,
    secrets: tuple[str, ...],
    tolerances: ClockTolerances,
) -> tuple[Finding, ...]:
    ctx = _Context.of(result, secrets)
    findings: list[Finding] = []
    failed = [a for a in result.attempts if not a.ok and a.error is not None]
    counts: dict[str, int] = {}
    first: dict[str, Finding] = {}
    for attempt in failed:
        assert attempt.error is not None
        finding = _explain(ctx, attempt, attempt.error)
        if finding is None:
            continue
        counts[finding.code] = counts.get(finding.code, 0) + 1
        first.setdefault(finding.code, finding)
    total = len(result.made)  # attempts skipped for a rate-limit wait were never sent
    for code, finding in first.items():
        if total > 1 and counts[code] < total:
            finding = Finding(
                finding.code,
                f"{finding.message} (in {counts[code]} of {total} attempts)",
                finding.hint,
                finding.severity,
            )
        findings.append(finding)
    for warning in (
        _ping_unanswered(ctx),
        _clock_skew(ctx, tolerances.offset_ms),
        _feed_lagging(ctx, tolerances.feed_lag_ms),
        _cert_expiring(ctx, now),
        _insecure_tls(ctx),
        _tls_intercepted(ctx),
    ):
        if warning is not None:
            findings.append(warning)
    return tuple(findings)
