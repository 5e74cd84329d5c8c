"""The probe table (pure): one row per exchange x target, failures and findings under it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from mpnet.core.clock import ClockEstimate, FeedSummary
from mpnet.core.result import LOOP_LAG_UNCERTAIN_MS, ProbeReport, ProbeResult
from mpnet.render.fit import Fitted

#: The phase columns of the full table: (phase, title); ``http`` stands for ``ws_upgrade`` too.
PHASE_COLUMNS = (
    ("dns", "dns"),
    ("tcp", "tcp"),
    ("proxy", "proxy"),
    ("tls", "tls"),
    ("http", "http/upg"),
    ("first_message", "1st msg"),
    ("ping_rtt", "ping"),
)
#: The unit of every time column, named on the header's second line.
UNIT = "ms"


@dataclass(frozen=True, slots=True)
class PhaseColumn:
    """One time column: its title and the phases it adds up (one, or several when merged)."""

    title: str
    phases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Layout:
    """What the probe and route tables show at one width (:data:`LAYOUTS`, fullest first)."""

    #: The clock offset and feed lag columns (else under each result with ``-v``).
    clock: bool = True
    #: The route and TLS policy in full in their columns (else a short TLS cell, lines below).
    texts: bool = True
    #: A proxy column even when no target went through a proxy (all ``-``).
    proxy: bool = True
    #: The ping column (else the ``-v`` waterfall's ping row; ping is not part of the total).
    ping: bool = True
    #: dns, tcp, proxy and tls added up in one ``connect`` column (``-v`` shows each).
    merged: bool = False
    #: Short result and ok cells (the lines under the table say the rest).
    short: bool = False


#: From the fullest table to the leanest; the first that fits the terminal is shown. Every
#: layout keeps the figures that add up to the total (bootstrap included) and the marks.
LAYOUTS = (
    Layout(),
    Layout(clock=False),
    Layout(clock=False, texts=False),
    Layout(clock=False, texts=False, proxy=False),
    Layout(clock=False, texts=False, proxy=False, ping=False),
    Layout(clock=False, texts=False, proxy=False, ping=False, merged=True),
    Layout(clock=False, texts=False, proxy=False, ping=False, merged=True, short=True),
)
#: Short names of the phases, for ``FAIL <phase>`` in the leanest layout.
SHORT_PHASES = {
    "bootstrap": "boot",
    "ws_upgrade": "upgrade",
    "first_message": "1st msg",
    "ping_rtt": "ping",
}
#: The bootstrap column (KuCoin's token request), shown when any result has one.
BOOT_COLUMN = PhaseColumn("boot", ("bootstrap",))
CONNECT_COLUMN = PhaseColumn("connect", ("dns", "tcp", "proxy", "tls"))


def phase_columns(results: Sequence[ProbeResult], layout: Layout = LAYOUTS[0]) -> list[PhaseColumn]:
    """The time columns for ``results`` in ``layout``: together with the total they add up."""
    seen = {name for result in results for name in result.phases}
    columns = [BOOT_COLUMN] if "bootstrap" in seen else []
    for key, title in PHASE_COLUMNS:
        if key == "ping_rtt" and not layout.ping:
            continue
        if key == "proxy" and not layout.proxy and "proxy" not in seen:
            continue
        if layout.merged and key in CONNECT_COLUMN.phases:
            if key == "dns":
                columns.append(CONNECT_COLUMN)
            continue
        columns.append(PhaseColumn(title, ("http", "ws_upgrade") if key == "http" else (key,)))
    return columns


def header(title: str) -> str:
    """A time column's header: its title over the unit."""
    return f"{title}\n{UNIT}"


#: Put before a figure whose attempt overlapped a loop stall over LOOP_LAG_UNCERTAIN_MS.
UNCERTAIN_MARK = "~"
#: After an offset read from the Date header (whole seconds); after an uncorrected lag.
DATE_MARK = "d"
UNCORRECTED_MARK = "u"


def _ms(value: float | None, *, uncertain: bool = False) -> str:
    if value is None:
        return "-"
    text = f"{value:.1f}" if value < 100 else f"{value:.0f}"
    return UNCERTAIN_MARK + text if uncertain else text


def uncertainty_legend(results: Sequence[ProbeResult]) -> Text | None:
    """The one-line legend of the uncertainty mark, when any figure carries it."""
    lags = [r.loop_lag_ms for r in results if r.uncertain_phases and r.loop_lag_ms is not None]
    if not lags:
        return None
    return Text(
        f"{UNCERTAIN_MARK} uncertain: the event loop stalled (up to {max(lags):.1f} ms) while an "
        "attempt behind the figure was timed; the figure may include such waits (marked over "
        f"{LOOP_LAG_UNCERTAIN_MS:g} ms)",
        style="yellow",
    )


def route_text(result: ProbeResult) -> str:
    """``direct (default)`` or ``socks5h://u:***@h:1080 (env HTTPS_PROXY)``: proxy and chooser."""
    decision = result.proxy
    where = decision.layer + (f" {decision.source}" if decision.source else "")
    if decision.proxy is None:
        label = "direct"
        if decision.no_proxy_match:
            label += f", no_proxy {decision.no_proxy_match}"
        return f"{label} ({where})"
    return f"{decision.proxy.redacted()} ({where})"


def tls_text(result: ProbeResult) -> str:
    """``verify: system (default)`` or ``INSECURE (exchange: reason)``."""
    decision = result.ssl
    if not result.url.startswith(("https:", "wss:")):
        return "plain (no TLS)"
    if not decision.verify:
        return f"INSECURE, not verified ({decision.layer}: {decision.reason})"
    return f"verify against {decision.ca} ({decision.layer})"


def result_cell(result: ProbeResult, *, short: bool = False) -> Text:
    """``ok``, ``SKIP wait``, ``not run`` or ``FAIL <phase>`` (``short``: the phase's short
    name, ``FAIL 1st msg``)."""
    if result.ok:
        return Text("ok", style="bold green")
    if result.all_skipped:
        # Not measured, so neither ok nor FAIL: the exchange asked us to wait.
        return Text("SKIP wait", style="yellow")
    error = result.error
    if error is None:
        return Text("not run", style="yellow")
    phase = SHORT_PHASES.get(error.phase, error.phase) if short else error.phase
    return Text(f"FAIL {phase}", style="bold red")


def offset_cell(clock: ClockEstimate | None) -> str:
    """``+1.2±3.4`` (ms; ``d`` after one read from the Date header) or ``-``."""
    if clock is None or clock.offset_ms is None or clock.error_ms is None:
        return "-"
    mark = DATE_MARK if clock.coarse else ""
    return f"{_signed(clock.offset_ms)}±{_ms(clock.error_ms)}{mark}"


def lag_cell(feed: FeedSummary | None) -> str:
    """``2.1/3.5`` (p50/p95 ms; ``u`` after an uncorrected pair) or ``-``."""
    if feed is None or feed.lag_ms is None:
        return "-"
    mark = "" if feed.corrected else UNCORRECTED_MARK
    return f"{_signed(feed.lag_ms.p50, plus=False)}/{_signed(feed.lag_ms.p95, plus=False)}{mark}"


def _signed(value: float, *, plus: bool = True) -> str:
    text = _ms(abs(value))
    if value < 0:
        return "-" + text
    return ("+" if plus else "") + text


def clock_legend(results: Sequence[ProbeResult]) -> Text:
    """What the offset and lag columns mean, and their marks."""
    text = (
        "offset: the exchange's clock minus this machine's, ms (positive: this machine is "
        "behind) ± its error; lag: ms from the exchange's event stamp to arrival, p50/p95, "
        "corrected by that offset"
    )
    if any((c := r.clock) is not None and c.coarse and c.known for r in results):
        text += f"; {DATE_MARK}: from the Date header (whole seconds)"
    if any((f := r.feed) is not None and f.lag_ms is not None and not f.corrected for r in results):
        text += f"; {UNCORRECTED_MARK}: uncorrected (no offset measured for that exchange)"
    return Text(text, style="dim")


def has_clock_figures(results: Sequence[ProbeResult]) -> bool:
    """Some result has an offset or a feed lag to show."""
    return any(offset_cell(r.clock) != "-" or lag_cell(r.feed) != "-" for r in results)


def probe_table(report: ProbeReport, *, width: int | None = None) -> RenderableType:
    """The main table: result, phase ms, p50/p95, success ratio; the route (proxy and the layer
    that chose it) and the TLS policy as columns when targets differ, else one line each below.
    With room (and figures to show), the clock offset and the feed lag too.

    The table takes the fullest of :data:`LAYOUTS` that fits the width it is printed at (at
    most ``width``): narrower, it leaves the clock columns, the route text and the ping to
    ``-v`` and adds dns, tcp, proxy and tls up in one column; it never cuts a figure.
    Routes asked for (``--via``) get the comparison table instead: one row per route."""
    from mpnet.render.routes import route_table, routed

    if routed(report):
        return route_table(report, width=width)
    results = report.results
    clock = has_clock_figures(results)
    return Fitted(
        [layout for layout in LAYOUTS if clock or not layout.clock],
        lambda layout: _probe_table(results, layout),
        width=width,
    )


def _probe_table(
    results: Sequence[ProbeResult], layout: Layout
) -> tuple[Table, list[RenderableType]]:
    routes = {route_text(r) for r in results}
    policies = {tls_text(r) for r in results}
    columns = phase_columns(results, layout)
    table = new_table()
    # Leanest, the exchange and target share a column ("kucoin ws"), and names fold if even
    # that is too wide: figures never do.
    if layout.short:
        table.add_column("target", overflow="fold")
    else:
        table.add_column("exchange", no_wrap=True)
        table.add_column("target", no_wrap=True)
    table.add_column("result", no_wrap=not layout.short, overflow="fold")
    for column in columns:
        table.add_column(header(column.title), justify="right", no_wrap=True)
    table.add_column(header("p50/p95"), justify="right", no_wrap=True)
    table.add_column("ok", justify="right", no_wrap=True)
    if layout.clock:
        table.add_column(header("offset"), justify="right", no_wrap=True)
        table.add_column(header("lag p50/p95"), justify="right", no_wrap=True)
    route_column = layout.texts and len(routes) > 1
    if route_column:
        table.add_column("route (layer)", overflow="fold")
    if len(policies) > 1:
        table.add_column("TLS", overflow="fold", no_wrap=not layout.texts)
    for result in results:
        cells, stats = phase_cells(result, columns)
        names = [f"{result.exchange} {result.target}"] if layout.short else []
        row: list[RenderableType] = [
            *(names or [result.exchange, result.target]),
            result_cell(result, short=layout.short),
            *cells,
            stats,
            ok_cell(result, short=layout.short),
        ]
        if layout.clock:
            row += [offset_cell(result.clock), lag_cell(result.feed)]
        if route_column:
            row.append(route_text(result))
        if len(policies) > 1:
            row.append(tls_cell(result) if layout.texts else tls_short_cell(result))
        table.add_row(*row)
    shared: list[RenderableType] = [Text("")]
    legend = uncertainty_legend(results)
    if legend is not None:
        shared.append(legend)
    if layout.clock:
        shared.append(clock_legend(results))
    if not route_column:
        shared.extend(shared_lines("route: ", results, route_text))
    if len(policies) == 1 or not layout.texts:
        shared.extend(tls_lines(results))
    return table, shared


def new_table() -> Table:
    """The probe and route tables' frame: a rule under the header, two spaces between columns
    (as the watch table), no edges (no blank column before or after, no blank line above)."""
    return Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False)


def shared_lines(
    label: str, results: Sequence[ProbeResult], text_of: Callable[[ProbeResult], str]
) -> list[Text]:
    """One line per distinct ``text_of(result)`` with the targets it is for (``all targets``
    when one line says it for every target)."""
    groups: dict[str, list[str]] = {}
    for result in results:
        groups.setdefault(text_of(result), []).append(f"{result.exchange} {result.target}")
    lines = []
    for text, targets in groups.items():
        style = "bold red" if text.startswith("INSECURE") else ""
        whom = "all targets" if len(groups) == 1 else ", ".join(targets)
        lines.append(Text.assemble((label, "bold"), (text, style), f" — {whom}"))
    return lines


def tls_lines(results: Sequence[ProbeResult]) -> list[Text]:
    """The TLS policy under the table: one line per policy, with the targets it is for."""
    return shared_lines("TLS:   ", results, tls_text)


def ok_cell(result: ProbeResult, *, short: bool = False) -> Text:
    """``3/5``: successes of the attempts sent; ``, 2 skipped`` for those a wait held back
    (not when ``short``: the line under the table says so)."""
    text = Text(f"{result.successes}/{len(result.made)}")
    skipped = len(result.skips)
    if skipped and not short:
        text.append(f", {skipped} skipped", style="yellow")
    return text


def waterfall_notes(result: ProbeResult) -> dict[str, str]:
    """Notes beside waterfall rows: the address family of the dns row, the CDN edge beside the
    answer (``http`` or ``ws_upgrade``)."""
    from mpnet.core.address import FAMILY_NAMES, family_of

    notes: dict[str, str] = {}
    attempt = result.addressed
    if attempt is not None and attempt.addresses:
        families = {family_of(a) for a in attempt.addresses}
        count = len(attempt.addresses)
        shown = "/".join(name for f, name in FAMILY_NAMES.items() if f in families)
        notes["dns"] = f"{count} address{'es' if count != 1 else ''} ({shown})"
    edge = result.edge
    if edge.known:
        notes["http" if "http" in result.phases else "ws_upgrade"] = f"edge {edge.label()}"
    return notes


def error_lines(results: Sequence[ProbeResult]) -> list[RenderableType]:
    """One line per failed target: where it failed and the error message; one per target with
    attempts skipped for a rate-limit wait, with the wait's reason. Each wraps under its text,
    not under the target's name."""
    from mpnet.render.fit import hanging

    lines: list[RenderableType] = []
    for result in results:
        head = Text(f"{result.exchange} {result.target}: ", style="bold")
        error = result.error
        if not result.ok and error is not None:
            line = Text(f"{error.phase} failed", style="red")
            line.append(f" ({error.kind}): {error.message}")
            lines.append(hanging(head, line))
        skips = result.skips
        if skips:
            line = Text(f"{len(skips)} attempt(s) skipped", style="yellow")
            line.append(f", {skips[0].message}")
            lines.append(hanging(head, line))
    return lines


def timing_notes(result: ProbeResult) -> list[Text]:
    """Under a waterfall: how many attempts the medians come from, and every timing warning
    (loop lag over the threshold, a user-space tcp figure the kernel's RTT contradicts)."""
    notes: list[Text] = []
    count = len(result.attempts)
    if count > 1:
        notes.append(Text(f"  medians of {count} attempts", style="dim"))
    lag = result.loop_lag_ms
    if lag is not None and not result.uncertain_phases:
        notes.append(
            Text(f"  loop lag: {lag:.2f} ms (at most {LOOP_LAG_UNCERTAIN_MS:g} ms)", style="dim")
        )
    for warning in result.timing_warnings:
        notes.append(Text(f"  ! {warning}", style="yellow"))
    return notes


def clock_notes(result: ProbeResult) -> list[Text]:
    """Under a waterfall: the clock offset (with where it was read and any skipped samples) and
    the feed (messages, rate, lag and whether it was corrected)."""
    notes: list[Text] = []
    clock = result.clock
    if clock is not None:
        if clock.offset_ms is not None and clock.error_ms is not None:
            where = (
                "the Date header, whole seconds: the coarse clock"
                if clock.coarse
                else f"{clock.path} ({clock.source})"
            )
            count = clock.usable_samples
            best = f", the shortest round trip of {count}" if count > 1 and not clock.coarse else ""
            notes.append(
                Text(
                    f"  clock offset {_signed(clock.offset_ms)} ±{_ms(clock.error_ms)} ms from "
                    f"{where}{best} (positive: this machine is behind)",
                    style="dim",
                )
            )
        for sample in clock.samples:
            if sample.skipped is not None:
                notes.append(Text(f"  ! clock sample skipped: {sample.skipped}", style="yellow"))
    feed = result.feed
    if feed is not None:
        parts = [f"  feed: {feed.messages} data message(s)"]
        if feed.duration_s and feed.rate_per_s is not None:
            parts.append(f" in {feed.duration_s:.1f} s ({feed.rate_per_s:.1f}/s)")
        if feed.lag_ms is not None:
            lag = feed.lag_ms
            parts.append(
                f", lag p50 {_signed(lag.p50, plus=False)} p95 {_signed(lag.p95, plus=False)} "
                f"max {_signed(lag.max, plus=False)} ms"
            )
            if feed.corrected and feed.error_ms is not None:
                parts.append(f", corrected by the offset ±{_ms(feed.error_ms)} ms")
        if feed.note:
            parts.append(f"; {feed.note}")
        notes.append(Text("".join(parts), style="dim"))
        for reason, count in feed.skipped:
            notes.append(Text(f"  ! {count} event time(s) not read: {reason}", style="yellow"))
    return notes


def summary_line(report: ProbeReport) -> Text:
    total = len(report.results)
    ok = sum(1 for r in report.results if r.ok)
    skipped = sum(1 for r in report.results if r.all_skipped)
    style = "bold green" if ok == total and not report.interrupted else "bold red"
    text = Text(f"{ok}/{total} probes ok", style=style)
    if skipped:
        text.append(f", {skipped} not sent (rate-limit wait)", style="yellow")
    if report.interrupted:
        text.append("  (interrupted: partial results)", style="yellow")
    return text


def probe_view(
    report: ProbeReport, *, verbose: bool = False, width: int | None = None
) -> RenderableType:
    """Table, error lines, findings, TLS warnings and (with ``verbose``) waterfalls.

    The table fits the width it is printed at (at most ``width``); what a narrow table leaves
    out (the clock offset and feed lag, each phase of a merged column, the ping) ``verbose``
    shows under each result.
    """
    from mpnet.render.findings import findings_section
    from mpnet.render.fit import indented
    from mpnet.render.routes import peer_lines, verdict_lines

    parts: list[RenderableType] = [probe_table(report, width=width)]
    verdicts = verdict_lines(report)
    if verdicts:
        parts.append(Text(""))
        parts.extend(verdicts)
    errors = error_lines(report.results)
    if errors:
        parts.append(Text(""))
        parts.extend(errors)
    findings = findings_section(report.results)
    if findings is not None:
        parts.append(Text(""))
        parts.append(findings)
    if verbose:
        from mpnet.render.waterfall import render_waterfall

        for result in report.results:
            via = f" via {result.route}" if result.route is not None else ""
            parts.append(
                Text(f"\n{result.exchange} {result.target}{via}  {result.url}", style="bold")
            )
            parts.append(
                render_waterfall(
                    result.phases,
                    uncertain=result.uncertain_phases,
                    tcp_rtt_kernel_ms=result.tcp_rtt_kernel_ms,
                    notes=waterfall_notes(result),
                )
            )
            notes = [*timing_notes(result), *peer_lines(result), *clock_notes(result)]
            parts.extend(indented(note) for note in notes)
    parts.append(Text(""))
    parts.append(summary_line(report))
    return Group(*parts)


def phase_cells(
    result: ProbeResult, columns: Sequence[PhaseColumn] | None = None
) -> tuple[list[str], str]:
    """The time columns of one result (``~`` where loop lag makes a figure uncertain) and its
    ``p50/p95`` cell; the probe table and the route comparison show the same figures. A column
    of several phases shows their sum (``-``: none of them happened)."""
    phases = result.phases
    marked = result.uncertain_phases
    cells = []
    for column in phase_columns([result]) if columns is None else columns:
        present = [name for name in column.phases if name in phases]
        if not present:
            cells.append("-")
            continue
        total = sum(phases[name] for name in present)
        cells.append(_ms(total, uncertain=any(name in marked for name in present)))
    latency = result.latency
    shaky = any(a.uncertain for a in result.attempts if a.ok)
    stats = f"{_ms(latency.p50, uncertain=shaky)}/{_ms(latency.p95)}" if latency else "-"
    return cells, stats


def tls_cell(result: ProbeResult) -> Text:
    """The TLS column of one result; verification off stands out."""
    tls = tls_text(result)
    return Text(tls, style="bold red" if tls.startswith("INSECURE") else "")


def tls_short_cell(result: ProbeResult) -> Text:
    """The TLS column when narrow: ``INSECURE``, ``verified`` or ``plain`` (the lines under the
    table say against which CA, and who chose it)."""
    tls = tls_text(result)
    if tls.startswith("INSECURE"):
        return Text("INSECURE", style="bold red")
    return Text("plain" if tls.startswith("plain") else "verified")
