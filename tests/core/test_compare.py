"""Route comparison: ranking, deltas, the uncertainty rule and the verdict lines."""

from __future__ import annotations

from dataclasses import replace

from mpnet.core.compare import compare_routes, route_verdicts
from mpnet.core.edge import Edge
from mpnet.core.proxy import ProxyDecision
from mpnet.core.result import Attempt, ErrorInfo, Finding, ProbeReport, ProbeResult
from mpnet.core.tls import TLSDecision

TLS = TLSDecision(verify=True, ca="system", ca_kind="system", layer="default", reason="")
GEO = Finding("GEO_BLOCKED", "451 restricted location", "route elsewhere")


def ok(total: float, *, lag: float | None = None, edge: Edge | None = None) -> Attempt:
    return Attempt(
        ok=True, phases={"tcp": total / 2, "http": total / 2}, loop_lag_ms=lag, edge=edge
    )


def failed(phase: str = "http", kind: str = "http_status") -> Attempt:
    return Attempt(ok=False, phases={"tcp": 1.0}, error=ErrorInfo(phase, kind, "refused"))


def res(
    route: str,
    attempts: tuple[Attempt, ...],
    *,
    target: str = "rest",
    exchange: str = "okx",
    findings: tuple[Finding, ...] = (),
) -> ProbeResult:
    url = "https://www.okx.com/api" if target == "rest" else "wss://ws.okx.com/ws"
    return ProbeResult(
        exchange=exchange,
        target=target,
        url=url,
        attempts=attempts,
        proxy=ProxyDecision(target_url=url, proxy=None, layer="route"),
        ssl=TLS,
        findings=findings,
        route=route,
    )


def test_working_routes_first_by_p50_failed_last_with_deltas() -> None:
    results = [
        res("direct", (ok(80.0), ok(90.0), ok(100.0))),
        res("dead", (failed("tcp", "proxy_refused"),)),
        res("tokyo", (ok(40.0), ok(52.0), ok(60.0))),
    ]
    [comparison] = compare_routes(results)
    assert comparison.fastest == "tokyo"
    assert [r.route for r in comparison.ranking] == ["tokyo", "direct", "dead"]
    tokyo, direct, dead = comparison.ranking
    assert (tokyo.p50_ms, tokyo.p95_ms, tokyo.delta_ms) == (52.0, 60.0, 0.0)
    assert (direct.p50_ms, direct.delta_ms) == (90.0, 38.0)
    assert not dead.ok and dead.delta_ms is None and dead.p50_ms is None
    assert dead.failure == "tcp failed (proxy_refused)"
    data = comparison.to_dict()
    assert data["fastest"] == "tokyo"
    assert set(data["ranking"][0]) >= {"route", "ok", "p50_ms", "p95_ms", "delta_ms"}


def test_one_route_is_not_a_comparison() -> None:
    assert (
        compare_routes([res("direct", (ok(10.0),)), res("direct", (ok(9.0),), target="ws")]) == ()
    )


def test_no_route_works_means_no_fastest() -> None:
    [comparison] = compare_routes([res("a", (failed(),)), res("b", (failed(),))])
    assert comparison.fastest is None
    assert route_verdicts([comparison]) == [
        "okx: no route works (rest); a: http failed (http_status); b: http failed (http_status)"
    ]


def test_verdict_names_the_faster_route_and_the_failures() -> None:
    results = [
        res("tokyo", (ok(50.0),)),
        res("direct", (ok(88.0),)),
        res("tokyo", (ok(60.0),), target="ws"),
        res("direct", (failed("ws_upgrade", "ws_upgrade_rejected"),), target="ws", findings=(GEO,)),
    ]
    assert route_verdicts(compare_routes(results)) == [
        "okx: tokyo is 38 ms faster than direct at p50 (rest); only tokyo works (ws); "
        "direct: GEO_BLOCKED"
    ]


def test_the_same_lead_on_both_targets_is_one_clause() -> None:
    results = [
        res("tokyo", (ok(50.0),)),
        res("direct", (ok(88.0),)),
        res("tokyo", (ok(60.0),), target="ws"),
        res("direct", (ok(101.0),), target="ws"),
    ]
    assert route_verdicts(compare_routes(results)) == [
        "okx: tokyo is 38 ms faster than direct at p50 (rest), 41 ms (ws)"
    ]


def test_a_lead_within_the_loop_lag_is_not_called_a_lead() -> None:
    results = [res("tokyo", (ok(50.0, lag=12.0),)), res("direct", (ok(58.0, lag=3.0),))]
    [line] = route_verdicts(compare_routes(results))
    assert line == (
        "okx: tokyo and direct are within the timing uncertainty at p50 "
        "(rest: 8.0 ms apart; loop lag up to 12.0 ms)"
    )
    # The same gap with certain figures is a lead.
    certain = [res("tokyo", (ok(50.0, lag=0.4),)), res("direct", (ok(58.0, lag=0.3),))]
    assert route_verdicts(compare_routes(certain)) == [
        "okx: tokyo is 8.0 ms faster than direct at p50 (rest)"
    ]


def test_a_lead_larger_than_the_loop_lag_is_a_lead() -> None:
    results = [res("tokyo", (ok(50.0, lag=5.0),)), res("direct", (ok(90.0, lag=5.0),))]
    assert route_verdicts(compare_routes(results)) == [
        "okx: tokyo is 40 ms faster than direct at p50 (rest)"
    ]


def test_three_routes_name_each_gap() -> None:
    results = [res("a", (ok(10.0),)), res("b", (ok(25.0),)), res("c", (ok(70.0),))]
    assert route_verdicts(compare_routes(results)) == [
        "okx: a is 15 ms faster than b and 60 ms faster than c at p50 (rest)"
    ]


def test_edges_are_compared_across_routes() -> None:
    nrt = Edge("CloudFront", "NRT57", "id1")
    fra = Edge("CloudFront", "FRA60", "id2")
    results = [res("tokyo", (ok(50.0, edge=nrt),)), res("direct", (ok(90.0, edge=fra),))]
    [line] = route_verdicts(compare_routes(results))
    assert line.endswith("tokyo reaches CloudFront NRT57, direct reaches FRA60 (rest)")
    same = [res("tokyo", (ok(50.0, edge=nrt),)), res("direct", (ok(90.0, edge=nrt),))]
    assert route_verdicts(compare_routes(same))[0].endswith(
        "every route reaches CloudFront NRT57 (rest)"
    )


def test_report_json_has_a_comparison_per_exchange_and_target() -> None:
    results = (
        res("tokyo", (ok(50.0),)),
        res("direct", (ok(88.0),)),
        res("direct", (ok(5.0),), exchange="bybit"),
    )
    document = ProbeReport("0", "2026-01-01T00:00:00+00:00", results).to_dict()
    assert [(c["exchange"], c["target"], c["fastest"]) for c in document["comparison"]] == [
        ("okx", "rest", "tokyo")
    ]
    assert [r["route"] for r in document["results"]] == ["tokyo", "direct", "direct"]


def test_result_without_a_route_is_named_by_the_way_out_it_took() -> None:
    plain = replace(res("x", (ok(1.0),)), route=None)
    assert plain.route_name == "direct"
    assert plain.to_dict()["route"] == "direct"


def test_uncertainty_is_that_of_the_attempts_behind_the_p50s() -> None:
    # One attempt of five stalled badly; the p50 attempts did not: the lead stands.
    tokyo = (ok(40.0, lag=0.2), ok(50.0, lag=0.3), ok(52.0, lag=0.4), ok(55.0, lag=60.0), ok(58.0))
    direct = (ok(70.0, lag=0.2), ok(80.0, lag=0.1), ok(85.0, lag=0.3), ok(90.0), ok(99.0))
    results = [res("tokyo", tokyo), res("direct", direct)]
    assert route_verdicts(compare_routes(results)) == [
        "okx: tokyo is 33 ms faster than direct at p50 (rest)"
    ]
    # The slower route's p50 attempt stalled for longer than the lead: no verdict on speed.
    direct = (ok(70.0), ok(80.0), ok(85.0, lag=40.0), ok(90.0), ok(99.0))
    [line] = route_verdicts(compare_routes([res("tokyo", tokyo), res("direct", direct)]))
    assert "within the timing uncertainty" in line and "loop lag up to 40.0 ms" in line


def test_a_tie_on_both_targets_is_one_clause_whoever_leads() -> None:
    results = [
        res("a", (ok(50.0, lag=9.0),)),
        res("b", (ok(52.0, lag=9.0),)),
        res("a", (ok(61.0, lag=9.0),), target="ws"),
        res("b", (ok(60.0, lag=9.0),), target="ws"),
    ]
    assert route_verdicts(compare_routes(results)) == [
        "okx: a and b are within the timing uncertainty at p50 (rest: 2.0 ms apart, ws: 1.0 ms "
        "apart; loop lag up to 9.0 ms)"
    ]
