"""Hand-built probe reports for the renderer tests (no network)."""

from __future__ import annotations

from collections.abc import Mapping

from mpnet.core.proxy import ProxyDecision
from mpnet.core.proxy_url import parse_proxy_url
from mpnet.core.result import Attempt, ErrorInfo, Finding, ProbeReport, ProbeResult, TLSInfo
from mpnet.core.tls import TLSDecision

STARTED_AT = "2026-11-02T10:15:00+00:00"
PROXY_PASSWORD = "s3cr3t-Pa55"


def direct(url: str = "https://api.example.test/ping") -> ProxyDecision:
    return ProxyDecision(target_url=url, proxy=None, layer="default")


def via_proxy(url: str = "https://api.example.test/ping") -> ProxyDecision:
    proxy = parse_proxy_url(f"http://trader:{PROXY_PASSWORD}@proxy.corp.test:3128")
    return ProxyDecision(target_url=url, proxy=proxy, layer="cli", source="--proxy")


def verified() -> TLSDecision:
    return TLSDecision(verify=True, ca="system", ca_kind="system", layer="default", reason="")


def insecure() -> TLSDecision:
    return TLSDecision(
        verify=False,
        ca=None,
        ca_kind="none",
        layer="cli",
        reason="--insecure",
        warnings=("TLS verification is OFF (--insecure)",),
    )


def ok_attempt(phases: Mapping[str, float], *, status: int | None = 200) -> Attempt:
    return Attempt(
        ok=True,
        phases=dict(phases),
        status=status,
        tls=TLSInfo(
            version="TLSv1.3",
            cipher="TLS_AES_256_GCM_SHA384",
            cert_not_after="2027-01-31T12:00:00+00:00",
            cert_days_left=90,
        ),
    )


def failed_attempt(
    phases: Mapping[str, float],
    *,
    phase: str = "http",
    kind: str = "http_status",
    message: str = "HTTP 451 Unavailable For Legal Reasons (expected 200)",
    status: int | None = 451,
) -> Attempt:
    return Attempt(
        ok=False,
        phases=dict(phases),
        error=ErrorInfo(phase=phase, kind=kind, message=message, status=status),
        status=status,
    )


def result(
    exchange: str,
    target: str,
    attempts: tuple[Attempt, ...],
    *,
    findings: tuple[Finding, ...] = (),
    proxy: ProxyDecision | None = None,
    ssl: TLSDecision | None = None,
) -> ProbeResult:
    url = "https://api.example.test/ping" if target == "rest" else "wss://ws.example.test/ws"
    return ProbeResult(
        exchange=exchange,
        target=target,
        url=url,
        attempts=attempts,
        proxy=proxy or direct(url),
        ssl=ssl or verified(),
        findings=findings,
    )


def report(*results: ProbeResult, interrupted: bool = False) -> ProbeReport:
    return ProbeReport(
        mpnet_version="0.0.0-test",
        started_at=STARTED_AT,
        results=tuple(results),
        interrupted=interrupted,
    )


GEO = Finding(
    code="GEO_BLOCKED",
    message="HTTP 451 with 'restricted location' in the body",
    hint="Route this exchange through a proxy in an allowed region.",
)
SKEW = Finding(
    code="CLOCK_SKEW",
    message="server Date is 42 s ahead of the local clock",
    hint="Synchronise the clock (chrony, systemd-timesyncd).",
    severity="warning",
)
