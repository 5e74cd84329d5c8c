"""Route comparison (pure): per exchange and target probed over more than one route, the routes
ranked (working ones first by p50, failed ones last), and one verdict line per exchange.

A difference is only called one when it is larger than what the two p50 figures may include of
event-loop lag (the loop lag of the attempt behind each p50, when over 1 ms: docs/timing.md);
otherwise the verdict says the routes are within the timing uncertainty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mpnet.core.edge import Edge
from mpnet.core.result import ProbeResult

TARGET_ORDER = ("rest", "ws")


@dataclass(frozen=True, slots=True)
class RouteRank:
    """One route's line of a comparison.

    ``p50_ms``/``p95_ms`` are over the route's successful attempts (None without any);
    ``delta_ms`` is how far its p50 is behind the fastest route's (None for a route that did not
    work); ``lag_ms`` is the loop lag of the attempt behind its p50, when over 1 ms (None:
    certain);
    ``failure`` says why a route did not work (its finding code, else the failed phase).
    """

    route: str
    ok: bool
    p50_ms: float | None
    p95_ms: float | None
    delta_ms: float | None
    edge: Edge
    failure: str | None = None
    lag_ms: float | None = None

    @property
    def uncertain(self) -> bool:
        return self.lag_ms is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "ok": self.ok,
            "p50_ms": _rounded(self.p50_ms),
            "p95_ms": _rounded(self.p95_ms),
            "delta_ms": _rounded(self.delta_ms),
            "uncertain": self.uncertain,
            "failure": self.failure,
            "edge": self.edge.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class RouteComparison:
    """The routes of one exchange x target, ranked."""

    exchange: str
    target: str
    ranking: tuple[RouteRank, ...]

    @property
    def fastest(self) -> str | None:
        """The working route with the lowest p50, or None when no route worked."""
        first = self.ranking[0] if self.ranking else None
        return first.route if first is not None and first.ok else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "exchange": self.exchange,
            "target": self.target,
            "fastest": self.fastest,
            "ranking": [rank.to_dict() for rank in self.ranking],
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def failure_text(result: ProbeResult) -> str | None:
    """Why a result did not work, shortest first: its error finding's code, else the phase that
    failed; None when it worked."""
    if result.ok:
        return None
    if result.all_skipped:
        return "SKIPPED (rate-limit wait)"
    for finding in result.findings:
        if finding.severity == "error":
            return finding.code
    error = result.error
    if error is not None:
        return f"{error.phase} failed ({error.kind})"
    return "not run"


def _p50_lag(result: ProbeResult, p50: float | None) -> float | None:
    """The loop lag of the attempt whose total is the p50 (nearest rank picks a real attempt),
    when over the uncertainty threshold: what that figure may include of waits for the loop."""
    if p50 is None:
        return None
    for attempt in result.attempts:
        if attempt.ok and attempt.total_ms == p50:
            return attempt.loop_lag_ms if attempt.uncertain else None
    return None


def _rank(result: ProbeResult) -> RouteRank:
    latency = result.latency
    p50 = latency.p50 if latency else None
    return RouteRank(
        route=result.route_name,
        ok=result.ok,
        p50_ms=p50,
        p95_ms=latency.p95 if latency else None,
        delta_ms=None,
        edge=result.edge,
        failure=failure_text(result),
        lag_ms=_p50_lag(result, p50),
    )


def compare_routes(results: Sequence[ProbeResult]) -> tuple[RouteComparison, ...]:
    """One comparison per exchange x target that was probed over more than one route, in the
    order the results came (exchange first, then target)."""
    groups: dict[tuple[str, str], list[ProbeResult]] = {}
    for result in results:
        groups.setdefault((result.exchange, result.target), []).append(result)
    comparisons = []
    for (exchange, target), members in groups.items():
        if len({r.route_name for r in members}) < 2:
            continue
        ranks = [_rank(r) for r in members]
        working = sorted(
            (r for r in ranks if r.ok and r.p50_ms is not None),
            key=lambda r: (r.p50_ms or 0.0, r.p95_ms or 0.0),
        )
        best = working[0].p50_ms if working else None
        working = [
            RouteRank(
                r.route,
                r.ok,
                r.p50_ms,
                r.p95_ms,
                (r.p50_ms or 0.0) - (best or 0.0),
                r.edge,
                r.failure,
                r.lag_ms,
            )
            for r in working
        ]
        failed = [r for r in ranks if not (r.ok and r.p50_ms is not None)]
        comparisons.append(RouteComparison(exchange, target, (*working, *failed)))
    return tuple(comparisons)


def format_delta(ms: float) -> str:
    """``38 ms``, ``4.2 ms``, ``0.42 ms``."""
    if ms >= 10:
        return f"{ms:.0f} ms"
    if ms >= 1:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


def within_uncertainty(best: RouteRank, other: RouteRank) -> float | None:
    """The loop lag that could account for ``best``'s lead over ``other`` (0.0 for a tie), or
    None when the lead is larger than any lag behind either figure."""
    lags = [lag for lag in (best.lag_ms, other.lag_ms) if lag is not None]
    delta = other.delta_ms or 0.0
    if delta == 0.0:
        return max(lags, default=0.0)
    if lags and delta <= max(lags):
        return max(lags)
    return None


@dataclass(frozen=True, slots=True)
class _Speed:
    """What one target's comparison says about speed, before targets are merged."""

    kind: str  # "clear", "close", "only" or "none"
    best: str | None
    others: tuple[str, ...] = ()
    deltas: tuple[float, ...] = ()
    lag: float = 0.0


def _speeds(comparison: RouteComparison) -> list[_Speed]:
    working = [r for r in comparison.ranking if r.ok and r.delta_ms is not None]
    if not working:
        return [_Speed("none", None)]
    best = working[0]
    if len(working) == 1:
        return [_Speed("only", best.route)]
    clear: list[RouteRank] = []
    close: list[tuple[RouteRank, float]] = []
    for other in working[1:]:
        lag = within_uncertainty(best, other)
        if lag is None:
            clear.append(other)
        else:
            close.append((other, lag))
    speeds = []
    if clear:
        speeds.append(
            _Speed(
                "clear",
                best.route,
                tuple(o.route for o in clear),
                tuple(o.delta_ms or 0.0 for o in clear),
            )
        )
    if close:
        speeds.append(
            _Speed(
                "close",
                best.route,
                tuple(o.route for o, _ in close),
                (max(o.delta_ms or 0.0 for o, _ in close),),
                max(lag for _, lag in close),
            )
        )
    return speeds


def _speed_clauses(comparisons: Sequence[RouteComparison]) -> list[str]:
    """Speed clauses of an exchange's targets; targets that say the same thing of the same
    routes share one clause (``tokyo is 38 ms faster than direct at p50 (rest), 41 ms (ws)``)."""
    merged: dict[tuple[str, str | None, tuple[str, ...]], list[tuple[str, _Speed]]] = {}
    for comparison in comparisons:
        for speed in _speeds(comparison):
            key = (speed.kind, speed.best, speed.others)
            if speed.kind == "clear" and len(speed.others) > 1:
                key = (*key[:2], (*speed.others, comparison.target))  # one clause per target
            elif speed.kind == "close":
                # A tie has no winner: the same routes tied on two targets are one clause.
                same = next(
                    (
                        k
                        for k in merged
                        if k[0] == "close" and {k[1], *k[2]} == {speed.best, *speed.others}
                    ),
                    None,
                )
                key = same or key
            merged.setdefault(key, []).append((comparison.target, speed))
    clauses = []
    for (kind, best, others), items in merged.items():
        targets = ", ".join(target for target, _ in items)
        if kind == "none":
            clauses.append(f"no route works ({targets})")
        elif kind == "only":
            clauses.append(f"only {best} works ({targets})")
        elif kind == "clear":
            target, speed = items[0]
            ahead = " and ".join(
                f"{format_delta(delta)} faster than {route}"
                for route, delta in zip(speed.others, speed.deltas, strict=True)
            )
            more = "".join(f", {format_delta(s.deltas[0])} ({t})" for t, s in items[1:])
            clauses.append(f"{best} is {ahead} at p50 ({target}){more}")
        else:
            names = " and ".join([best or "?", *others])
            apart = ", ".join(f"{t}: {format_delta(s.deltas[0])} apart" for t, s in items)
            lag = max(s.lag for _, s in items)
            because = f"; loop lag up to {lag:.1f} ms" if lag else ""
            clauses.append(f"{names} are within the timing uncertainty at p50 ({apart}{because})")
    return clauses


def _failure_clauses(comparisons: Sequence[RouteComparison]) -> list[str]:
    by_route: dict[str, list[tuple[str, str]]] = {}
    for comparison in comparisons:
        for rank in comparison.ranking:
            if rank.failure is not None:
                by_route.setdefault(rank.route, []).append((comparison.target, rank.failure))
    clauses = []
    for route, failures in by_route.items():
        kinds = {failure for _, failure in failures}
        if len(kinds) == 1:
            clauses.append(f"{route}: {failures[0][1]}")
        else:
            shown = ", ".join(f"{failure} ({target})" for target, failure in failures)
            clauses.append(f"{route}: {shown}")
    return clauses


def _edge_clause(comparisons: Sequence[RouteComparison]) -> str | None:
    for comparison in comparisons:
        known = [rank for rank in comparison.ranking if rank.edge.known]
        if not known:
            continue
        labels = {rank.edge.label() for rank in known}
        if len(labels) == 1 and len(known) == len(comparison.ranking):
            return f"every route reaches {labels.pop()} ({comparison.target})"
        parts = []
        previous_cdn = None
        for rank in known:
            edge = rank.edge
            where = edge.label() if edge.cdn != previous_cdn else (edge.pop or edge.label())
            previous_cdn = edge.cdn
            parts.append(f"{rank.route} reaches {where}")
        return ", ".join(parts) + f" ({comparison.target})"
    return None


def route_verdicts(comparisons: Sequence[RouteComparison]) -> list[str]:
    """One line per exchange: which route is fastest and by how much, per target; which routes
    failed and why; which CDN edge each route reached.

    ``okx: tokyo is 38 ms faster than direct at p50 (rest); direct: GEO_BLOCKED; tokyo reaches
    CloudFront NRT57, direct reaches FRA60 (rest)``
    """
    by_exchange: dict[str, list[RouteComparison]] = {}
    for comparison in comparisons:
        by_exchange.setdefault(comparison.exchange, []).append(comparison)
    lines = []
    for exchange, members in by_exchange.items():
        members.sort(key=lambda c: TARGET_ORDER.index(c.target) if c.target in TARGET_ORDER else 99)
        clauses = _speed_clauses(members)
        clauses += _failure_clauses(members)
        edge = _edge_clause(members)
        if edge is not None:
            clauses.append(edge)
        lines.append(f"{exchange}: " + "; ".join(clauses))
    return lines


__all__ = [
    "RouteComparison",
    "RouteRank",
    "compare_routes",
    "failure_text",
    "format_delta",
    "route_verdicts",
    "within_uncertainty",
]
