"""The HTML report in a real browser (headless chromium over the DevTools protocol).

What a reader sees: every target's phases laid out with a width, the findings on screen, no
console error, no request beyond the file itself, dark mode when asked, A4 when printed.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from chromium import Browser, Page, launched
from test_html_report import full_report
from typer.testing import CliRunner

from mpnet.cli.app import get_app
from mpnet.render.html import render_report_html

pytestmark = pytest.mark.browser

#: Lays out every phase element of every target: [exchange, target, phase, width, height].
PHASE_BOXES = """
[...document.querySelectorAll('section[data-exchange]')].flatMap(s =>
  [...s.querySelectorAll('[data-phase]')].map(e => {
    const r = e.getBoundingClientRect();
    return [s.dataset.exchange, s.dataset.target, e.dataset.phase, r.width, r.height];
  }))
"""
#: Findings as laid out: [exchange, target, code, visible height, text].
FINDINGS = """
[...document.querySelectorAll('section[data-exchange] li[data-code]')].map(e =>
  [e.closest('section').dataset.exchange, e.closest('section').dataset.target,
   e.dataset.code, e.getBoundingClientRect().height, e.innerText])
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched() as running:
        yield running


@pytest.fixture(scope="module")
def lab_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`mpnet probe --lab --all -n 3 --format html` with binance geo-blocked."""
    out = tmp_path_factory.mktemp("html") / "lab.html"
    args = ["probe", "--lab", "--all", "-n", "3", "--fault", "binance=geo_block"]
    run = CliRunner().invoke(get_app(), [*args, "--format", "html", "--output", str(out)])
    assert run.exit_code == 1, run.output
    return out


def opened(browser: Browser, path: Path, **size: int) -> Page:
    page = browser.new_page(**size)
    page.open(path.as_uri())
    return page


def test_every_target_shows_its_phases_and_findings(
    browser: Browser, lab_report: Path, tmp_path: Path
) -> None:
    page = opened(browser, lab_report)
    page.screenshot(tmp_path / "lab.png")  # for a person checking by eye (pytest keeps it)
    assert page.problems() == []
    # The file itself, nothing else: no font, stylesheet, image or script from anywhere.
    assert page.requests() == [lab_report.as_uri()]
    boxes = page.evaluate(PHASE_BOXES)
    targets = {(exchange, target) for exchange, target, *_ in boxes}
    assert len(targets) == 26, sorted(targets)
    drawn = {(e, t) for e, t, _, width, height in boxes if width > 0 and height > 0}
    assert drawn == targets
    ws_phases = {p for e, t, p, *_ in boxes if (e, t) == ("okx", "ws")}
    assert {"dns", "tcp", "tls", "ws_upgrade", "first_message"} <= ws_phases
    findings = page.evaluate(FINDINGS)
    geo = {(e, t): text for e, t, code, height, text in findings if code == "GEO_BLOCKED"}
    assert set(geo) == {("binance", "rest"), ("binance", "ws")}
    assert all(height > 0 for *_, height, _ in findings)
    assert "hint:" in geo["binance", "rest"] and "restricted location" in geo["binance", "rest"]


def test_tooltips_carry_the_milliseconds(browser: Browser, lab_report: Path) -> None:
    page = opened(browser, lab_report)
    titles = page.evaluate(
        "[...document.querySelectorAll('[data-phase] > title')].map(t => t.textContent)"
    )
    assert titles and all(re.search(r"\d+(\.\d+)? ms", t) for t in titles), titles[:5]


def test_dark_mode_follows_the_reader(browser: Browser, tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(render_report_html(full_report(exchanges=2, count=5)), encoding="utf-8")
    page = opened(browser, path)
    colours = (
        "[getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]"
    )
    light = page.evaluate(colours)
    page.send(
        "Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": "dark"}]
    )
    dark = page.evaluate(colours)
    page.screenshot(tmp_path / "dark.png")
    assert light == ["rgb(255, 255, 255)", "rgb(31, 35, 40)"]
    assert dark != light and luminance(dark[0]) < luminance(dark[1])
    # The hatch of a failed attempt resolves inside the page.
    fills = page.evaluate(
        "[...document.querySelectorAll('path.failed')].map(p => getComputedStyle(p).fill)"
    )
    assert fills and all('url("#hatch")' in f or "#hatch" in f for f in fills), fills
    assert page.problems() == []


def test_prints_on_a4(browser: Browser, tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(render_report_html(full_report(exchanges=13, count=10)), encoding="utf-8")
    page = opened(browser, path)
    pdf = page.send("Page.printToPDF", preferCSSPageSize=True, printBackground=False)["data"]
    data = base64.b64decode(pdf)
    boxes = set(re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data))
    # A4 is 595 x 842 points (210 x 297 mm).
    assert {(round(float(w)), round(float(h))) for w, h in boxes} == {(595, 842)}


def luminance(rgb: str) -> float:
    red, green, blue = (int(v) for v in re.findall(r"\d+", rgb)[:3])
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue
