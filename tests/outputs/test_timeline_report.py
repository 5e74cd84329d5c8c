"""`watch --record FILE.jsonl` and `mpnet report FILE.jsonl`: latency over time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from html_dom import Element, parse
from typer.testing import CliRunner

from mpnet.cli.app import get_app
from mpnet.core.watch import FeedSample, WatchRow
from mpnet.errors import UsageError
from mpnet.probe.timeline import (
    Timeline,
    drop_indexes,
    parse_records,
    reconnect_indexes,
    record_lines,
    record_of,
    summarize,
)
from mpnet.render.timeline_html import MAX_DOTS, render_timeline_html


def rec(second: int, ok: bool | None, ms: float | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "at": f"2026-11-02T10:{second // 60:02d}:{second % 60:02d}.000+00:00",
        "exchange": extra.pop("exchange", "okx"),
        "target": extra.pop("target", "rest"),
        "ok": ok,
        "ms": ms,
        **extra,
    }


def lines(*records: dict[str, Any]) -> list[str]:
    return [json.dumps(r) + "\n" for r in records]


def test_a_watch_row_becomes_one_record() -> None:
    row = WatchRow(
        exchange="okx",
        target="ws",
        attempts=4,
        window=4,
        last_ok=False,
        last_phases={"dns": 1.23456},
        last_ms=None,
        last_error="first_message timeout",
        last_finding="NO_DATA",
        consecutive_failures=2,
        drops=1,
        feed=FeedSample(connected=False, reconnects=3, gaps=2, messages=0),
    )
    (line,) = record_lines([row], cycle=4, at="2026-11-02T10:00:08.000+00:00").splitlines()
    record = json.loads(line)
    assert record == record_of(row, cycle=4, at="2026-11-02T10:00:08.000+00:00")
    assert record["phases"] == {"dns": 1.235} and record["ms"] is None
    assert (record["error"], record["finding"], record["drops"]) == (
        "first_message timeout",
        "NO_DATA",
        1,
    )
    assert record["feed"] == {"connected": False, "reconnects": 3, "gaps": 2, "messages": 0}
    assert "clock" not in record


def test_records_are_grouped_per_target_in_file_order() -> None:
    written = lines(rec(0, True, 5.0), rec(0, True, 9.0, target="ws"), rec(2, False))
    # A blank line, then a last line cut short (the watch was killed while writing it).
    timelines = parse_records([*written, "\n", '{"at": "2026-11-02T10:00:04'], source="w.jsonl")
    assert [(t.exchange, t.target, len(t.records)) for t in timelines] == [
        ("okx", "rest", 2),
        ("okx", "ws", 1),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (["not json\n", json.dumps(rec(0, True, 1.0)) + "\n"], "w.jsonl:1: not a JSON line"),
        (["[1, 2]\n"], "w.jsonl:1: expected an object with 'at', 'exchange' and 'target'"),
        ([json.dumps({"at": "x", "exchange": "okx"}) + "\n"], "w.jsonl:1: expected an object"),
        (["\n", "  \n"], "w.jsonl: no record in it"),
    ],
)
def test_a_bad_file_is_refused_naming_the_line(content: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_records(content, source="w.jsonl")


def test_drops_reconnects_and_summary() -> None:
    feed = {"connected": True, "reconnects": 0}
    records = (
        rec(0, True, 10.0, drops=0, feed=feed),
        rec(2, False, None, drops=1, feed=feed),
        rec(4, True, 30.0, drops=1, feed=feed | {"reconnects": 1}),
        rec(6, True, 20.0, drops=1, feed=feed | {"reconnects": 1}),
        rec(8, False, None, drops=2, feed=feed | {"reconnects": 2}),
    )
    assert drop_indexes(records) == [1, 4]
    assert reconnect_indexes(records) == [2, 4]
    # Without the counters, ok -> fail transitions.
    bare = [{k: v for k, v in r.items() if k not in ("drops", "feed")} for r in records]
    assert drop_indexes(bare) == [1, 4] and reconnect_indexes(bare) == []
    summary = summarize(Timeline("okx", "ws", records))
    assert (summary.cycles, summary.failed, summary.loss_pct) == (5, 2, 40.0)
    assert (summary.p50_ms, summary.p95_ms, summary.max_ms) == (20.0, 30.0, 30.0)
    assert (summary.drops, summary.reconnects) == (2, 2)


def page_of(records: list[dict[str, Any]]) -> Element:
    return parse(render_timeline_html(parse_records(lines(*records), source="w"), source="w"))


def section(doc: Element, exchange: str, target: str) -> Element:
    (found,) = [
        s
        for s in doc.find_all("section")
        if (s.attrs.get("data-exchange"), s.attrs.get("data-target")) == (exchange, target)
    ]
    return found


def test_the_chart_marks_band_failures_drops_and_reconnects() -> None:
    feed = {"connected": True, "reconnects": 0}
    records = [rec(s, True, 10.0 + s % 7, drops=0, feed=feed) for s in range(0, 60, 2)]
    records[10] = rec(20, False, None, drops=1, feed=feed, error="ping timeout")
    records[20] = rec(40, True, 12.0, drops=1, feed=feed | {"reconnects": 1})
    for later in range(11, 30):
        records[later]["drops"] = 1
        if later > 20:
            records[later]["feed"] = feed | {"reconnects": 1}
    records.append(rec(0, True, 50.0, exchange="bybit"))
    doc = page_of(records)
    okx = section(doc, "okx", "rest")
    (band,) = okx.find_all("path", data_series="p50-p95")
    assert band.attrs["d"].startswith("M") and band.attrs["d"].endswith("z")
    assert okx.find_all("path", data_series="p50")
    dots = okx.find_all("path", data_series="samples")[0].attrs["d"]
    assert dots.count("M") == 29  # every successful cycle
    (fail,) = okx.find_all("g", class_="fail")
    assert fail.attrs["data-count"] == "1" and "ping timeout" in fail.text and "✗" in fail.text
    (drop,) = okx.find_all("g", class_="drop-mark")
    assert drop.attrs["data-index"] == "10" and "drop" in drop.text
    (reconnect,) = okx.find_all("g", class_="reconnect-mark")
    assert reconnect.attrs["data-index"] == "20" and "↻" in reconnect.text
    assert not okx.find_all("path", data_series="clock")
    assert not okx.find_all("path", data_series="feed-lag")
    rows = [r for r in doc.find_all("tr") if r.find_all("td")]
    assert [r.find_all("td")[0].text for r in rows] == ["okx", "bybit"]
    okx_row = [td.text for td in rows[0].find_all("td")]
    assert okx_row[2:4] == ["30", "3.3 %"] and okx_row[-2:] == ["1", "1"]


def test_clock_offset_and_feed_lag_are_drawn_when_recorded() -> None:
    records = [
        rec(
            s,
            True,
            5.0,
            target="ws",
            clock={"offset_ms": -3.0 + s / 10, "error_ms": 0.5},
            feed={"reconnects": 0, "lag_ms": {"p50": 4.0, "p95": 9.0, "max": 20.0}},
        )
        for s in range(0, 20, 2)
    ]
    ws = section(page_of(records), "okx", "ws")
    (clock,) = ws.find_all("path", data_series="clock")
    assert clock.attrs["d"].count("L") == 9
    assert ws.find_all("path", data_series="feed-lag")
    assert "Clock offset (exchange minus local" in ws.text and "Feed lag" in ws.text


def test_many_cycles_keep_the_band_and_leave_the_dots_out() -> None:
    records = [rec(0, True, float(index % 50)) for index in range(MAX_DOTS + 1)]
    for index, record in enumerate(records):
        record["at"] = (
            f"2026-11-02T{10 + index // 3600:02d}:{index // 60 % 60:02d}:{index % 60:02d}Z"
        )
    okx = section(page_of(records), "okx", "rest")
    assert okx.find_all("path", data_series="p50-p95")
    assert not okx.find_all("path", data_series="samples")


def test_record_text_is_escaped() -> None:
    records = [rec(0, True, 1.0), rec(2, False, error="<script>x</script>")]
    page = render_timeline_html(parse_records(lines(*records), source="<w>"), source="<w>")
    assert "<script" not in page and "&lt;script&gt;x&lt;/script&gt;" in page


def test_watch_record_then_report(tmp_path: Path) -> None:
    path = tmp_path / "okx.jsonl"
    args = ["watch", "okx", "--lab", "--count", "3", "--interval", "0.2", "--record", str(path)]
    run = CliRunner().invoke(get_app(), args)
    assert run.exit_code == 0, run.output
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["cycle"], r["target"]) for r in records] == [
        (cycle, target) for cycle in (1, 2, 3) for target in ("rest", "ws")
    ]
    assert all(r["ok"] is True and r["ms"] > 0 for r in records), records
    assert all("reconnects" in r["feed"] for r in records if r["target"] == "ws")
    # A second watch appends to the same file.
    assert CliRunner().invoke(get_app(), [*args[:4], "1", *args[5:]]).exit_code == 0
    assert len(path.read_text().splitlines()) == 8

    out = tmp_path / "okx.html"
    run = CliRunner().invoke(get_app(), ["report", str(path), "--format", "html", "-o", str(out)])
    assert run.exit_code == 0, run.output
    doc = parse(out.read_text())
    assert {
        (s.attrs["data-exchange"], s.attrs["data-target"]) for s in doc.find_all("section")
    } == {
        ("okx", "rest"),
        ("okx", "ws"),
    }
    run = CliRunner().invoke(get_app(), ["report", str(path)])
    assert run.exit_code == 0 and "okx" in run.stdout and "reconnects" in run.stdout


def test_report_of_a_bad_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("hello\nworld\n")
    run = CliRunner().invoke(get_app(), ["report", str(path), "--format", "html"])
    assert run.exit_code == 2
    assert f"{path}:1: not a JSON line" in run.stderr and "Traceback" not in run.output
    run = CliRunner().invoke(get_app(), ["report", str(tmp_path / "missing.jsonl")])
    assert run.exit_code == 2 and "missing.jsonl" in run.stderr


def test_watch_record_to_an_unwritable_place_is_refused_before_probing(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "dir.jsonl"
    run = CliRunner().invoke(get_app(), ["watch", "okx", "--lab", "--record", str(target)])
    assert run.exit_code == 2 and "dir.jsonl" in run.stderr
    assert "lab:" not in run.stderr  # refused before the lab started


@pytest.mark.browser
def test_the_timeline_page_in_a_browser(tmp_path: Path) -> None:
    from chromium import launched

    feed = {"connected": True, "reconnects": 0, "lag_ms": {"p50": 3.0, "p95": 8.0, "max": 9.0}}
    records = [
        rec(s, s != 30, 10.0 + s % 5, drops=int(s >= 30), feed=feed, target="ws")
        for s in range(0, 90, 2)
    ]
    path = tmp_path / "timeline.html"
    path.write_text(
        render_timeline_html(parse_records(lines(*records), source="w"), source="w"),
        encoding="utf-8",
    )
    with launched() as browser:
        page = browser.new_page()
        page.open(path.as_uri())
        assert page.problems() == []
        assert page.requests() == [path.as_uri()]
        boxes = page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('[data-series]')].map(e => {"
            " const r = e.getBoundingClientRect(); return [e.dataset.series, [r.width, r.height]];"
            "}))"
        )
        assert set(boxes) == {"p50-p95", "p50", "samples", "feed-lag"}
        assert all(width > 100 for width, _ in boxes.values()), boxes
        marks = page.evaluate(
            "[...document.querySelectorAll('.drop-mark, .fail')].map(e =>"
            " [e.getAttribute('class'), e.getBoundingClientRect().height > 0])"
        )
        assert sorted(map(tuple, marks)) == [("drop-mark", True), ("fail", True)]
