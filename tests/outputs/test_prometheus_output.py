"""Prometheus renderer: parsed back with prometheus_client's own parser."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families
from report_builders import (
    GEO,
    PROXY_PASSWORD,
    SKEW,
    failed_attempt,
    insecure,
    ok_attempt,
    report,
    result,
    via_proxy,
)

from mpnet.core.result import Attempt, ErrorInfo, Finding, ProbeReport, TLSInfo
from mpnet.render.prometheus import METRICS, prometheus_text

Sample = tuple[str, dict[str, str], float]

REST_PHASES = {"dns": 1.5, "tcp": 2.0, "tls": 10.0, "http": 30.0}
WS_PHASES = {"dns": 1.0, "tcp": 2.0, "tls": 8.0, "ws_upgrade": 5.0, "first_message": 20.0}


def samples(rep: ProbeReport) -> list[Sample]:
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(prometheus_text(rep))
        for s in family.samples
    ]


def value(found: list[Sample], name: str, **labels: str) -> float:
    matching = [v for n, lab, v in found if n == name and lab == labels]
    assert len(matching) == 1, (name, labels, matching)
    return matching[0]


def names_for(found: list[Sample], exchange: str, target: str) -> set[str]:
    return {n for n, lab, _ in found if lab.get("exchange") == exchange and lab["target"] == target}


MIXED = report(
    result(
        "binance",
        "rest",
        (ok_attempt(REST_PHASES), ok_attempt({"dns": 1.0, "http": 9.0})),
        findings=(SKEW,),
    ),
    result(
        "binance",
        "ws",
        (failed_attempt(WS_PHASES, phase="ws_upgrade"),),
        findings=(GEO, GEO, SKEW),
        proxy=via_proxy("wss://ws.example.test/ws"),
    ),
)


def test_every_metric_has_help_text_and_a_known_name() -> None:
    families = {f.name: f for f in text_string_to_metric_families(prometheus_text(MIXED))}
    for name, help_text, _ in METRICS:
        family = families[name]
        assert family.documentation == help_text
        assert family.type == "gauge"


@pytest.mark.parametrize(
    ("exchange", "target", "success"), [("binance", "rest", 1.0), ("binance", "ws", 0.0)]
)
def test_success_per_target(exchange: str, target: str, success: float) -> None:
    found = samples(MIXED)
    assert value(found, "mpnet_probe_success", exchange=exchange, target=target) == success


def test_duration_is_the_shown_attempts_phase_sum_in_seconds() -> None:
    found = samples(MIXED)
    # The last success of the REST pair is shown.
    shown = MIXED.results[0].shown_attempt
    assert shown is not None
    assert value(
        found, "mpnet_probe_duration_seconds", exchange="binance", target="rest"
    ) == pytest.approx(shown.total_ms / 1000)
    assert value(
        found, "mpnet_probe_duration_seconds", exchange="binance", target="ws"
    ) == pytest.approx(sum(WS_PHASES.values()) / 1000)


@pytest.mark.parametrize(("phase", "ms"), sorted(WS_PHASES.items()))
def test_phase_seconds(phase: str, ms: float) -> None:
    found = samples(MIXED)
    got = value(found, "mpnet_probe_phase_seconds", exchange="binance", target="ws", phase=phase)
    assert got == pytest.approx(ms / 1000)


def test_cert_expiry_status_and_counts() -> None:
    found = samples(MIXED)
    rest = {"exchange": "binance", "target": "rest"}
    expiry = datetime.fromisoformat("2027-01-31T12:00:00+00:00").timestamp()
    assert value(found, "mpnet_probe_tls_cert_expiry_timestamp_seconds", **rest) == expiry
    assert value(found, "mpnet_probe_http_status_code", **rest) == 200
    assert value(found, "mpnet_probe_http_status_code", exchange="binance", target="ws") == 451
    assert value(found, "mpnet_probe_attempts", **rest) == 2
    assert value(found, "mpnet_probe_successes", **rest) == 2
    assert value(found, "mpnet_probe_successes", exchange="binance", target="ws") == 0


def test_latency_percentiles_over_successes_only() -> None:
    found = samples(MIXED)
    rest = {"exchange": "binance", "target": "rest"}
    low, high = sorted([10.0, sum(REST_PHASES.values())])
    assert value(found, "mpnet_probe_latency_p50_seconds", **rest) == pytest.approx(low / 1000)
    assert value(found, "mpnet_probe_latency_p95_seconds", **rest) == pytest.approx(high / 1000)
    ws_names = names_for(found, "binance", "ws")
    assert "mpnet_probe_latency_p50_seconds" not in ws_names
    assert "mpnet_probe_latency_p95_seconds" not in ws_names


def test_findings_counted_by_code() -> None:
    found = samples(MIXED)
    ws = {"exchange": "binance", "target": "ws"}
    assert value(found, "mpnet_probe_findings", code="GEO_BLOCKED", **ws) == 2
    assert value(found, "mpnet_probe_findings", code="CLOCK_SKEW", **ws) == 1


@pytest.mark.parametrize(
    ("target", "layer", "scheme"), [("rest", "default", "direct"), ("ws", "cli", "http")]
)
def test_proxy_info_names_layer_and_scheme_only(target: str, layer: str, scheme: str) -> None:
    found = samples(MIXED)
    info = [lab for n, lab, _ in found if n == "mpnet_probe_proxy_info" and lab["target"] == target]
    assert info == [{"exchange": "binance", "target": target, "layer": layer, "scheme": scheme}]


def test_no_secret_or_proxy_host_in_any_label_or_text() -> None:
    rep = report(
        result(
            "deribit",
            "rest",
            (
                failed_attempt(
                    {"dns": 1.0},
                    phase="proxy",
                    kind="proxy_auth",
                    message=f"http://trader:{PROXY_PASSWORD}@proxy.corp.test:3128 said 407",
                ),
            ),
            proxy=via_proxy(),
            findings=(Finding(code="PROXY_AUTH", message="407", hint="check the password"),),
        )
    )
    text = prometheus_text(rep)
    assert PROXY_PASSWORD not in text
    for _, labels, _ in samples(rep):
        for label_value in labels.values():
            assert "proxy.corp.test" not in label_value and "trader" not in label_value


def test_tls_verify_off_is_visible() -> None:
    rep = report(result("gate", "rest", (ok_attempt(REST_PHASES),), ssl=insecure()))
    assert value(samples(rep), "mpnet_probe_tls_verify", exchange="gate", target="rest") == 0


def test_result_without_attempts_reports_failure_only() -> None:
    found = samples(report(result("bybit", "ws", ()), interrupted=True))
    assert value(found, "mpnet_probe_success", exchange="bybit", target="ws") == 0
    assert "mpnet_probe_duration_seconds" not in names_for(found, "bybit", "ws")


def test_label_values_with_quotes_and_newlines_are_escaped() -> None:
    odd = 'ex"\\\nchange'
    found = samples(report(result(odd, "rest", (ok_attempt(REST_PHASES),))))
    assert value(found, "mpnet_probe_success", exchange=odd, target="rest") == 1


def test_failure_before_any_phase_has_no_duration() -> None:
    rep = report(result("binance", "ws", (failed_attempt({}, phase="ws_upgrade"),)))
    found = samples(rep)
    assert value(found, "mpnet_probe_success", exchange="binance", target="ws") == 0
    assert value(found, "mpnet_probe_http_status_code", exchange="binance", target="ws") == 451
    assert "mpnet_probe_duration_seconds" not in names_for(found, "binance", "ws")


@pytest.mark.parametrize(
    ("attempt", "status"),
    [
        (ok_attempt(WS_PHASES, status=None), 101),
        (failed_attempt(WS_PHASES, phase="first_message", kind="timeout", status=None), 101),
        (
            failed_attempt({"dns": 1.0, "tcp": 1.0}, phase="tls", kind="untrusted", status=None),
            None,
        ),
        (failed_attempt({"tcp": 1.0, "ws_upgrade": 2.0}, phase="ws_upgrade", status=403), 403),
    ],
)
def test_websocket_upgrade_status(attempt: Attempt, status: int | None) -> None:
    found = samples(report(result("okx", "ws", (attempt,))))
    codes = [v for n, lab, v in found if n == "mpnet_probe_http_status_code"]
    assert codes == ([] if status is None else [status])


def issuer_attempt(issuer: str | None) -> Attempt:
    return Attempt(
        ok=True, phases=dict(REST_PHASES), status=200, tls=TLSInfo("TLSv1.3", cert_issuer=issuer)
    )


ISSUERS = report(
    result("binance", "rest", (issuer_attempt("CN=R11, O=Let's Encrypt, C=US"),)),
    result("binance", "ws", (issuer_attempt("CN=mitmproxy, O=mitmproxy"),)),
    result("okx", "rest", (issuer_attempt(None),)),
    # A refused handshake names the issuer it refused: the exchange's certificate was seen.
    result(
        "okx",
        "ws",
        (
            Attempt(
                ok=False,
                phases={"tcp": 1.0},
                error=ErrorInfo(
                    "tls", "untrusted", "certificate verify failed", issuer="CN=Zscaler Root CA"
                ),
            ),
        ),
    ),
    result("bybit", "rest", (failed_attempt({"dns": 1.0}, phase="tcp", kind="refused"),)),
)


@pytest.mark.parametrize(
    ("exchange", "target", "kind"),
    [
        ("binance", "rest", "public"),
        ("binance", "ws", "private"),
        ("okx", "rest", "unknown"),
        ("okx", "ws", "private"),
    ],
)
def test_tls_info_names_the_issuers_kind(exchange: str, target: str, kind: str) -> None:
    found = samples(ISSUERS)
    info = [
        lab
        for n, lab, _ in found
        if n == "mpnet_probe_tls_info" and (lab["exchange"], lab["target"]) == (exchange, target)
    ]
    assert info == [{"exchange": exchange, "target": target, "issuer_kind": kind}]
    assert value(found, "mpnet_probe_tls_info", **info[0]) == 1


def test_no_tls_info_without_a_certificate_and_never_the_issuer_itself() -> None:
    assert "mpnet_probe_tls_info" not in names_for(samples(ISSUERS), "bybit", "rest")
    text = prometheus_text(ISSUERS)
    assert "mitmproxy" not in text and "Zscaler" not in text


def test_tls_info_carries_the_route_when_routes_are_compared() -> None:
    routed = report(
        replace(result("binance", "rest", (issuer_attempt("CN=mitmproxy"),)), route="office"),
        replace(result("binance", "rest", (issuer_attempt("CN=R11"),)), route="direct"),
    )
    found = samples(routed)
    kinds = {lab["route"]: lab["issuer_kind"] for n, lab, _ in found if n == "mpnet_probe_tls_info"}
    assert kinds == {"office": "private", "direct": "public"}
