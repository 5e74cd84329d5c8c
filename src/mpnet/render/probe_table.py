"""The probe table (pure): one row per exchange x target, failures and findings under it."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from mpnet.core.clock import ClockEstimate, FeedSummary
from mpnet.core.result import LOOP_LAG_UNCERTAIN_MS, ProbeReport, ProbeResult

PHASE_COLUMNS = (
    ("dns", "dns"),
    ("tcp", "tcp"),
    ("proxy", "proxy"),
    ("tls", "tls"),
    ("http", "http/upg"),
    ("first_message", "1st msg"),
    ("ping_rtt", "ping"),
)


#: Put before a figure whose attempt overlapped a loop stall over LOOP_LAG_UNCERTAIN_MS.
UNCERTAIN_MARK = "~"
#: Terminal columns from which the clock offset and feed lag get columns of their own in the
#: table (narrower: they are shown with -v, under each result).
CLOCK_COLUMNS_WIDTH = 140
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


def result_cell(result: ProbeResult) -> Text:
    if result.ok:
        return Text("ok", style="bold green")
    if result.all_skipped:
        # Not measured, so neither ok nor FAIL: the exchange asked us to wait.
        return Text("SKIP wait", style="yellow")
    error = result.error
    if error is None:
        return Text("not run", style="yellow")
    return Text(f"FAIL {error.phase}", style="bold red")


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


def probe_table(report: ProbeReport, *, clock_columns: bool = False) -> RenderableType:
    """The main table: result, phase ms, p50/p95, success ratio; the route (proxy and the layer
    that chose it) and the TLS policy as columns when targets differ, else one line each below.
    With ``clock_columns`` (and figures to show), the clock offset and the feed lag too.
    Routes asked for (``--via``) get the comparison table instead: one row per route."""
    from mpnet.render.routes import route_table, routed

    if routed(report):
        return route_table(report)
    results = report.results
    clock_columns = clock_columns and has_clock_figures(results)
    routes = {route_text(r) for r in results}
    policies = {tls_text(r) for r in results}
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    table.add_column("exchange", no_wrap=True)
    table.add_column("target", no_wrap=True)
    table.add_column("result", no_wrap=True)
    for _, title in PHASE_COLUMNS:
        table.add_column(title, justify="right", no_wrap=True)
    table.add_column("p50/p95", justify="right", no_wrap=True)
    table.add_column("ok", justify="right", no_wrap=True)
    if clock_columns:
        table.add_column("offset", justify="right", no_wrap=True)
        table.add_column("lag p50/p95", justify="right", no_wrap=True)
    if len(routes) > 1:
        table.add_column("route (layer)", overflow="fold")
    if len(policies) > 1:
        table.add_column("TLS", overflow="fold")
    for result in results:
        cells, stats = phase_cells(result)
        row: list[RenderableType] = [
            result.exchange,
            result.target,
            result_cell(result),
            *cells,
            stats,
            ok_cell(result),
        ]
        if clock_columns:
            row += [offset_cell(result.clock), lag_cell(result.feed)]
        if len(routes) > 1:
            row.append(route_text(result))
        if len(policies) > 1:
            row.append(tls_cell(result))
        table.add_row(*row)
    shared: list[RenderableType] = []
    legend = uncertainty_legend(results)
    if legend is not None:
        shared.append(legend)
    if clock_columns:
        shared.append(clock_legend(results))
    if len(routes) == 1 and results:
        shared.append(Text.assemble(("route: ", "bold"), routes.pop(), " — all targets"))
    if len(policies) == 1 and results:
        policy = policies.pop()
        style = "bold red" if policy.startswith("INSECURE") else ""
        shared.append(Text.assemble(("TLS:   ", "bold"), (policy, style), " — all targets"))
    return Group(table, *shared)


def ok_cell(result: ProbeResult) -> Text:
    """``3/5``: successes of the attempts sent; ``, 2 skipped`` for those a wait held back."""
    text = Text(f"{result.successes}/{len(result.made)}")
    skipped = len(result.skips)
    if skipped:
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


def error_lines(results: Sequence[ProbeResult]) -> list[Text]:
    """One line per failed target: where it failed and the error message; one per target with
    attempts skipped for a rate-limit wait, with the wait's reason."""
    lines = []
    for result in results:
        error = result.error
        if not result.ok and error is not None:
            line = Text(f"{result.exchange} {result.target}: ", style="bold")
            line.append(f"{error.phase} failed", style="red")
            line.append(f" ({error.kind}): {error.message}")
            lines.append(line)
        skips = result.skips
        if skips:
            line = Text(f"{result.exchange} {result.target}: ", style="bold")
            line.append(f"{len(skips)} attempt(s) skipped", style="yellow")
            line.append(f", {skips[0].message}")
            lines.append(line)
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

    ``width`` is the terminal's: from :data:`CLOCK_COLUMNS_WIDTH` columns (or unknown) the
    table shows the clock offset and the feed lag; narrower, ``verbose`` shows them.
    """
    from mpnet.render.findings import findings_section
    from mpnet.render.routes import peer_lines, verdict_lines

    wide = width is None or width >= CLOCK_COLUMNS_WIDTH
    parts: list[RenderableType] = [probe_table(report, clock_columns=wide)]
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
            parts.extend(timing_notes(result))
            parts.extend(peer_lines(result))
            parts.extend(clock_notes(result))
    parts.append(Text(""))
    parts.append(summary_line(report))
    return Group(*parts)


def phase_cells(result: ProbeResult) -> tuple[list[str], str]:
    """The phase columns of one result (``~`` where loop lag makes a figure uncertain) and its
    ``p50/p95`` cell; the probe table and the route comparison show the same figures."""
    phases = result.phases
    marked = result.uncertain_phases
    cells = []
    for key, _ in PHASE_COLUMNS:
        name = key if key != "http" or "http" in phases else "ws_upgrade"
        cells.append(_ms(phases.get(name), uncertain=name in marked))
    latency = result.latency
    shaky = any(a.uncertain for a in result.attempts if a.ok)
    stats = f"{_ms(latency.p50, uncertain=shaky)}/{_ms(latency.p95)}" if latency else "-"
    return cells, stats


def tls_cell(result: ProbeResult) -> Text:
    """The TLS column of one result; verification off stands out."""
    tls = tls_text(result)
    return Text(tls, style="bold red" if tls.startswith("INSECURE") else "")
