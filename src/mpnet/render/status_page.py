"""The status page of ``mpnet serve`` (pure), like blackbox_exporter's recent-probes page.

One row per exchange x target the exporter has probed: the last result, when, its time, a strip
of the probes kept (one stacked bar each, failures hatched and marked ✗), and links to probe it
again (metrics, ``debug=true`` JSON, HTML) or to see the kept probe as HTML; then the last
probe's waterfall and findings per target. Every exchange is listed with its links, those not
probed yet marked so. The page refreshes itself (``<meta http-equiv="refresh">``); no script.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlencode

from mpnet.probe.recent import RecentProbe, RecentProbes
from mpnet.render.html import (
    attempt_total,
    esc,
    findings_html,
    fmt_ms,
    page,
    result_badge,
    samples_strip_svg,
    waterfall_svg,
)


def probe_link(exchange: str, target: str | None = None, **extra: str) -> str:
    """``/probe?exchange=okx&target=ws&debug=true``, escaped for an attribute."""
    query = {"exchange": exchange, **({"target": target} if target else {}), **extra}
    return esc("/probe?" + urlencode(query))


def recent_link(exchange: str, target: str) -> str:
    return esc("/recent?" + urlencode({"exchange": exchange, "target": target}))


def clock_time(started_at: str) -> str:
    """``09:09:50 UTC`` from ``2026-12-03T09:09:50+00:00`` (the date is in the tooltip)."""
    _date, sep, time = started_at.partition("T")
    if not sep:
        return started_at
    for utc in ("+00:00", "Z"):
        if time.endswith(utc):
            return time.removesuffix(utc) + " UTC"
    return time


def _links(exchange: str, target: str | None) -> str:
    return (
        f'<a href="{probe_link(exchange, target)}">metrics</a> · '
        f'<a href="{probe_link(exchange, target, debug="true")}">JSON</a> · '
        f'<a href="{probe_link(exchange, target, format="html")}">HTML</a>'
    )


def _row(exchange: str, target: str, history: Sequence[RecentProbe]) -> str:
    results = [p.result for p in history]
    last, result = history[-1], results[-1]
    phases = result.get("phases") or {}
    total = attempt_total(phases) if phases else None
    strip = samples_strip_svg(
        results, names=[f"probe #{p.serial} at {p.started_at}" for p in history]
    )
    codes = " ".join(esc(f.get("code", "")) for f in result.get("findings") or [])
    ok = sum(1 for p in history if p.ok)
    return (
        f'<tr data-exchange="{esc(exchange)}" data-target="{esc(target)}">'
        f'<td><a href="#t-{esc(exchange)}-{esc(target)}">{esc(exchange)}</a></td>'
        f"<td>{esc(target)}</td><td>{result_badge(result)}</td>"
        f'<td class=mono title="{esc(last.started_at)}">{esc(clock_time(last.started_at))}</td>'
        f"<td class=n>{esc(fmt_ms(total))}</td>"
        f"<td class=n>{ok}/{len(history)}</td><td>{strip}</td><td>{codes}</td>"
        f"<td>{_links(exchange, target)} · "
        f'<a href="{recent_link(exchange, target)}">kept probe</a></td></tr>'
    )


def _section(exchange: str, target: str, last: RecentProbe) -> str:
    result = last.result
    error = result.get("error") or {}
    message = (
        f'<p><span class="bad">✗ {esc(error.get("phase", "?"))} failed '
        f"({esc(error.get('kind', '?'))})</span>: {esc(error.get('message', ''))}</p>"
        if error
        else ""
    )
    return (
        f'<section class="target" id="t-{esc(exchange)}-{esc(target)}" '
        f'data-exchange="{esc(exchange)}" data-target="{esc(target)}">'
        f"<h2>{esc(exchange)} {esc(target)} {result_badge(result)} "
        f'<span class="mut">probe #{last.serial}, {esc(last.started_at)}</span></h2>'
        f"<p><code>{esc(result.get('url', ''))}</code></p>{message}"
        + waterfall_svg(
            result.get("phases") or {},
            failed_phase=error.get("phase") if error else None,
            caption=f"{exchange} {target}",
        )
        + findings_html(result.get("findings") or [])
        + "</section>"
    )


def status_page_html(
    *,
    exchanges: Sequence[str],
    recent: RecentProbes,
    version: str,
    host: str,
    now: str,
    refresh_s: int = 10,
) -> str:
    """The page at ``GET /``.

    Args:
        exchanges: every exchange the exporter may probe (each gets its links).
        recent: the probes kept.
        version: mpnet's version; host: this machine's name; now: the time of the page (ISO).
        refresh_s: seconds between reloads (0: no reload).
    """
    probed = recent.targets()
    rows = "".join(_row(e, t, recent.history(e, t)) for e, t in probed)
    failing = sum(1 for e, t in probed if not (recent.history(e, t)[-1].ok))
    seen = {e for e, _ in probed}
    head = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s > 0 else ""
    if probed:
        verdict = (
            f'<p><span class="bad">✗ {failing} of {len(probed)} targets failed their last '
            "probe</span></p>"
            if failing
            else f'<p><span class="ok">✓ all {len(probed)} targets passed their last probe'
            "</span></p>"
        )
        table = (
            f"<h2>Recent probes ({len(recent)} kept, at most {recent.per_target} per target)"
            "</h2><table><tr><th>exchange</th><th>target</th><th>last result</th>"
            "<th>started</th><th class=n>time</th><th class=n>ok</th>"
            "<th>kept probes, oldest first</th><th>findings</th><th>probe now</th></tr>"
            + rows
            + "</table>"
        )
    else:
        verdict = "<p>No probe yet: Prometheus (or you) asks for one with a link below.</p>"
        table = ""
    index = (
        "<h2>Exchanges</h2><ul>"
        + "".join(
            f"<li>{esc(name)}{'' if name in seen else ' <span class=mut>(not probed yet)</span>'}"
            f": {_links(name, None)} (rest: {_links(name, 'rest')}; ws: {_links(name, 'ws')})</li>"
            for name in exchanges
        )
        + "</ul>"
    )
    refresh = f"reloads every {refresh_s} s" if refresh_s > 0 else "does not reload"
    body = (
        "<header><h1>mpnet exporter</h1>"
        f'<p class="meta">mpnet {esc(version)} · on {esc(host)} · {esc(now)} · this page '
        f'{refresh} · the exporter\'s own metrics: <a href="/metrics">/metrics</a></p>'
        f"{verdict}</header>"
        + table
        + "".join(_section(e, t, recent.history(e, t)[-1]) for e, t in probed)
        + index
        + "<footer>Each link under “probe now” runs a new probe: <code>/probe?exchange=NAME"
        "[&amp;target=rest|ws]</code> answers with metrics for Prometheus, add "
        "<code>&amp;debug=true</code> for the JSON report or <code>&amp;format=html</code> "
        "for this page's picture of it; “kept probe” shows the one kept here. ✗ marks a "
        "failure, ⚠ a warning, ℹ a fact to know (TLS inspection); proxy passwords are shown as "
        "***.</footer>"
    )
    return page("mpnet exporter", body, head_extra=head)
