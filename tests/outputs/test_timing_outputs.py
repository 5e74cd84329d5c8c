"""How timing truth shows in every output, from hand-built attempts (no network): medians,
samples, the loop-lag mark, the kernel-RTT cross-check."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from report_builders import failed_attempt, ok_attempt, report, result
from rich.console import Console

from mpnet.core.result import Attempt, median_phases
from mpnet.render.junit import junit_xml
from mpnet.render.probe_table import probe_view
from mpnet.render.prometheus import prometheus_text
from mpnet.render.waterfall import render_waterfall

REST = {"dns": 1.0, "tcp": 2.0, "tls": 10.0, "http": 30.0}


def timed(attempt: Attempt, *, lag: float | None, kernel: float | None = None) -> Attempt:
    from dataclasses import replace

    return replace(
        attempt,
        loop_lag_ms=lag,
        tcp_rtt_kernel_ms=kernel,
        started_at="2026-11-02T10:15:00.000+00:00",
    )


def text_of(renderable: object, width: int = 200) -> str:
    console = Console(width=width, record=True, color_system=None)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


# -- medians --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [
        # odd count: the middle value, per phase independently
        (
            [{"tcp": 1.0, "http": 9.0}, {"tcp": 3.0, "http": 5.0}, {"tcp": 2.0, "http": 7.0}],
            {"tcp": 2.0, "http": 7.0},
        ),
        # even count: the mean of the middle two
        ([{"tcp": 1.0}, {"tcp": 4.0}], {"tcp": 2.5}),
        # an attempt that stopped before http does not count for http
        (
            [{"tcp": 1.0, "http": 5.0}, {"tcp": 3.0, "http": 7.0}, {"tcp": 100.0}],
            {"tcp": 3.0, "http": 6.0},
        ),
        ([], {}),
    ],
)
def test_median_phases(attempts: list[dict[str, float]], expected: dict[str, float]) -> None:
    built = [Attempt(ok=True, phases=phases) for phases in attempts]
    assert median_phases(built) == expected


def test_json_phases_are_medians_and_samples_keep_every_attempt() -> None:
    attempts = (
        timed(ok_attempt({**REST, "http": 30.0}), lag=0.2),
        timed(failed_attempt({"dns": 1.0, "tcp": 2.0, "tls": 10.0, "http": 4000.0}), lag=3.5),
        timed(ok_attempt({**REST, "http": 40.0}), lag=0.1, kernel=0.5),
    )
    doc = json.loads(json.dumps(report(result("okx", "rest", attempts)).to_dict()))
    [res] = doc["results"]
    assert res["phases"]["http"] == 40.0  # median of 30, 4000, 40
    assert res["loop_lag_ms"] == 3.5
    assert [s["ok"] for s in res["samples"]] == [True, False, True]
    assert res["samples"][1]["error"]["phase"] == "http"
    assert res["samples"][1]["phases"]["http"] == 4000.0
    assert [s["loop_lag_ms"] for s in res["samples"]] == [0.2, 3.5, 0.1]
    assert [s["tcp_rtt_kernel_ms"] for s in res["samples"]] == [None, None, 0.5]
    assert res["samples"][0]["started_at"] == "2026-11-02T10:15:00.000+00:00"
    # The first contract's keys are still all there (docs/architecture.md, "JSON contract").
    for key in ("exchange", "target", "url", "ok", "attempts", "successes", "latency_ms", "error"):
        assert key in res


# -- the loop-lag mark ----------------------------------------------------------------------------


def test_table_marks_only_the_uncertain_row_and_explains_the_mark() -> None:
    rep = report(
        result("okx", "rest", (timed(ok_attempt(REST), lag=12.5),)),
        result("deribit", "rest", (timed(ok_attempt(REST), lag=0.4),)),
    )
    lines = text_of(probe_view(rep)).splitlines()
    okx = next(line for line in lines if line.lstrip().startswith("okx"))
    deribit = next(line for line in lines if line.lstrip().startswith("deribit"))
    assert okx.count("~") >= 4  # dns, tcp, tls, http (and p50/p95)
    assert "~" not in deribit
    [legend] = [line for line in lines if line.startswith("~ ")]
    assert "12.5 ms" in legend


def test_no_mark_and_no_legend_when_every_attempt_is_certain() -> None:
    rep = report(result("okx", "rest", (timed(ok_attempt(REST), lag=1.0),)))
    text = text_of(probe_view(rep))
    assert "~" not in text


def test_one_uncertain_attempt_of_three_marks_the_phases_it_measured() -> None:
    attempts = (
        timed(ok_attempt(REST), lag=0.1),
        timed(failed_attempt({"dns": 1.0, "tcp": 2.0}, phase="tls", kind="timeout"), lag=8.0),
        timed(ok_attempt(REST), lag=0.1),
    )
    res = result("okx", "rest", attempts)
    assert res.uncertain_phases == {"dns", "tcp"}


def test_prometheus_loop_lag_gauge_only_when_measured() -> None:
    measured = prometheus_text(report(result("okx", "rest", (timed(ok_attempt(REST), lag=2.5),))))
    assert 'mpnet_probe_loop_lag_seconds{exchange="okx",target="rest"} 0.0025' in measured
    assert "# TYPE mpnet_probe_loop_lag_seconds gauge" in measured
    unmeasured = prometheus_text(report(result("okx", "rest", (ok_attempt(REST),))))
    assert "mpnet_probe_loop_lag_seconds{" not in unmeasured


def test_junit_tells_the_loop_lag_and_its_verdict() -> None:
    rep = report(
        result("okx", "rest", (timed(ok_attempt(REST), lag=6.0),)),
        result("okx", "ws", (timed(failed_attempt(REST), lag=0.3),)),
    )
    suite = ET.fromstring(junit_xml(rep).encode())
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    out = cases["rest"].find("system-out")
    assert out is not None and "loop lag (ms): max 6.00 (timings uncertain" in (out.text or "")
    failure = cases["ws"].find("failure")
    assert failure is not None and "loop lag (ms): max 0.30 (timings certain" in (
        failure.text or ""
    )


def test_waterfall_marks_uncertain_phases_and_their_total() -> None:
    lines = text_of(render_waterfall(REST, uncertain={"tls"})).splitlines()
    tls = next(line for line in lines if "TLS handshake" in line)
    tcp = next(line for line in lines if "TCP connect" in line)
    total = next(line for line in lines if line.startswith("total"))
    assert "~10.0 ms" in tls and "~" not in tcp and "~43.0 ms" in total


# -- the kernel RTT cross-check -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tcp", "kernel", "lag", "inflated"),
    [
        (0.6, 0.1, 0.0, False),  # within 1 ms of the kernel
        (2.2, 0.1, 0.0, True),  # 2.1 ms over the kernel, no loop lag to explain it
        (2.2, 0.1, 1.5, False),  # the loop lag covers it (and marks it uncertain instead)
        (9.0, 0.1, 2.0, True),  # more than the loop lag can explain
        (2.2, None, 0.0, None),  # no kernel figure: nothing to compare
    ],
)
def test_tcp_inflated(tcp: float, kernel: float | None, lag: float, inflated: bool | None) -> None:
    attempt = timed(ok_attempt({"tcp": tcp}), lag=lag, kernel=kernel)
    assert attempt.tcp_inflated is inflated


def test_inflated_tcp_is_said_in_verbose_view_and_json() -> None:
    attempt = timed(ok_attempt({**REST, "tcp": 6.0}), lag=0.3, kernel=0.2)
    rep = report(result("okx", "rest", (attempt,)))
    verbose = text_of(probe_view(rep, verbose=True))
    assert "kernel RTT 0.20 ms" in verbose
    assert "the user-space tcp figure was inflated" in verbose
    [res] = rep.to_dict()["results"]
    assert res["samples"][0]["tcp_inflated"] is True
    assert any("inflated" in warning for warning in res["timing_warnings"])
    plain = report(result("okx", "rest", (timed(ok_attempt(REST), lag=0.3, kernel=1.9),)))
    assert plain.to_dict()["results"][0]["timing_warnings"] == []
