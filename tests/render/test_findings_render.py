"""The findings section: Rich renderable and plain text, built from diagnosed results."""

from __future__ import annotations

import pytest
from rich.console import Console

from mpnet.core.diagnose import diagnose
from mpnet.core.proxy import ProxyDecision
from mpnet.core.proxy_url import ProxyURL
from mpnet.core.result import Attempt, ErrorInfo, Finding, ProbeResult
from mpnet.core.tls import TLSDecision
from mpnet.render.findings import findings_section, findings_text, grouped_findings

PASSWORD = "Hunter2Hunter2"
PROXY = ProxyURL("http", "proxy.corp", 3128, "alice", PASSWORD)
VERIFY = TLSDecision(True, "system", "system", "default", "default")
INSECURE = TLSDecision(False, None, "none", "cli", "--insecure", warnings=("off",))


def result(
    exchange: str,
    target: str,
    error: ErrorInfo | None = None,
    *,
    proxy: ProxyURL | None = None,
    ssl: TLSDecision = VERIFY,
    findings: tuple[Finding, ...] = (),
) -> ProbeResult:
    url = "https://api.example.test/ping" if target == "rest" else "wss://ws.example.test/ws"
    decision = ProxyDecision(
        url, proxy, "env" if proxy else "default", "HTTPS_PROXY" if proxy else None
    )
    attempt = Attempt(ok=error is None, error=error)
    return ProbeResult(exchange, target, url, (attempt,), decision, ssl, findings)


def geo_blocked_run() -> tuple[ProbeResult, ...]:
    return diagnose(
        [
            result("binance", "rest", ErrorInfo("http", "http_status", "HTTP 451", status=451)),
            result("binance", "ws", proxy=PROXY),
            result("okx", "rest", ssl=INSECURE),
            result("kraken", "rest"),
        ]
    )


def rendered(results: tuple[ProbeResult, ...], width: int = 200) -> str:
    console = Console(record=True, width=width, color_system=None, legacy_windows=False)
    section = findings_section(results)
    assert section is not None
    console.print(section)
    return console.export_text()


def test_text_lists_each_target_with_severity_code_message_and_hint() -> None:
    text = findings_text(geo_blocked_run())
    lines = text.splitlines()
    assert lines[0] == "binance rest"
    assert lines[1].startswith(
        "  error GEO_BLOCKED: the REST endpoint at api.example.test answered 451"
    )
    assert lines[2].startswith("    hint: binance refuses requests by the country")
    assert "  warning PATH_DIVERGENCE: REST (https://api.example.test/ping) goes direct" in text
    assert "okx rest\n  warning INSECURE_TLS: " in text
    assert "kraken" not in text  # no findings, no heading
    assert PASSWORD not in text
    assert text.endswith("\n")


def test_divergence_attached_to_both_targets_is_shown_once() -> None:
    results = geo_blocked_run()
    assert all("PATH_DIVERGENCE" in [f.code for f in r.findings] for r in results[:2])
    assert findings_text(results).count("PATH_DIVERGENCE") == 1
    groups = dict(grouped_findings(results))
    assert "binance ws" not in groups  # its only finding was already shown under binance rest


def test_rich_section_shows_markers_codes_and_hints() -> None:
    out = rendered(geo_blocked_run())
    assert out.splitlines()[0] == "Findings"
    assert "binance rest" in out and "okx rest" in out and "kraken" not in out
    assert "✗ GEO_BLOCKED" in out
    assert "! INSECURE_TLS" in out
    assert "hint: drop `--insecure`" in out
    assert PASSWORD not in out


def test_rich_section_aligns_messages_and_hints_in_one_column() -> None:
    lines = rendered(geo_blocked_run(), width=60).splitlines()
    column = lines[2].index("the REST endpoint")
    assert lines[2].startswith("  ✗ GEO_BLOCKED")  # indented under its heading
    hints = [line for line in lines if "hint:" in line]
    assert len(hints) == 3  # GEO_BLOCKED, PATH_DIVERGENCE, INSECURE_TLS
    assert {line.index("hint:") for line in hints} == {column}
    # Wrapped continuation lines stay in the message column too.
    assert all(line[:column].strip() == "" for line in lines[3:5])


@pytest.mark.parametrize("odd", ["[bold]not markup[/bold]", "[link=http://x]y[/link]", "a\nb"])
def test_server_text_is_shown_literally(odd: str) -> None:
    results = (result("x", "rest", findings=(Finding("HTTP_ERROR", odd, odd),)),)
    out = rendered(results)
    for part in odd.split("\n"):
        assert part in out
    assert findings_text(results) == (
        f"x rest\n  error HTTP_ERROR: {' '.join(odd.split())}\n    hint: {' '.join(odd.split())}\n"
    )


def test_nothing_to_show() -> None:
    results = (result("kraken", "rest"), result("kraken", "ws"))
    assert findings_section(results) is None
    assert findings_text(results) == ""
    assert findings_section(()) is None


# -- one cause, one finding ------------------------------------------------------------------


def at(exchange: str, target: str, host: str, error: ErrorInfo, proxy: ProxyURL | None = None):  # type: ignore[no-untyped-def]
    url = f"https://{host}/api" if target == "rest" else f"wss://{host}/ws"
    decision = ProxyDecision(
        url, proxy, "env" if proxy else "default", "HTTPS_PROXY" if proxy else None
    )
    return ProbeResult(exchange, target, url, (Attempt(ok=False, error=error),), decision, VERIFY)


NO_DNS = ErrorInfo("dns", "no_resolver", "cannot resolve: no DNS resolver answered")
NXDOMAIN = ErrorInfo("dns", "nxdomain", "cannot resolve: the name does not exist")
PROXY_DOWN = ErrorInfo("tcp", "proxy_unreachable", "cannot reach proxy: connection refused")


def offline_run() -> tuple[ProbeResult, ...]:
    return diagnose(
        [
            at("binance", "rest", "api.binance.com", NO_DNS),
            at("binance", "ws", "stream.binance.com", NO_DNS),
            at("okx", "rest", "www.okx.com", NO_DNS),
            at("okx", "ws", "ws.okx.com", NO_DNS),
            at("kraken", "rest", "api.kraken.com", NO_DNS),
            at("kraken", "ws", "ws.kraken.com", NXDOMAIN),
        ]
    )


def test_one_cause_on_several_exchanges_is_one_finding_with_its_targets() -> None:
    results = offline_run()
    assert all(r.findings for r in results)  # every target keeps its own finding (JSON)
    text = findings_text(results)
    lines = text.splitlines()
    assert lines[0] == "5 targets, one cause: binance, okx, kraken rest"
    assert lines[1].startswith(
        "  error DNS_FAILURE: no DNS resolver answered for api.binance.com (and 4 other hosts): "
    )
    assert lines[2].startswith("    hint: check the network link and /etc/resolv.conf")
    # A different cause stays with its target.
    assert lines[3] == "kraken ws"
    assert "ws.kraken.com does not exist" in lines[4]
    assert text.count("DNS_FAILURE") == 2 and text.count("hint:") == 2


def test_the_same_proxy_down_for_every_exchange_is_one_finding() -> None:
    results = diagnose(
        [at(name, "rest", f"api.{name}.com", PROXY_DOWN, PROXY) for name in ("a", "b", "c")]
    )
    groups = grouped_findings(results)
    assert [heading for heading, _ in groups] == ["3 targets, one cause: a, b, c"]
    [(_, [finding])] = groups
    assert finding.code == "PROXY_UNREACHABLE" and "proxy.corp" in finding.message
    out = rendered(results, width=80)
    assert out.count("PROXY_UNREACHABLE") == 1 and out.count("hint:") == 1
    assert PASSWORD not in out


def test_one_exchange_alone_keeps_its_per_target_findings() -> None:
    results = diagnose(
        [
            at("deribit", "rest", "www.deribit.com", NO_DNS),
            at("deribit", "ws", "ws.deribit.com", NO_DNS),
        ]
    )
    headings = [heading for heading, _ in grouped_findings(results)]
    assert headings == ["deribit rest", "deribit ws"]


def test_exchange_names_inside_other_names_do_not_make_a_shared_cause() -> None:
    # "binance" appears inside "binance-usdm": setting names aside must not merge real
    # differences, here two different hosts failing for different reasons.
    results = diagnose(
        [
            at("binance", "rest", "api.binance.com", NO_DNS),
            at("binance-usdm", "rest", "fapi.binance.com", NXDOMAIN),
        ]
    )
    assert [heading for heading, _ in grouped_findings(results)] == [
        "binance rest",
        "binance-usdm rest",
    ]
