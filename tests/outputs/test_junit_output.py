"""JUnit XML renderer: parsed back with ElementTree, never compared as text."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from report_builders import (
    GEO,
    PROXY_PASSWORD,
    SKEW,
    STARTED_AT,
    failed_attempt,
    insecure,
    ok_attempt,
    report,
    result,
    via_proxy,
)

from mpnet.core.result import Attempt, ErrorInfo, Finding, ProbeReport
from mpnet.render.junit import junit_xml

REST_PHASES = {"dns": 1.5, "tcp": 2.0, "tls": 10.25, "http": 30.0}
WS_PHASES = {"dns": 1.0, "tcp": 2.0, "tls": 8.0, "ws_upgrade": 5.0, "first_message": 20.0}


def parse(rep: ProbeReport) -> ET.Element:
    return ET.fromstring(junit_xml(rep).encode("utf-8"))


def cases(suite: ET.Element) -> dict[tuple[str, str], ET.Element]:
    return {(c.get("classname", ""), c.get("name", "")): c for c in suite.iter("testcase")}


MIXED = report(
    result("binance", "rest", (ok_attempt(REST_PHASES),)),
    result(
        "binance",
        "ws",
        (failed_attempt(WS_PHASES, phase="ws_upgrade", status=451),),
        findings=(GEO,),
    ),
    result("okx", "rest", (ok_attempt(REST_PHASES),), findings=(SKEW,)),
)


def test_suite_attributes_count_tests_and_failures() -> None:
    suite = parse(MIXED)
    assert suite.tag == "testsuite"
    assert suite.get("name") == "mpnet probe"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "0")
    assert suite.get("timestamp") == STARTED_AT
    expected = sum(r.shown_attempt.total_ms for r in MIXED.results if r.shown_attempt) / 1000
    assert float(suite.get("time", "nan")) == pytest.approx(expected, abs=0.002)


def test_one_testcase_per_exchange_and_target_with_phase_seconds() -> None:
    found = cases(parse(MIXED))
    assert set(found) == {("binance", "rest"), ("binance", "ws"), ("okx", "rest")}
    rest_seconds = sum(REST_PHASES.values()) / 1000
    assert float(found["binance", "rest"].get("time", "nan")) == pytest.approx(
        rest_seconds, abs=5e-4
    )


def test_failure_names_phase_finding_and_kind() -> None:
    failure = cases(parse(MIXED))["binance", "ws"].find("failure")
    assert failure is not None
    message = failure.get("message", "")
    assert message.startswith("ws_upgrade: GEO_BLOCKED: ")
    assert GEO.message in message
    assert failure.get("type") == "http_status"
    text = failure.text or ""
    for piece in ("HTTP 451 Unavailable", GEO.hint, "status: 451", "wss://ws.example.test/ws"):
        assert piece in text


def test_failure_without_findings_uses_error_message() -> None:
    rep = report(
        result(
            "kraken",
            "rest",
            (failed_attempt({"dns": 3.0}, phase="tcp", kind="refused", message="refused"),),
        )
    )
    failure = cases(parse(rep))["kraken", "rest"].find("failure")
    assert failure is not None
    assert (failure.get("message"), failure.get("type")) == ("tcp: refused", "refused")


def test_result_without_attempts_is_a_failure_not_a_crash() -> None:
    suite = parse(report(result("bybit", "ws", ()), interrupted=True))
    failure = cases(suite)["bybit", "ws"].find("failure")
    assert failure is not None and failure.get("type") == "interrupted"
    assert suite.get("failures") == "1"


def test_warning_finding_on_success_goes_to_system_out_not_failure() -> None:
    case = cases(parse(MIXED))["okx", "rest"]
    assert case.find("failure") is None
    out = case.findtext("system-out") or ""
    assert "CLOCK_SKEW" in out and SKEW.hint in out
    assert "tls=10.2" in out  # phase milliseconds are listed


@pytest.mark.parametrize(
    "odd",
    [
        "<html attr=\"x\">&amp; 'quoted'</html>",
        "control \x00 \x07 \x1b[31m characters \ufffe",
        "newlines\r\nand\ttabs",
        "emoji 🚀 and accents éü",
        "]]> cdata end",
    ],
)
def test_odd_characters_survive_as_parseable_xml(odd: str) -> None:
    rep = report(
        result(
            f"ex{odd}",
            "rest",
            (failed_attempt({"dns": 1.0}, message=f"bad body {odd}"),),
            findings=(Finding(code="ODD", message=odd, hint=odd),),
        )
    )
    suite = parse(rep)
    (case,) = list(suite.iter("testcase"))
    failure = case.find("failure")
    assert failure is not None
    printable = "".join(ch for ch in odd if ch.isprintable() or ch in "\r\n\t")
    for chunk in printable.split():
        if "\ufffe" not in chunk:
            assert chunk in (failure.text or "")
    assert "ODD" in failure.get("message", "")


def test_proxy_password_never_written() -> None:
    error_with_url = ErrorInfo(
        phase="proxy",
        kind="proxy_auth",
        message=f"proxy http://trader:{PROXY_PASSWORD}@proxy.corp.test:3128 said 407",
    )
    rep = report(
        result("deribit", "rest", (ok_attempt(REST_PHASES),), proxy=via_proxy()),
        result(
            "deribit",
            "ws",
            (Attempt(ok=False, error=error_with_url),),
            proxy=via_proxy(),
        ),
    )
    text = junit_xml(rep)
    assert PROXY_PASSWORD not in text
    assert "trader:***@proxy.corp.test:3128" in text


def test_insecure_tls_is_reported_on_success() -> None:
    rep = report(result("gate", "rest", (ok_attempt(REST_PHASES),), ssl=insecure()))
    out = cases(parse(rep))["gate", "rest"].findtext("system-out") or ""
    assert "verification OFF" in out and "TLS verification is OFF" in out


def test_clock_offset_and_feed_lag_in_the_test_case_text() -> None:
    from dataclasses import replace

    from mpnet.core.clock import SOURCE_REST, ClockSample, FeedRecorder, TimeField

    sample = ClockSample(
        SOURCE_REST, "serverTime", 1_800_000_000.0, 1_800_000_000.02, 1_800_000_001.51, 0.001, "x"
    )
    rest = replace(ok_attempt({"http": 20.0}), clock=sample)
    recorder = FeedRecorder(TimeField("E", "ms"))
    recorder.observe({"E": 1_800_000_000_000}, 1_800_000_000.25)
    ws = replace(ok_attempt({"ws_upgrade": 2.0}), feed=recorder.record(duration_s=1.0))
    out = junit_xml(report(result("okx", "rest", (rest,)), result("okx", "ws", (ws,))))
    assert "clock offset (ms): +1500.0 ±11.0 (rest.server_time" in out
    assert "feed lag (ms): p50 250.0 p95 250.0 max 250.0 (uncorrected; 1 messages)" in out


INTERCEPTED = Finding(
    code="TLS_INTERCEPTED",
    message="issued by 'CN=mitmproxy', which is not a public CA",
    hint="ask the network team to exempt the host from TLS inspection",
    severity="info",
)


def test_an_info_finding_fails_no_case_and_explains_no_failure() -> None:
    rep = report(
        result("okx", "rest", (ok_attempt(REST_PHASES),), findings=(INTERCEPTED,)),
        # A failure no rule explained: the info finding must not stand in for its cause.
        result(
            "okx",
            "ws",
            (failed_attempt(WS_PHASES, phase="first_message", kind="mystery", message="odd"),),
            findings=(INTERCEPTED,),
        ),
    )
    suite = parse(rep)
    assert suite.get("failures") == "1"
    found = cases(suite)
    assert found["okx", "rest"].find("failure") is None
    assert "info TLS_INTERCEPTED: " in (found["okx", "rest"].findtext("system-out") or "")
    failure = found["okx", "ws"].find("failure")
    assert failure is not None
    assert failure.get("message") == "first_message: odd"
    assert "info TLS_INTERCEPTED: " in (failure.text or "")
