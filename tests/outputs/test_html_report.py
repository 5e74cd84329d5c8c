"""`--format html`: one self-contained page drawn from the report's JSON document."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from html_dom import Element, parse
from report_builders import (
    GEO,
    PROXY_PASSWORD,
    SKEW,
    failed_attempt,
    insecure,
    ok_attempt,
    report,
    result,
)
from typer.testing import CliRunner

from mpnet.cli.app import get_app
from mpnet.core.proxy import resolve_proxy
from mpnet.core.result import PHASE_ORDER
from mpnet.render.html import findings_html, render_report_html, waterfall_svg

REST = {"dns": 1.5, "tcp": 10.25, "tls": 20.5, "http": 30.75}
WS = {
    "dns": 1.0,
    "tcp": 9.0,
    "tls": 19.0,
    "ws_upgrade": 8.0,
    "first_message": 50.0,
    "ping_rtt": 4.0,
}
#: The size a 13 exchanges x 2 targets x -n 10 report must stay under (e-mail attachments).
SIZE_LIMIT = 300 * 1024


def sections(doc: Element) -> dict[str, Element]:
    return {
        f"{s.attrs['data-exchange']} {s.attrs['data-target']}": s
        for s in doc.find_all("section", class_="target")
        if "data-exchange" in s.attrs
    }


def phase_titles(section: Element) -> dict[str, str]:
    return {
        e.attrs["data-phase"]: " ".join(t.text for t in e.iter("title"))
        for e in section.with_attr("data-phase")
    }


def test_every_phase_is_one_element_with_its_milliseconds() -> None:
    doc = parse(
        render_report_html(
            report(
                result("okx", "rest", (ok_attempt(REST),)),
                result("okx", "ws", (ok_attempt(WS, status=101),)),
            ).to_dict(),
            host="probe-box",
        )
    )
    found = sections(doc)
    assert set(found) == {"okx rest", "okx ws"}
    rest = phase_titles(found["okx rest"])
    assert list(rest) == ["dns", "tcp", "tls", "http"]
    assert "10.2 ms" in rest["tcp"] and "30.8 ms" in rest["http"]
    ws = phase_titles(found["okx ws"])
    assert list(ws) == ["dns", "tcp", "tls", "ws_upgrade", "first_message", "ping_rtt"]
    assert "50.0 ms" in ws["first_message"] and "on the open connection" in ws["ping_rtt"]
    # Each bar starts where the one before ended: tcp's bar begins right after dns's.
    waterfall = found["okx rest"].find_all("svg", class_="waterfall")[0]
    rects = {e.attrs["data-phase"]: e for e in waterfall.find_all("rect")}
    dns, tcp = rects["dns"], rects["tcp"]
    assert float(tcp.attrs["x"]) == pytest.approx(
        float(dns.attrs["x"]) + float(dns.attrs["width"]), abs=0.2
    )
    assert float(rects["http"].attrs["width"]) > float(rects["tls"].attrs["width"])
    header = doc.find_all("header")[0].text
    assert "probe-box" in header and "0.0.0-test" in header and "2/2 probes ok" in header


def test_a_failure_is_said_in_words_and_shape_not_by_colour_alone() -> None:
    doc = parse(
        render_report_html(
            report(
                result("binance", "rest", (failed_attempt(REST),), findings=(GEO,)),
                result("okx", "rest", (ok_attempt(REST),), findings=(SKEW,)),
            ).to_dict()
        )
    )
    found = sections(doc)
    failed = found["binance rest"]
    assert "✗ FAIL http" in failed.find_all("h2")[0].text
    (http,) = [e for e in failed.with_attr("data-phase") if e.attrs["data-phase"] == "http"]
    assert "failed" in http.attrs["class"].split() and "failed here" in http.text
    assert any(t.text == "HTTP first byte ✗ failed" for t in failed.iter("text"))
    (geo,) = failed.find_all("li", data_code="GEO_BLOCKED")
    assert "✗ error" in geo.text and "hint: Route this exchange" in geo.text
    (skew,) = found["okx rest"].find_all("li", data_code="CLOCK_SKEW")
    assert "⚠ warning" in skew.text and "warning" in skew.attrs["class"]
    assert "✓ ok" in found["okx rest"].find_all("h2")[0].text
    assert "✗ 1/2 probes ok, 1 failed" in doc.find_all("header")[0].text


def test_a_phase_that_failed_before_its_clock_stopped_is_still_drawn() -> None:
    svg = parse(waterfall_svg({"dns": 2.0, "tcp": 3.0}, failed_phase="tls"))
    marks = [e for e in svg.with_attr("data-phase") if e.attrs["data-phase"] == "tls"]
    assert len(marks) == 1 and "failed before its clock stopped" in marks[0].text
    assert "✗" in marks[0].text


def test_no_phase_at_all_says_so_instead_of_an_empty_picture() -> None:
    assert "no phase completed" in waterfall_svg({})


def test_the_proxy_password_never_reaches_the_page() -> None:
    url = "https://api.example.test/ping"
    decision = resolve_proxy(
        url, env={"HTTPS_PROXY": f"http://trader:{PROXY_PASSWORD}@proxy.corp.test:3128"}
    )
    page = render_report_html(
        report(result("deribit", "rest", (ok_attempt(REST),), proxy=decision)).to_dict()
    )
    assert PROXY_PASSWORD not in page
    doc = parse(page)
    (section,) = sections(doc).values()
    assert "http://trader:***@proxy.corp.test:3128 (env HTTPS_PROXY)" in section.text
    # The layer trace is shown, its values redacted too.
    rows = [r for r in section.iter("tr") if r.find_all("td")]
    layers = [(r.find_all("td")[0].text, r.find_all("td")[2].text) for r in rows[:5]]
    assert layers == [
        ("cli", "unset"),
        ("exchange", "unset"),
        ("service", "unset"),
        ("env", "won"),
        ("default", "shadowed"),
    ]


def test_insecure_tls_is_a_warning_on_the_page() -> None:
    page = render_report_html(
        report(result("okx", "rest", (ok_attempt(REST),), ssl=insecure())).to_dict()
    )
    assert "⚠ INSECURE, not verified (cli: --insecure)" in page
    assert "⚠ warning: TLS verification is OFF (--insecure)" in page


def test_server_text_is_escaped() -> None:
    hostile = failed_attempt(REST, message="<script>alert(1)</script> & <b>")
    page = render_report_html(report(result("bybit", "rest", (hostile,))).to_dict())
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;" in page


def test_the_page_asks_nothing_of_the_network() -> None:
    page = render_report_html(full_report(exchanges=2, count=3))
    doc = parse(page)
    assert not doc.find_all("script") and not doc.find_all("img")
    assert [link.attrs["href"] for link in doc.find_all("link")] == ["data:,"]
    assert not [e for e in doc.iter() if "src" in e.attrs]
    assert all(a.attrs["href"].startswith("#") for a in doc.find_all("a"))
    css = "".join(s.text for s in doc.find_all("style"))
    assert re.findall(r"url\(([^)]*)\)", page) == ["#hatch"]
    assert "@import" not in css
    # Dark mode follows the reader's setting; print has its own page and rules.
    assert "prefers-color-scheme:dark" in css and "@page{size:A4" in css and "@media print" in css


def test_keys_of_later_versions_are_shown_when_present() -> None:
    doc = parse(render_report_html(full_report(exchanges=1, count=4)))
    found = sections(doc)
    rest, ws = found["ex00 rest"], found["ex00 ws"]
    attempts = rest.with_attr("data-attempt")
    assert [a.attrs["data-attempt"] for a in attempts] == ["1", "2", "3", "4"]
    assert [a.attrs["data-ok"] for a in attempts] == ["true", "true", "false", "true"]
    assert "attempt 3: FAILED" in attempts[2].text and "event-loop lag" in attempts[2].text
    assert "Attempts in order (3 ok, 1 failed: ✗)" in rest.text
    assert "median of each over 4 attempts" in rest.text
    # Decisions every target shares are shown once, route first.
    (shared,) = doc.find_all("section", id="decisions")
    assert "routesocks5h://10.0.0.9:1080" in shared.text and "Decisions" not in rest.text
    assert "cloudflare" in rest.text and "FRA" in rest.text  # edge
    assert "-3.2 ms ± 0.8 ms" in rest.text and "exchange behind this clock" in rest.text
    assert "4.10 ms / 9.30 ms / 20.1 ms (corrected for the clock offset)" in ws.text
    assert "Event-loop lag while probing: up to 2.50 ms" in ws.text
    assert "Routes compared" in doc.text


def test_missing_optional_keys_are_left_out() -> None:
    bare = {"results": [{"exchange": "okx", "target": "rest", "ok": False}]}
    doc = parse(render_report_html(bare))
    (section,) = sections(doc).values()
    assert "– not run" in section.text and "no phase completed" in section.text
    assert "Attempts in order" not in section.text and "Edge" not in section.text


def test_thirteen_exchanges_two_targets_ten_attempts_stay_under_300_kb() -> None:
    page = render_report_html(full_report(exchanges=13, count=10), host="probe-box")
    size = len(page.encode("utf-8"))
    assert size < SIZE_LIMIT, f"{size} bytes"
    doc = parse(page)
    assert len(sections(doc)) == 26
    assert len(doc.with_attr("data-attempt")) == 260


def test_probe_format_html_end_to_end(tmp_path: Path) -> None:
    """The CLI against the lab (in this process): binance geo-blocked, okx fine, -n 2."""
    out = tmp_path / "report.html"
    args = ["probe", "--lab", "okx", "binance", "--fault", "binance=geo_block", "-n", "2"]
    run = CliRunner().invoke(get_app(), [*args, "--format", "html", "--output", str(out)])
    assert run.exit_code == 1, run.output
    doc = parse(out.read_text(encoding="utf-8"))
    found = sections(doc)
    assert set(found) == {"binance rest", "binance ws", "okx rest", "okx ws"}
    for name, section in found.items():
        phases = phase_titles(section)
        assert phases, name
        assert all(re.search(r"\d ms", title) for title in phases.values()), phases
    assert found["binance rest"].find_all("li", data_code="GEO_BLOCKED")
    assert found["okx ws"].attrs["data-ok"] == "true"
    assert socket.gethostname() in doc.find_all("header")[0].text


def test_probe_format_html_redacts_a_proxy_password(tmp_path: Path) -> None:
    """Through a proxy that refuses connections: the page names it, without the password."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    out = tmp_path / "report.html"
    proxy = f"http://trader:{PROXY_PASSWORD}@127.0.0.1:{port}"
    args = ["probe", "--lab", "okx", "--no-ws", "--proxy", proxy, "--timeout", "5"]
    run = CliRunner().invoke(get_app(), [*args, "--format", "html", "--output", str(out)])
    assert run.exit_code == 1, run.output
    page = out.read_text(encoding="utf-8")
    assert PROXY_PASSWORD not in page and PROXY_PASSWORD not in run.output
    assert f"http://trader:***@127.0.0.1:{port} (cli --proxy)" in parse(page).text


# -- a synthetic report with every optional key --------------------------------------------------


def full_report(*, exchanges: int, count: int) -> dict[str, Any]:
    """The JSON shape with samples, route, edge, clock, feed, traces and long findings."""
    results = []
    for index in range(exchanges):
        for target, phases in (("rest", REST), ("ws", WS)):
            samples = [
                {
                    "phases": {k: v * (1 + 0.1 * attempt) for k, v in phases.items()},
                    "ok": attempt != 2,
                    "error": None
                    if attempt != 2
                    else {"phase": "tls", "kind": "timeout", "message": "TLS handshake timed out"},
                    "loop_lag_ms": 0.25 * attempt,
                    "started_at": f"2026-11-02T10:15:0{attempt % 10}+00:00",
                    "tcp_rtt_kernel_ms": 0.08,
                }
                for attempt in range(count)
            ]
            doc = result(
                f"ex{index:02d}", target, (ok_attempt(phases),), findings=(GEO, SKEW)
            ).to_dict()
            doc["proxy"] = resolve_proxy(
                doc["url"], env={"HTTPS_PROXY": "socks5h://10.0.0.9:1080"}
            ).to_dict()
            doc.update(
                samples=samples,
                route="socks5h://10.0.0.9:1080",
                edge={"cdn": "cloudflare", "pop": "FRA", "id": "8c1f2e3d4a5b6c7d-FRA"},
                loop_lag_ms=2.5,
                findings=[
                    {
                        "code": code,
                        "message": "evidence " * 30,
                        "hint": "what to do " * 30,
                        "severity": severity,
                    }
                    for code, severity in (("GEO_BLOCKED", "error"), ("CLOCK_SKEW", "warning"))
                ],
            )
            if target == "rest":
                doc["clock"] = {
                    "offset_ms": -3.2,
                    "error_ms": 0.8,
                    "samples": 5,
                    "source": "rest.server_time",
                }
            else:
                doc["feed"] = {
                    "messages": 120,
                    "rate_per_s": 20.0,
                    "lag_ms": {"p50": 4.1, "p95": 9.3, "max": 20.1},
                    "corrected": True,
                }
            results.append(doc)
    full = report().to_dict()
    full["results"] = results
    full["summary"] = {"total": len(results), "ok": len(results), "failed": 0}
    full["comparison"] = [
        {
            "exchange": "ex00",
            "target": "rest",
            "fastest": "direct",
            "ranking": [
                {"route": "direct", "ok": True, "p50_ms": 50.0, "p95_ms": 60.0, "delta_ms": 0.0},
                {"route": "corp", "ok": False, "p50_ms": None, "p95_ms": None, "delta_ms": None},
            ],
        }
    ]
    # What the CLI would write is JSON: the page must be drawn from exactly that.
    loaded: dict[str, Any] = json.loads(json.dumps(full))
    return loaded


def test_phase_order_is_the_one_the_waterfall_draws() -> None:
    svg = parse(waterfall_svg({"http": 1.0, "dns": 1.0, "custom": 1.0, "tcp": 1.0}))
    drawn = [e.attrs["data-phase"] for e in svg.with_attr("data-phase")]
    assert drawn == [p for p in PHASE_ORDER if p in ("dns", "tcp", "http")] + ["custom"]


def test_findings_mark_each_severity_in_its_own_class() -> None:
    html = findings_html(
        [
            {"code": code, "message": "m", "hint": "h", "severity": severity}
            for code, severity in (
                ("GEO_BLOCKED", "error"),
                ("CLOCK_SKEW", "warning"),
                ("TLS_INTERCEPTED", "info"),
            )
        ]
    )
    assert '<li class="info" data-code="TLS_INTERCEPTED"><span class="info">ℹ info' in html
    assert '<li class="warning" data-code="CLOCK_SKEW"><span class="warn">⚠ warning' in html
    assert '<li class="error" data-code="GEO_BLOCKED"><span class="bad">✗ error' in html
