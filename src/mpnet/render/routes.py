"""Route comparison views (pure): the probe table grouped by exchange and target with one row
per route, the verdict lines, and the ``-v`` lines that say which edge answered and which
addresses the DNS phase returned."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from mpnet.core.address import FAMILY_NAMES, family_of, split_address
from mpnet.core.compare import RouteComparison, compare_routes, format_delta, route_verdicts
from mpnet.core.result import ProbeReport, ProbeResult

if TYPE_CHECKING:
    from mpnet.render.probe_table import Layout

#: What the ``vs best`` column says of the fastest route (the word, not only its colour).
FASTEST = "fastest"


def routed(report: ProbeReport) -> bool:
    """True when any result was probed over a route asked for (``--via``, default routes)."""
    return any(result.route is not None for result in report.results)


def _grouped(results: tuple[ProbeResult, ...]) -> list[list[ProbeResult]]:
    groups: dict[tuple[str, str], list[ProbeResult]] = {}
    for result in results:
        groups.setdefault((result.exchange, result.target), []).append(result)
    return list(groups.values())


def _versus(result: ProbeResult, comparison: RouteComparison | None) -> Text:
    if comparison is None:
        return Text("-")
    for rank in comparison.ranking:
        if rank.route != result.route_name:
            continue
        if not rank.ok or rank.delta_ms is None:
            return Text("-")
        if rank.route == comparison.fastest:
            return Text(FASTEST, style="bold green")
        return Text(f"+{format_delta(rank.delta_ms)}")
    return Text("-")


def route_table(report: ProbeReport, *, width: int | None = None) -> RenderableType:
    """The probe table with one row per route, grouped by exchange and target, the fastest
    route of each group marked ``fastest`` and the others by how far behind at p50. Like the
    probe table it takes the fullest layout that fits (at most ``width``)."""
    from mpnet.render.fit import Fitted
    from mpnet.render.probe_table import LAYOUTS

    # No clock columns in the comparison: one layout for each other step.
    return Fitted(
        [layout for layout in LAYOUTS if not layout.clock],
        lambda layout: _route_table(report, layout),
        width=width,
    )


def _route_table(report: ProbeReport, layout: Layout) -> tuple[Table, list[RenderableType]]:
    from mpnet.render.probe_table import (
        header,
        new_table,
        ok_cell,
        phase_cells,
        phase_columns,
        result_cell,
        tls_cell,
        tls_lines,
        tls_short_cell,
        tls_text,
        uncertainty_legend,
    )

    results = report.results
    comparisons = {(c.exchange, c.target): c for c in compare_routes(results)}
    policies = {tls_text(r) for r in results}
    columns = phase_columns(results, layout)
    table = new_table()
    # The exchange and target head each group; the routes are the rows under it.
    # Narrowest, a long route name wraps (under its indent) before a figure would be cut.
    table.add_column("route", overflow="fold", min_width=None if layout.short else 18, max_width=36)
    table.add_column("result", no_wrap=not layout.short, overflow="fold")
    for column in columns:
        table.add_column(header(column.title), justify="right", no_wrap=True)
    table.add_column(header("p50/p95"), justify="right", no_wrap=True)
    table.add_column("ok", justify="right", no_wrap=True)
    table.add_column("vs best", justify="right", no_wrap=True)
    if len(policies) > 1:
        table.add_column("TLS", overflow="fold", no_wrap=not layout.texts)
    for number, group in enumerate(_grouped(results)):
        if number:
            table.add_section()
        first = group[0]
        table.add_row(Text(f"{first.exchange} {first.target}", style="bold"))
        comparison = comparisons.get((first.exchange, first.target))
        for result in group:
            cells, stats = phase_cells(result, columns)
            row: list[RenderableType] = [
                Text(f"  {result.route_name}"),
                result_cell(result, short=layout.short),
                *cells,
                stats,
                ok_cell(result, short=layout.short),
                _versus(result, comparison),
            ]
            if len(policies) > 1:
                row.append(tls_cell(result) if layout.texts else tls_short_cell(result))
            table.add_row(*row)
    shared: list[RenderableType] = [Text("")]
    legend = uncertainty_legend(results)
    if legend is not None:
        shared.append(legend)
    shared.extend(route_legend(report))
    if len(policies) == 1 or not layout.texts:
        shared.extend(tls_lines(results))
    return table, shared


def route_legend(report: ProbeReport) -> list[Text]:
    """One line per route: what it connects through and what chose it, e.g.
    ``route: tokyo = socks5h://user:***@10.0.0.5:1080 (--via tokyo (mpnet.yaml:3 routes.tokyo))``.
    """
    from mpnet.render.probe_table import route_text

    seen: dict[str, str] = {}
    for result in report.results:
        name = result.route_name
        if name in seen:
            continue
        decision = result.proxy
        if result.route is None:
            # The usual layers chose it: say which, as the single-route line does.
            how = route_text(result).removeprefix(name)
        else:
            through = "no proxy" if decision.proxy is None else decision.proxy.redacted()
            how = (f" = {through}" if through != name else "") + f" ({decision.source})"
        seen[name] = how
    return [Text.assemble(("route: ", "bold"), (name, "bold"), how) for name, how in seen.items()]


def verdict_lines(report: ProbeReport) -> list[RenderableType]:
    """``Routes`` and one verdict per exchange compared over several routes (``  okx: ...``,
    wrapped under its text)."""
    from mpnet.render.fit import hanging

    verdicts = route_verdicts(compare_routes(report.results))
    if not verdicts:
        return []
    lines: list[RenderableType] = [Text("Routes", style="bold")]
    for verdict in verdicts:
        name, colon, text = verdict.partition(": ")
        head = f"  {name}{colon}" if colon else "  "
        lines.append(hanging(Text(head), Text(text if colon else verdict)))
    return lines


def peer_lines(result: ProbeResult) -> list[Text]:
    """Under a ``-v`` waterfall: the route, the addresses the DNS phase returned and the one
    connected to, any address family that failed, and the CDN edge that answered."""
    lines: list[Text] = []
    if result.route is not None:
        lines.append(Text(f"  route: {result.route_name}", style="dim"))
    attempt = result.addressed
    if attempt is not None:
        whose = "proxy" if result.proxy.proxy is not None else "target"
        resolved = [split_address(a)[0] for a in attempt.addresses]
        counts = {
            FAMILY_NAMES[f]: sum(1 for a in attempt.addresses if family_of(a) == f)
            for f in FAMILY_NAMES
        }
        tally = ", ".join(f"{name} {n}" for name, n in counts.items() if n)
        text = f"  addresses ({whose}): {', '.join(resolved) or '-'}"
        if tally:
            text += f" ({tally})"
        if attempt.address:
            family = FAMILY_NAMES.get(family_of(attempt.address) or "", "?")
            text += f"; connected to {attempt.address} over {family}"
        else:
            text += "; none accepted the connection"
        lines.append(Text(text, style="dim"))
    for note in result.address_notes:
        lines.append(Text(f"  ! {note}", style="yellow"))
    edge = result.edge
    if edge.known:
        shown = f"  edge: {edge.label()}" + (f" (id {edge.id})" if edge.id else "")
        lines.append(Text(shown, style="dim"))
    return lines


__all__ = ["FASTEST", "peer_lines", "route_legend", "route_table", "routed", "verdict_lines"]
