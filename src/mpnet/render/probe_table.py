"""The probe table (pure): one row per exchange x target, failures and findings under it."""

from __future__ import annotations

from collections.abc import Sequence

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
    ("first_message", "first msg"),
    ("ping_rtt", "ping"),
)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def proxy_cell(result: ProbeResult) -> Text:
    decision = result.proxy
    who = decision.source or decision.layer
    if decision.proxy is None:
        label = "direct"
        if decision.no_proxy_match:
            label += f" (no_proxy {decision.no_proxy_match})"
    else:
        label = decision.proxy.redacted()
    text = Text(label)
    text.append(
        f"\n{decision.layer}: {who}" if who != decision.layer else f"\n{decision.layer}",
        style="dim",
    )
    return text


def tls_cell(result: ProbeResult) -> Text:
    decision = result.ssl
    if not result.url.startswith(("https:", "wss:")):
        return Text("plain", style="dim")
    if not decision.verify:
        return Text(f"INSECURE\n{decision.layer}", style="bold red")
    ca = decision.ca or "-"
    if len(ca) > 24:
        ca = "…" + ca[-23:]
    return Text(f"verify {ca}\n", style="").append(decision.layer, style="dim")


def result_cell(result: ProbeResult) -> Text:
    if result.ok:
        return Text("ok", style="bold green")
    error = result.error
    if error is None:
        return Text("not run", style="yellow")
    return Text(f"FAIL\n{error.phase}", style="bold red")


def probe_table(report: ProbeReport) -> Table:
    """The main table: result, proxy and its layer, TLS policy, phase ms, p50/p95, ratio."""
    table = Table(title_justify="left", show_lines=False, pad_edge=False)
    table.add_column("exchange", no_wrap=True)
    table.add_column("target", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("proxy (layer)", overflow="fold", max_width=34)
    table.add_column("TLS", overflow="fold", max_width=28)
    for _, title in PHASE_COLUMNS:
        table.add_column(title, justify="right", no_wrap=True)
    table.add_column("p50/p95", justify="right", no_wrap=True)
    table.add_column("ok", justify="right", no_wrap=True)
    for result in report.results:
        phases = result.phases
        http = phases.get("http", phases.get("ws_upgrade"))
        cells = [_ms(phases.get(key)) if key != "http" else _ms(http) for key, _ in PHASE_COLUMNS]
        latency = result.latency
        stats = f"{_ms(latency.p50)}/{_ms(latency.p95)}" if latency else "-"
        table.add_row(
            result.exchange,
            result.target,
            result_cell(result),
            proxy_cell(result),
            tls_cell(result),
            *cells,
            stats,
            f"{result.successes}/{len(result.attempts)}",
        )
    return table


def error_lines(results: Sequence[ProbeResult]) -> list[Text]:
    """One line per failed target: where it failed and the error message."""
    lines = []
    for result in results:
        error = result.error
        if result.ok or error is None:
            continue
        line = Text(f"{result.exchange} {result.target}: ", style="bold")
        line.append(f"{error.phase} failed", style="red")
        line.append(f" ({error.kind}): {error.message}")
        lines.append(line)
    return lines


def summary_line(report: ProbeReport) -> Text:
    total = len(report.results)
    ok = sum(1 for r in report.results if r.ok)
    style = "bold green" if ok == total and not report.interrupted else "bold red"
    text = Text(f"{ok}/{total} probes ok", style=style)
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
