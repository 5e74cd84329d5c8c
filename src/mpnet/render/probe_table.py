"""The probe table (pure): one row per exchange x target, failures and findings under it."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from mpnet.core.result import ProbeReport, ProbeResult

PHASE_COLUMNS = (
    ("dns", "dns"),
    ("tcp", "tcp"),
    ("proxy", "proxy"),
    ("tls", "tls"),
    ("http", "http/upg"),
    ("first_message", "1st msg"),
    ("ping_rtt", "ping"),
)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


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
    that chose it) and the TLS policy as columns when targets differ, else one line each below."""
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
        http = phases.get("http", phases.get("ws_upgrade"))
        cells = [_ms(http) if key == "http" else _ms(phases.get(key)) for key, _ in PHASE_COLUMNS]
        latency = result.latency
        stats = f"{_ms(latency.p50)}/{_ms(latency.p95)}" if latency else "-"
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

    parts: list[RenderableType] = [probe_table(report)]
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
            parts.append(Text(f"\n{result.exchange} {result.target}  {result.url}", style="bold"))
            parts.append(render_waterfall(result.phases))
    parts.append(Text(""))
    parts.append(summary_line(report))
    return Group(*parts)
