"""The probe table (pure): one row per exchange x target, failures and findings under it."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

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


def probe_table(report: ProbeReport) -> RenderableType:
    """The main table: result, phase ms, p50/p95, success ratio; the route (proxy and the layer
    that chose it) and the TLS policy as columns when targets differ, else one line each below.
    Routes asked for (``--via``) get the comparison table instead: one row per route."""
    from mpnet.render.routes import route_table, routed

    if routed(report):
        return route_table(report)
    results = report.results
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
    if len(routes) > 1:
        table.add_column("route (layer)", overflow="fold")
    if len(policies) > 1:
        table.add_column("TLS", overflow="fold")
    for result in results:
        phases = result.phases
        marked = result.uncertain_phases
        cells = []
        for key, _ in PHASE_COLUMNS:
            name = key if key != "http" or "http" in phases else "ws_upgrade"
            cells.append(_ms(phases.get(name), uncertain=name in marked))
        latency = result.latency
        shaky = any(a.uncertain for a in result.attempts if a.ok)
        stats = f"{_ms(latency.p50, uncertain=shaky)}/{_ms(latency.p95)}" if latency else "-"
        row: list[RenderableType] = [
            result.exchange,
            result.target,
            result_cell(result),
            *cells,
            stats,
            ok_cell(result),
        ]
        if len(routes) > 1:
            row.append(route_text(result))
        if len(policies) > 1:
            tls = tls_text(result)
            row.append(Text(tls, style="bold red" if tls.startswith("INSECURE") else ""))
        table.add_row(*row)
    shared: list[RenderableType] = []
    legend = uncertainty_legend(results)
    if legend is not None:
        shared.append(legend)
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


def probe_view(report: ProbeReport, *, verbose: bool = False) -> RenderableType:
    """Table, error lines, findings, TLS warnings and (with ``verbose``) waterfalls."""
    from mpnet.render.findings import findings_section
    from mpnet.render.routes import peer_lines, verdict_lines

    parts: list[RenderableType] = [probe_table(report)]
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
    parts.append(Text(""))
    parts.append(summary_line(report))
    return Group(*parts)
