"""`mpnet serve`'s status page: the ring buffer of recent probes, the page drawn from it, and
the live page of a `serve --lab` child in chromium."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from chromium import launched
from html_dom import parse
from mpnet_process import MpnetProcess
from report_builders import GEO, failed_attempt, ok_attempt, report, result

from mpnet.probe.recent import RecentProbes
from mpnet.render.status_page import clock_time, status_page_html

REST = {"dns": 1.0, "tcp": 2.0, "tls": 3.0, "http": 4.0}


def probe_of(exchange: str, *, ok: bool = True) -> Any:
    attempt = ok_attempt(REST) if ok else failed_attempt(REST)
    return report(result(exchange, "rest", (attempt,), findings=() if ok else (GEO,)))


def test_the_ring_keeps_the_last_probes_of_each_target_oldest_first() -> None:
    recent = RecentProbes(per_target=3)
    for index in range(5):
        recent.add(probe_of("okx", ok=index != 3))
    recent.add(probe_of("bybit"))
    okx = recent.history("okx", "rest")
    assert [p.serial for p in okx] == [3, 4, 5]
    assert [p.ok for p in okx] == [True, False, True]
    assert recent.latest("okx", "rest") is okx[-1]
    assert recent.targets() == [("bybit", "rest"), ("okx", "rest")]
    assert len(recent) == 4 and recent.recorded == 6
    assert recent.history("okx", "ws") == [] and recent.latest("okx", "ws") is None


def test_the_least_recently_probed_target_is_forgotten_first() -> None:
    recent = RecentProbes(per_target=2, max_targets=2)
    for name in ("a", "b", "a", "c"):
        recent.add(probe_of(name))
    assert recent.targets() == [("a", "rest"), ("c", "rest")]


def test_a_kept_probe_is_a_report_of_its_own() -> None:
    recent = RecentProbes()
    recent.add(probe_of("okx", ok=False))
    kept = recent.latest("okx", "rest")
    assert kept is not None
    document = kept.report()
    assert document["summary"] == {"total": 1, "ok": 0, "failed": 1}
    assert document["results"][0]["findings"][0]["code"] == "GEO_BLOCKED"
    assert document["started_at"] == "2026-11-02T10:15:00+00:00"


def test_ring_sizes_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RecentProbes(per_target=0)


def test_the_page_shows_each_target_its_history_and_links() -> None:
    recent = RecentProbes()
    for ok in (True, False, True, False):
        recent.add(probe_of("binance", ok=ok))
    recent.add(probe_of("okx"))
    page = status_page_html(
        exchanges=["binance", "kraken", "okx"],
        recent=recent,
        version="9.9",
        host="box",
        now="2026-11-02T10:16:00+00:00",
        refresh_s=7,
    )
    doc = parse(page)
    (refresh,) = [m for m in doc.find_all("meta") if m.attrs.get("http-equiv") == "refresh"]
    assert refresh.attrs["content"] == "7"
    rows = {
        (r.attrs["data-exchange"], r.attrs["data-target"]): r
        for r in doc.find_all("tr")
        if "data-exchange" in r.attrs
    }
    assert set(rows) == {("binance", "rest"), ("okx", "rest")}
    binance = rows["binance", "rest"]
    assert "✗ FAIL http" in binance.text and "2/4" in binance.text and "GEO_BLOCKED" in binance.text
    bars = binance.with_attr("data-attempt")
    assert [b.attrs["data-ok"] for b in bars] == ["true", "false", "true", "false"]
    assert "probe #4 at 2026-11-02T10:15:00+00:00: FAILED" in bars[-1].text
    hrefs = {a.attrs["href"] for a in binance.find_all("a")}
    assert {
        "/probe?exchange=binance&target=rest",
        "/probe?exchange=binance&target=rest&debug=true",
        "/probe?exchange=binance&target=rest&format=html",
        "/recent?exchange=binance&target=rest",
    } <= hrefs
    sections = {s.attrs["data-exchange"]: s for s in doc.find_all("section")}
    assert [e.attrs["data-phase"] for e in sections["binance"].with_attr("data-phase")] == list(
        REST
    )
    assert sections["binance"].find_all("li", data_code="GEO_BLOCKED")
    (kraken,) = [li for li in doc.find_all("li") if li.text.startswith("kraken")]
    assert "not probed yet" in kraken.text
    assert "✗ 1 of 2 targets failed their last probe" in doc.text


def test_the_page_before_any_probe_and_without_reload() -> None:
    page = status_page_html(
        exchanges=["okx"], recent=RecentProbes(), version="1", host="h", now="n", refresh_s=0
    )
    doc = parse(page)
    assert not [m for m in doc.find_all("meta") if "http-equiv" in m.attrs]
    assert "No probe yet" in doc.text and "does not reload" in doc.text


@pytest.mark.parametrize(
    ("started_at", "shown"),
    [
        ("2026-11-02T10:15:00+00:00", "10:15:00 UTC"),
        ("2026-11-02T10:15:00Z", "10:15:00 UTC"),
        ("2026-11-02T10:15:00+02:00", "10:15:00+02:00"),
        ("", ""),
    ],
)
def test_clock_time(started_at: str, shown: str) -> None:
    assert clock_time(started_at) == shown


# -- the live page ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process = MpnetProcess(
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--lab",
        "--fault",
        "binance=geo_block",
        cwd=str(tmp_path_factory.mktemp("serve")),
    )
    try:
        yield process.wait_for(r"on (http://127\.0\.0\.1:\d+/)").group(1)
    finally:
        process.stop()


async def get(url: str) -> tuple[int, str, str]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


@pytest.mark.browser
async def test_the_live_status_page_in_a_browser(exporter: str) -> None:
    for _ in range(2):
        for name in ("okx", "binance"):
            status, _, _ = await get(f"{exporter}probe?exchange={name}")
            assert status == 200
    with launched() as browser:
        page = browser.new_page()
        page.open(exporter)
        assert page.problems() == []
        assert page.requests() == [exporter]
        assert page.evaluate("document.querySelector('meta[http-equiv=refresh]').content") == "10"
        rows = page.evaluate(
            "[...document.querySelectorAll('tr[data-exchange]')].map(r =>"
            " [r.dataset.exchange, r.dataset.target, r.querySelectorAll('[data-attempt]').length])"
        )
        assert sorted(map(tuple, rows)) == [
            ("binance", "rest", 2),
            ("binance", "ws", 2),
            ("okx", "rest", 2),
            ("okx", "ws", 2),
        ]
        drawn = page.evaluate(
            "[...document.querySelectorAll('section[data-exchange]')].map(s =>"
            " [s.dataset.exchange, s.dataset.target,"
            "  [...s.querySelectorAll('[data-phase]')]"
            "   .filter(e => e.getBoundingClientRect().width > 0).length])"
        )
        assert len(drawn) == 4 and all(count > 0 for *_, count in drawn), drawn
        codes = page.evaluate(
            "[...document.querySelectorAll('li[data-code]')].map(li => li.dataset.code)"
        )
        assert codes.count("GEO_BLOCKED") == 2
        # The HTML view of a probe, followed from the page as a reader would.
        link = page.evaluate(
            "document.querySelector('tr[data-exchange=okx][data-target=ws] a[href*=format]').href"
        )
        page.open(link)
        assert page.problems() == []
        assert page.evaluate(
            "[...document.querySelectorAll('section[data-exchange=okx] [data-phase]')]"
            ".map(e => e.dataset.phase)"
        )[:3] == ["dns", "tcp", "tls"]
    # The JSON link answers the debug report.
    status, content_type, body = await get(f"{exporter}probe?exchange=okx&debug=true")
    assert status == 200 and content_type.startswith("application/json")
    assert {r["target"] for r in json.loads(body)["results"]} == {"rest", "ws"}
    status, _, body = await get(f"{exporter}recent?exchange=binance&target=rest")
    assert status == 200 and "GEO_BLOCKED" in body
    status, _, body = await get(f"{exporter}recent?exchange=nosuch&target=rest")
    assert status == 404 and "binance rest" in body
