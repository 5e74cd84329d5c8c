"""The probe and route tables at 80 columns, from hand-built reports: the INSECURE mark, the
``~`` mark and a route comparison fit without cutting a figure (issue 15, point 1)."""

from __future__ import annotations

from dataclasses import replace

from report_builders import failed_attempt, insecure, ok_attempt, report, result, via_proxy
from rich.console import Console

from mpnet.core.result import ProbeReport
from mpnet.render.fit import Trimmed
from mpnet.render.probe_table import probe_view

WS = {"bootstrap": 40.0, "dns": 1.0, "tcp": 2.0, "tls": 10.0, "ws_upgrade": 5.0}
WS_DONE = {**WS, "first_message": 52.0, "ping_rtt": 1.5}


def text_at(width: int, renderable: object) -> str:
    console = Console(width=width, record=True, color_system=None)
    with console.capture() as capture:
        console.print(Trimmed(renderable))
    return capture.get()


def fits(text: str, width: int) -> None:
    for line in text.splitlines():
        assert len(line) <= width and line == line.rstrip(), line
    assert "…" not in text


def mixed(failing: str) -> ProbeReport:
    lagged = replace(ok_attempt(WS_DONE), loop_lag_ms=7.5)
    return report(
        result("kucoin", "ws", (lagged,), ssl=insecure(), proxy=via_proxy()),
        result("okx", "rest", (ok_attempt({"dns": 1.0, "tcp": 2.0, "tls": 9.0, "http": 20.0}),)),
        result(
            failing, "ws", (failed_attempt({"dns": 1.0}, phase="first_message", kind="timeout"),)
        ),
    )


def test_mixed_tls_policies_keep_insecure_in_the_row_at_80_columns() -> None:
    rep = replace(mixed("bybit"), results=mixed("bybit").results[:2])
    text = text_at(80, probe_view(rep))
    fits(text, 80)
    kucoin = next(line for line in text.splitlines() if line.startswith("kucoin"))
    assert "INSECURE" in kucoin and "~40.0" in kucoin  # the bootstrap, marked uncertain
    assert "~" in kucoin.split("INSECURE")[0]
    okx = next(line for line in text.splitlines() if line.startswith("okx"))
    assert "verified" in okx and "~" not in okx
    joined = " ".join(text.split())
    assert "TLS: INSECURE, not verified (cli: --insecure) — kucoin ws" in joined
    assert "route: http://trader:***@proxy.corp.test:3128 (cli --proxy) — kucoin ws" in joined
    assert "~ uncertain: the event loop stalled (up to 7.5 ms)" in joined
    # Wide, the same table has the full policy and route in their columns.
    wide = text_at(200, probe_view(rep))
    fits(wide, 200)
    kucoin = next(line for line in wide.splitlines() if line.startswith("kucoin"))
    assert "INSECURE, not verified (cli: --insecure)" in kucoin
    assert "http://trader:***@proxy.corp.test:3128 (cli --proxy)" in kucoin


def test_when_nothing_fits_names_fold_and_figures_stay_whole() -> None:
    text = text_at(80, probe_view(mixed("binance-usdm")))
    fits(text, 80)
    for figure in ("~40.0", "~13.0", "~5.0", "~52.0", "~110/110", "32.0/32.0"):
        assert sum(figure in line for line in text.splitlines()) == 1, figure
    assert "binance-usdm ws: first_message failed (timeout)" in " ".join(text.split())


def test_the_route_comparison_fits_80_columns() -> None:
    from dataclasses import replace as with_route

    rows = []
    for route, tcp in (("direct", 2.0), ("tokyo", 80.0)):
        res = result("kucoin", "ws", (ok_attempt({**WS_DONE, "tcp": tcp}),))
        rows.append(with_route(res, route=route))
    text = text_at(80, probe_view(report(*rows)))
    fits(text, 80)
    lines = text.splitlines()
    assert "fastest" in next(line for line in lines if line.strip().startswith("direct"))
    relay = next(line for line in lines if line.strip().startswith("tokyo"))
    assert "+78 ms" in relay and "40.0" in relay  # vs best, and the bootstrap's column
