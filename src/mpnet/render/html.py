"""A probe report as ONE self-contained HTML file (pure): inline CSS and SVG, no script, no
request to anywhere, readable offline, printed on A4 and as an e-mail attachment.

It is drawn from the report's JSON document (:meth:`mpnet.core.result.ProbeReport.to_dict`, the
``--format json`` shape), so it shows exactly what the JSON says, passwords already redacted.
Every key past the first version of that shape is optional: a key that is missing is left out,
a key that is present (``samples``, ``route``, ``edge``, ``clock``, ``feed``, ``loop_lag_ms``,
``comparison``, the decisions' ``trace``) is shown.

Meaning is never carried by colour alone: results and findings carry a symbol and a word
(``✓ ok``, ``✗ FAIL tls``, ``⚠ warning``), failed phases a hatch pattern and the word "failed",
and every bar has a text label and a ``<title>`` tooltip with its milliseconds. Each phase of a
waterfall is one SVG element with ``data-phase="NAME"``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mpnet.core.result import PHASE_ORDER
from mpnet.render.waterfall import DETACHED_PHASES, PHASE_LABELS

SEVERITY_MARKS = {"error": ("✗", "error"), "warning": ("⚠", "warning"), "info": ("ℹ", "info")}
#: The CSS class of each severity's mark (colour) in a findings list.
_SEVERITY_CLASS = {"error": "bad", "warning": "warn", "info": "info"}

#: The stylesheet every mpnet page shares (the report, the exporter's status page, the
#: latency-over-time page). Colours are variables so dark mode and print only swap values.
CSS = """
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--mut:#59636e;--line:#d1d9e0;--card:#f6f8fa;
--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--boot:#8250df;--dns:#1b7c9c;--tcp:#2da44e;
--proxy:#bf8700;--tls:#0969da;--http:#bf3989;--first:#1b7c83;--ping:#818b98;--band:#0969da33}
@media screen and (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--mut:#9198a1;
--line:#3d444d;--card:#151b23;--ok:#3fb950;--bad:#f85149;--warn:#d29922;--boot:#ab7df8;
--dns:#39c5cf;--tcp:#56d364;--proxy:#e3b341;--tls:#4493f8;--http:#f778ba;--first:#2bb5a8;
--ping:#9198a1;--band:#4493f844}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:72rem;padding:1rem;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif}
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:0 0 .4rem}
h3{font-size:.95rem;margin:.6rem 0 .2rem}
a{color:var(--tls)}code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9em}
.meta{color:var(--mut);margin:0 0 .8rem}
table{border-collapse:collapse;margin:.3rem 0;font-size:.92em}
th,td{border-bottom:1px solid var(--line);padding:.15rem .5rem;text-align:left;vertical-align:top}
th{font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td.n,td.mono{white-space:nowrap}
td code{overflow-wrap:anywhere}
.target{border:1px solid var(--line);border-radius:6px;padding:.7rem .9rem;margin:.8rem 0;
background:var(--card)}
.cols{display:flex;flex-wrap:wrap;gap:.4rem 1.6rem}.cols>div{flex:1 1 22rem;min-width:0}
.cols>div:first-child{flex-basis:36rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.1rem .8rem;margin:.2rem 0}
dt{color:var(--mut)}dd{margin:0;overflow-wrap:anywhere}
.ok{color:var(--ok);font-weight:600}.bad{color:var(--bad);font-weight:600}
.warn{color:var(--warn);font-weight:600}.info{color:var(--tls);font-weight:600}
.mut{color:var(--mut)}
.findings{list-style:none;padding:0;margin:.3rem 0}
.findings li{border-left:4px solid var(--bad);padding:.2rem .6rem;margin:.3rem 0;
background:var(--bg)}.findings li.warning{border-left-style:dashed;border-left-color:var(--warn)}
.findings li.info{border-left-style:dotted;border-left-color:var(--tls)}
.hint{margin:.15rem 0 0}.hint b{color:var(--mut)}
svg{display:block;max-width:100%;height:auto}
svg text{fill:var(--fg);font:11px ui-monospace,SFMono-Regular,Menlo,monospace}
svg .mut{fill:var(--mut)}svg .axis{stroke:var(--line);fill:none}
.p-bootstrap{fill:var(--boot)}.p-dns{fill:var(--dns)}.p-tcp{fill:var(--tcp)}
.p-proxy{fill:var(--proxy)}.p-tls{fill:var(--tls)}.p-http,.p-ws_upgrade{fill:var(--http)}
.p-first_message{fill:var(--first)}.p-ping_rtt,.p-other{fill:var(--ping)}
.failed{fill:url(#hatch);stroke:var(--bad);stroke-width:1.5}
.hit{fill:transparent}.hit:hover{fill:var(--band)}
.xmark{fill:var(--bad);font-weight:700}
.band{fill:var(--band)}.p50{stroke:var(--tls);stroke-width:1.5;fill:none}
.dots{stroke:var(--fg);stroke-width:3;stroke-linecap:round;fill:none;opacity:.45}
.drop{stroke:var(--bad);stroke-width:1.5;stroke-dasharray:3 2}
.reconnect{stroke:var(--warn);stroke-width:1.5}
footer{color:var(--mut);font-size:.85em;margin-top:1.5rem}
@page{size:A4;margin:12mm}
@media print{body{max-width:none;padding:0;font-size:9.5pt;background:#fff;color:#000}
.target{break-inside:avoid;background:#fff}a{color:inherit;text-decoration:none}
.noprint{display:none}}
"""

#: Shared SVG definitions (the hatch of failed phases), once per document.
SVG_DEFS = (
    '<svg width="0" height="0" style="position:absolute" aria-hidden="true"><defs>'
    '<pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="6" height="6" fill="none"/>'
    '<line x1="0" y1="0" x2="0" y2="6" style="stroke:var(--bad);stroke-width:3"/></pattern>'
    "</defs></svg>"
)


def esc(value: object) -> str:
    """Text for HTML content and attributes (quotes escaped too)."""
    return html.escape(str(value), quote=True)


def fmt_ms(value: object) -> str:
    """``0.42 ms``, ``12.3 ms``, ``1234 ms`` (as the terminal waterfall); ``-`` when unknown."""
    number = _number(value)
    if number is None:
        return "-"
    if abs(number) < 10:
        return f"{number:.2f} ms"
    if abs(number) < 100:
        return f"{number:.1f} ms"
    return f"{number:.0f} ms"


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _c(value: float) -> str:
    """An SVG coordinate: one decimal, no trailing zeros (keeps a 26-target report small)."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def ordered_phases(phases: Mapping[str, Any]) -> list[tuple[str, float]]:
    """``(phase, ms)`` in connection order, unknown names last, non-numbers left out."""
    known = [name for name in PHASE_ORDER if name in phases]
    unknown = [name for name in phases if name not in PHASE_ORDER]
    pairs = []
    for name in known + unknown:
        value = _number(phases[name])
        if value is not None:
            pairs.append((name, max(0.0, value)))
    return pairs


def attempt_total(phases: Mapping[str, Any]) -> float:
    """The attempt's time: the sum of its phases except ``ping_rtt`` (as ``latency_ms``)."""
    return sum(v for k, v in ordered_phases(phases) if k not in DETACHED_PHASES)


def _phase_class(name: str) -> str:
    return f"p-{name}" if name in PHASE_LABELS else "p-other"


# -- waterfall ----------------------------------------------------------------------------------

WATERFALL_WIDTH = 560
_LABEL_X = 4
_MS_X = 236  # right edge of the milliseconds column
_BAR_X = 244
_ROW = 17


def waterfall_svg(
    phases: Mapping[str, Any], *, failed_phase: str | None = None, caption: str = ""
) -> str:
    """A phase waterfall as inline SVG, like httpstat: one row per phase, each bar starting
    where the previous phase ended; ``ping_rtt`` from its own origin below the total.

    Each phase is one ``<rect data-phase="NAME">`` with a ``<title>`` giving its milliseconds.
    ``failed_phase`` (the error's phase) is hatched and labelled "failed"; when it has no timing
    (it failed before its clock stopped) it is drawn as a ✗ where the timeline ends.
    """
    ordered = ordered_phases(phases)
    timeline = [(n, v) for n, v in ordered if n not in DETACHED_PHASES]
    detached = [(n, v) for n, v in ordered if n in DETACHED_PHASES]
    total = sum(v for _, v in timeline)
    longest = max([total, *(v for _, v in detached)], default=0.0)
    span = WATERFALL_WIDTH - _BAR_X - 8
    scale = span / longest if longest > 0 else 0.0
    rows: list[str] = []
    y = 4
    start = 0.0

    def label(text: str, ms: str, y: int, cls: str = "") -> str:
        attr = f' class="{cls}"' if cls else ""
        return (
            f'<text x="{_LABEL_X}" y="{y + 11}"{attr}>{esc(text)}</text>'
            f'<text x="{_MS_X}" y="{y + 11}" text-anchor="end"{attr}>{esc(ms)}</text>'
        )

    for name, value in timeline:
        failed = name == failed_phase
        title = f"{PHASE_LABELS.get(name, name)}: {fmt_ms(value)}" + (
            f", from {fmt_ms(start)} to {fmt_ms(start + value)}" if start else ""
        )
        if failed:
            title += " (failed here)"
        cls = _phase_class(name) + (" failed" if failed else "")
        width = max(1.0, value * scale)
        rows.append(
            label(PHASE_LABELS.get(name, name) + (" ✗ failed" if failed else ""), fmt_ms(value), y)
            + f'<rect data-phase="{esc(name)}" class="{cls}" x="{_c(_BAR_X + start * scale)}" '
            f'y="{y + 2}" width="{_c(width)}" height="11"><title>{esc(title)}</title></rect>'
        )
        start += value
        y += _ROW
    if failed_phase and failed_phase not in phases:
        x = _BAR_X + start * scale
        rows.append(
            label(PHASE_LABELS.get(failed_phase, failed_phase) + " ✗ failed", "no time", y)
            + f'<g data-phase="{esc(failed_phase)}" class="failed-mark">'
            f"<title>{esc(PHASE_LABELS.get(failed_phase, failed_phase))}: failed before "
            f'its clock stopped</title><text class="xmark" x="{_c(x)}" y="{y + 12}">✗</text></g>'
        )
        y += _ROW
    if timeline:
        rows.append(
            f'<line class="axis" x1="{_LABEL_X}" y1="{y + 1}" x2="{WATERFALL_WIDTH - 4}" '
            f'y2="{y + 1}"/>' + label("total", fmt_ms(total), y + 2, "")
        )
        y += _ROW + 2
    for name, value in detached:
        title = f"{PHASE_LABELS.get(name, name)}: {fmt_ms(value)} (on the open connection)"
        rows.append(
            label(PHASE_LABELS.get(name, name), fmt_ms(value), y)
            + f'<rect data-phase="{esc(name)}" class="{_phase_class(name)}" x="{_BAR_X}" '
            f'y="{y + 2}" width="{_c(max(1.0, value * scale))}" height="11">'
            f"<title>{esc(title)}</title></rect>"
        )
        y += _ROW
    if not rows:
        return '<p class="mut">no phase completed: nothing to draw</p>'
    described = ", ".join(f"{PHASE_LABELS.get(n, n)} {fmt_ms(v)}" for n, v in ordered)
    aria = caption or "phase waterfall"
    return (
        f'<svg class="waterfall" viewBox="0 0 {WATERFALL_WIDTH} {y + 2}" width="{WATERFALL_WIDTH}"'
        f' role="img" aria-label="{esc(aria + ": " + described)}">' + "".join(rows) + "</svg>"
    )


# -- the attempts strip -------------------------------------------------------------------------

STRIP_HEIGHT = 64


def samples_strip_svg(
    samples: Sequence[Mapping[str, Any]], *, names: Sequence[str] | None = None
) -> str:
    """One stacked bar per attempt, in order: its phases on a shared scale, so a phase that
    varies stands out; a failed attempt is hatched and marked ✗ below. One ``<title>`` per
    attempt lists its phases (and its loop lag when measured); ``names`` replaces its
    ``attempt N`` (the status page draws one bar per probe)."""
    if not samples:
        return ""
    totals = [attempt_total(_mapping(s.get("phases"))) for s in samples]
    top = max(totals, default=0.0) or 1.0
    n = len(samples)
    left, right = 56, 8
    slot = max(3.0, min(26.0, (WATERFALL_WIDTH - left - right) / n))
    bar = max(2.0, slot * 0.72)
    width = left + slot * n + right
    base = STRIP_HEIGHT - 16
    scale = (base - 4) / top
    paths: dict[str, list[str]] = {}
    hits: list[str] = []
    marks: list[str] = []
    for index, (sample, total) in enumerate(zip(samples, totals, strict=True)):
        x = left + index * slot
        phases = ordered_phases(_mapping(sample.get("phases")))
        error = _mapping(sample.get("error"))
        ok = sample.get("ok") is True
        y = float(base)
        for name, value in phases:
            if name in DETACHED_PHASES:
                continue
            height = value * scale
            if height <= 0:
                continue
            cls = "failed" if (not ok and name == error.get("phase")) else _phase_class(name)
            paths.setdefault(cls, []).append(
                f"M{_c(x)} {_c(y)}h{_c(bar)}v{_c(-height)}h{_c(-bar)}z"
            )
            y -= height
        name = names[index] if names is not None else f"attempt {index + 1}"
        words = [f"{name}: " + ("ok" if ok else "FAILED"), fmt_ms(total)]
        if error:
            words.append(f"{error.get('phase', '?')} {error.get('kind', '')}".strip())
        words.extend(f"{k} {fmt_ms(v)}" for k, v in phases)
        lag = _number(sample.get("loop_lag_ms"))
        if lag is not None:
            words.append(f"event-loop lag {fmt_ms(lag)}")
        kernel = _number(sample.get("tcp_rtt_kernel_ms"))
        if kernel is not None:
            words.append(f"kernel TCP RTT {fmt_ms(kernel)}")
        hits.append(
            f'<rect class="hit" data-attempt="{index + 1}" data-ok="{str(ok).lower()}" '
            f'x="{_c(x)}" y="0" width="{_c(slot)}" height="{STRIP_HEIGHT}">'
            f"<title>{esc('; '.join(words))}</title></rect>"
        )
        if not ok:
            marks.append(f'<text class="xmark" x="{_c(x)}" y="{base + 12}">✗</text>')
    body = "".join(f'<path class="{cls}" d="{"".join(d)}"/>' for cls, d in paths.items())
    failed = sum(1 for s in samples if s.get("ok") is not True)
    aria = f"{n} attempts in order, {n - failed} ok, {failed} failed; tallest {fmt_ms(top)}"
    return (
        f'<svg class="strip" viewBox="0 0 {_c(width)} {STRIP_HEIGHT}" width="{_c(width)}" '
        f'role="img" aria-label="{esc(aria)}">'
        f'<text class="mut" x="2" y="10">{esc(fmt_ms(top))}</text>'
        f'<text class="mut" x="2" y="{base}">0</text>'
        f'<line class="axis" x1="{left - 2}" y1="{base + 0.5}" x2="{_c(width - right)}" '
        f'y2="{base + 0.5}"/>' + body + "".join(marks) + "".join(hits) + "</svg>"
    )


# -- pieces of a result -------------------------------------------------------------------------


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def result_badge(result: Mapping[str, Any]) -> str:
    """``✓ ok`` / ``✗ FAIL tls`` / ``– not run``: a symbol, a word and a colour."""
    if result.get("ok") is True:
        return '<span class="ok">✓ ok</span>'
    error = _mapping(result.get("error"))
    if not error:
        return '<span class="warn">– not run</span>'
    return f'<span class="bad">✗ FAIL {esc(error.get("phase", "?"))}</span>'


def latency_text(result: Mapping[str, Any]) -> str:
    latency = _mapping(result.get("latency_ms"))
    if not latency:
        return "-"
    return f"{fmt_ms(latency.get('p50'))} / {fmt_ms(latency.get('p95'))}"


def route_text(result: Mapping[str, Any]) -> str:
    """``direct (default)`` or ``http://u:***@proxy:3128 (cli --proxy)``: as the table says."""
    proxy = _mapping(result.get("proxy"))
    where = str(proxy.get("layer") or "?")
    if proxy.get("source"):
        where += f" {proxy['source']}"
    if not proxy.get("url"):
        label = "direct"
        if proxy.get("no_proxy_match"):
            label += f", no_proxy {proxy['no_proxy_match']}"
        return f"{label} ({where})"
    return f"{proxy['url']} ({where})"


def tls_policy_text(result: Mapping[str, Any]) -> str:
    ssl = _mapping(result.get("ssl"))
    if not str(result.get("url", "")).startswith(("https:", "wss:")):
        return "plain (no TLS)"
    if ssl.get("verify") is False:
        return f"⚠ INSECURE, not verified ({ssl.get('layer')}: {ssl.get('reason')})"
    return f"verify against {ssl.get('ca')} ({ssl.get('layer')})"


def _dl(rows: Iterable[tuple[str, str]]) -> str:
    """A definition list of already-escaped values; empty when there is nothing to say."""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in rows)
    return f"<dl>{items}</dl>" if items else ""


def _verdict(entry: Mapping[str, Any]) -> str:
    verdict = esc(entry.get("verdict", ""))
    return f"<b>{verdict}</b>" if entry.get("verdict") == "won" else verdict


def _trace_table(trace: Sequence[Any]) -> str:
    rows = "".join(
        f"<tr><td>{esc(e.get('layer', ''))}</td><td class=mono>{esc(e.get('value') or '-')}</td>"
        f"<td>{_verdict(e)}</td><td>{esc(e.get('detail') or '')}</td></tr>"
        for e in (_mapping(x) for x in trace)
    )
    if not rows:
        return ""
    return (
        "<table><tr><th>layer</th><th>value</th><th>verdict</th><th>detail</th></tr>"
        + rows
        + "</table>"
    )


def decisions_html(result: Mapping[str, Any], *, heading: bool = True) -> str:
    """The route, the proxy decision with its layer trace, and the TLS policy."""
    proxy = _mapping(result.get("proxy"))
    ssl = _mapping(result.get("ssl"))
    rows: list[tuple[str, str]] = []
    if result.get("route") is not None:
        rows.append(("route", f"<code>{esc(result['route'])}</code>"))
    rows.append(("proxy", f"<code>{esc(route_text(result))}</code>"))
    if proxy.get("scheme"):
        rows.append(("scheme", esc(proxy["scheme"])))
    policy = tls_policy_text(result)
    cls = ' class="bad"' if policy.startswith("⚠") else ""
    rows.append(("TLS policy", f"<span{cls}>{esc(policy)}</span>"))
    if ssl.get("reason") and ssl.get("verify") is not False:
        rows.append(("why", esc(ssl["reason"])))
    warnings = "".join(
        f'<p class="bad">⚠ warning: {esc(w)}</p>' for w in _list(ssl.get("warnings"))
    )
    parts = ["<h3>Decisions</h3>" if heading else "", _dl(rows), warnings]
    if _list(proxy.get("trace")):
        parts.append("<h3>Proxy layers (highest first)</h3>" + _trace_table(proxy["trace"]))
    if _list(ssl.get("trace")):
        parts.append("<h3>TLS layers (highest first)</h3>" + _trace_table(ssl["trace"]))
    return "".join(parts)


def details_html(result: Mapping[str, Any]) -> str:
    """TLS details, the edge, the clock, the feed and the event-loop lag, when known."""
    parts: list[str] = []
    tls = _mapping(result.get("tls"))
    tls_rows = [
        (label, esc(tls[key]))
        for key, label in (
            ("version", "version"),
            ("cipher", "cipher"),
            ("alpn", "ALPN"),
            ("subject", "certificate"),
            ("issuer", "issuer"),
        )
        if tls.get(key)
    ]
    if tls.get("cert_not_after"):
        days = tls.get("cert_days_left")
        left = f" ({days} days left)" if isinstance(days, int) else ""
        cls = ' class="warn"' if isinstance(days, int) and days < 14 else ""
        tls_rows.append(("expires", f"<span{cls}>{esc(tls['cert_not_after'])}{esc(left)}</span>"))
    if tls_rows:
        parts.append("<h3>TLS</h3>" + _dl(tls_rows))
    edge = _mapping(result.get("edge"))
    edge_rows = [(k, f"<code>{esc(edge[k])}</code>") for k in ("cdn", "pop", "id") if edge.get(k)]
    if edge_rows:
        parts.append("<h3>Edge</h3>" + _dl(edge_rows))
    clock = _mapping(result.get("clock"))
    if _number(clock.get("offset_ms")) is not None:
        offset = float(clock["offset_ms"])
        error = _number(clock.get("error_ms"))
        text = f"{offset:+.1f} ms" + (f" ± {error:.1f} ms" if error is not None else "")
        side = "ahead of" if offset > 0 else "behind" if offset < 0 else "level with"
        rows = [("offset", f"{esc(text)} <span class=mut>(exchange {side} this clock)</span>")]
        if clock.get("source"):
            rows.append(("source", esc(clock["source"])))
        if clock.get("samples") is not None:
            rows.append(("samples", esc(clock["samples"])))
        parts.append("<h3>Clock</h3>" + _dl(rows))
    feed = _mapping(result.get("feed"))
    if feed:
        lag = _mapping(feed.get("lag_ms"))
        rows = []
        if feed.get("messages") is not None:
            rows.append(("messages", esc(feed["messages"])))
        if _number(feed.get("rate_per_s")) is not None:
            rows.append(("rate", f"{float(feed['rate_per_s']):.1f}/s"))
        if lag:
            lag_text = " / ".join(fmt_ms(lag.get(k)) for k in ("p50", "p95", "max"))
            corrected = " (corrected for the clock offset)" if feed.get("corrected") is True else ""
            rows.append(("lag p50/p95/max", esc(lag_text + corrected)))
        if rows:
            parts.append("<h3>Feed</h3>" + _dl(rows))
    lag_value = result.get("loop_lag_ms")
    lag_ms = _number(lag_value) if not isinstance(lag_value, Mapping) else None
    if isinstance(lag_value, Mapping):
        lag_ms = _number(lag_value.get("max"))
    if lag_ms is not None:
        parts.append(
            "<p class=mut>Event-loop lag while probing: up to "
            f"{esc(fmt_ms(lag_ms))} (timings may include up to this much waiting)</p>"
        )
    return "".join(parts)


def findings_html(findings: Sequence[Any]) -> str:
    """Each finding: severity as symbol and word, its code, the evidence, then the hint."""
    items = []
    for finding in (_mapping(f) for f in findings):
        severity = str(finding.get("severity") or "error")
        symbol, word = SEVERITY_MARKS.get(severity, SEVERITY_MARKS["error"])
        cls = _SEVERITY_CLASS.get(severity, "bad")
        items.append(
            f'<li class="{esc(severity)}" data-code="{esc(finding.get("code", ""))}">'
            f'<span class="{cls}">{symbol} {word} <code>{esc(finding.get("code", ""))}</code>'
            f"</span> {esc(finding.get('message', ''))}"
            f'<p class="hint"><b>hint:</b> {esc(finding.get("hint", ""))}</p></li>'
        )
    if not items:
        return ""
    return '<h3>Findings</h3><ul class="findings">' + "".join(items) + "</ul>"


def _slug(value: object) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in str(value))


def target_id(result: Mapping[str, Any], index: int) -> str:
    """The section's anchor: ``r3-binance-ws`` (the index keeps repeated names apart)."""
    return f"r{index}-{_slug(result.get('exchange', ''))}-{_slug(result.get('target', ''))}"


def result_section(result: Mapping[str, Any], index: int, *, decisions: bool = True) -> str:
    """One target: result, waterfall, attempts strip, error, findings, decisions (unless shown
    once for all targets), details."""
    error = _mapping(result.get("error"))
    samples = [_mapping(s) for s in _list(result.get("samples"))]
    phases = _mapping(result.get("phases"))
    attempts = result.get("attempts")
    successes = result.get("successes")
    heading = (
        f"{esc(result.get('exchange', '?'))} {esc(result.get('target', '?'))} "
        f"{result_badge(result)}"
    )
    facts = [
        ("URL", f"<code>{esc(result.get('url', ''))}</code>"),
        ("attempts ok", f"{esc(successes)}/{esc(attempts)}"),
        ("p50 / p95", esc(latency_text(result))),
    ]
    if error:
        facts.append(
            (
                "error",
                f'<span class="bad">✗ {esc(error.get("phase", "?"))} failed '
                f"({esc(error.get('kind', '?'))})</span>: {esc(error.get('message', ''))}",
            )
        )
    label = f"{result.get('exchange')} {result.get('target')}"
    caption = "phases"
    if len(samples) > 1:
        caption = f"phases: median of each over {len(samples)} attempts"
    parts = [
        f'<section class="target" id="{target_id(result, index)}" '
        f'data-exchange="{esc(result.get("exchange", ""))}" '
        f'data-target="{esc(result.get("target", ""))}" '
        f'data-ok="{str(result.get("ok") is True).lower()}">',
        f"<h2>{heading}</h2>",
        '<div class="cols"><div>',
        _dl(facts),
        f"<h3>{esc(caption)}</h3>",
        waterfall_svg(phases, failed_phase=error.get("phase") if error else None, caption=label),
    ]
    if samples:
        failed = sum(1 for s in samples if s.get("ok") is not True)
        parts.append(
            f"<h3>Attempts in order ({len(samples) - failed} ok"
            + (f", {failed} failed: ✗" if failed else "")
            + ")</h3>"
            + samples_strip_svg(samples)
        )
    parts.append(findings_html(_list(result.get("findings"))))
    parts.append("</div><div>")
    if decisions:
        parts.append(decisions_html(result))
    parts.append(details_html(result))
    parts.append("</div></div></section>")
    return "".join(parts)


def overview_table(results: Sequence[Mapping[str, Any]], *, link: bool = True) -> str:
    """One row per result: result, p50/p95, attempts ok, route, finding codes."""
    rows = []
    for index, result in enumerate(results):
        name = f"{esc(result.get('exchange', '?'))}"
        if link:
            name = f'<a href="#{target_id(result, index)}">{name}</a>'
        codes = " ".join(esc(_mapping(f).get("code", "")) for f in _list(result.get("findings")))
        route = result.get("route")
        rows.append(
            f"<tr><td>{name}</td><td>{esc(result.get('target', '?'))}</td>"
            f"<td>{result_badge(result)}</td><td class=n>{esc(latency_text(result))}</td>"
            f"<td class=n>{esc(result.get('successes'))}/{esc(result.get('attempts'))}</td>"
            f"<td><code>{esc(route if route is not None else route_text(result))}</code></td>"
            f"<td>{codes}</td></tr>"
        )
    return (
        "<table><tr><th>exchange</th><th>target</th><th>result</th><th class=n>p50 / p95</th>"
        "<th class=n>ok</th><th>route</th><th>findings</th></tr>" + "".join(rows) + "</table>"
    )


OK_MARK = '<span class="ok">✓ ok</span>'
FAILED_MARK = '<span class="bad">✗ failed</span>'


def comparison_html(comparison: object) -> str:
    """The top-level ``comparison`` of routes, when the report has one."""
    entries = [_mapping(c) for c in _list(comparison)]
    if isinstance(comparison, Mapping):
        entries = [{"name": key, **_mapping(value)} for key, value in comparison.items()]
    blocks = []
    for entry in entries:
        title = entry.get("name") or " ".join(
            str(entry.get(k)) for k in ("exchange", "target") if entry.get(k)
        )
        rows = "".join(
            f"<tr><td><code>{esc(r.get('route', ''))}</code></td>"
            f"<td>{OK_MARK if r.get('ok') else FAILED_MARK}</td>"
            f"<td class=n>{esc(fmt_ms(r.get('p50_ms')))}</td>"
            f"<td class=n>{esc(fmt_ms(r.get('p95_ms')))}</td>"
            f"<td class=n>{esc(fmt_ms(r.get('delta_ms')))}</td></tr>"
            for r in (_mapping(x) for x in _list(entry.get("ranking")))
        )
        fastest = entry.get("fastest")
        blocks.append(
            f"<h3>{esc(title)}"
            + (f" — fastest: <code>{esc(fastest)}</code>" if fastest else "")
            + "</h3><table><tr><th>route</th><th>result</th><th class=n>p50</th>"
            "<th class=n>p95</th><th class=n>Δ</th></tr>" + rows + "</table>"
        )
    if not blocks:
        return ""
    return "<section><h2>Routes compared</h2>" + "".join(blocks) + "</section>"


def page(title: str, body: str, *, head_extra: str = "") -> str:
    """A whole HTML document around ``body`` with the shared stylesheet."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        # An empty icon in place: a browser asks no server for /favicon.ico.
        '<link rel="icon" href="data:,">'
        f"{head_extra}<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body>{SVG_DEFS}{body}</body></html>\n"
    )


def summary_text(report: Mapping[str, Any]) -> str:
    summary = _mapping(report.get("summary"))
    results = _list(report.get("results"))
    total = summary.get("total", len(results))
    ok = summary.get("ok", sum(1 for r in results if _mapping(r).get("ok") is True))
    return f"{ok}/{total} probes ok"


def render_report_html(
    report: Mapping[str, Any], *, host: str | None = None, generated_at: str | None = None
) -> str:
    """The whole report as one self-contained HTML document.

    Args:
        report: the ``--format json`` document (:meth:`ProbeReport.to_dict`), already redacted.
        host: the name of the machine that probed (the header shows it).
        generated_at: when the file was written (ISO 8601), shown beside the probe's start.
    """
    results = [_mapping(r) for r in _list(report.get("results"))]
    summary = _mapping(report.get("summary"))
    failed = summary.get("failed", sum(1 for r in results if r.get("ok") is not True))
    all_ok = bool(results) and not failed and not report.get("interrupted")
    verdict = (
        f'<span class="ok">✓ {esc(summary_text(report))}</span>'
        if all_ok
        else f'<span class="bad">✗ {esc(summary_text(report))}, {esc(failed)} failed</span>'
    )
    meta = [f"mpnet {esc(report.get('mpnet_version', '?'))}"]
    if report.get("started_at"):
        meta.append(f"started {esc(report['started_at'])}")
    if generated_at:
        meta.append(f"written {esc(generated_at)}")
    if host:
        meta.append(f"on {esc(host)}")
    interrupted = (
        '<p class="warn">⚠ interrupted: partial results</p>' if report.get("interrupted") else ""
    )
    # Decisions every target shares (the usual case) are shown once, as the table does.
    distinct = {decisions_html(r, heading=False) for r in results}
    shared = (
        '<section class="target" id="decisions"><h2>Decisions (all targets)</h2>'
        + distinct.pop()
        + "</section>"
        if len(distinct) == 1 and len(results) > 1
        else ""
    )
    body = (
        "<header><h1>mpnet probe report</h1>"
        f'<p class="meta">{" · ".join(meta)}</p><p>{verdict}</p>{interrupted}</header>'
        + ("<nav>" + overview_table(results) + "</nav>" if results else "<p>no results</p>")
        + comparison_html(report.get("comparison"))
        + shared
        + "".join(result_section(r, i, decisions=not shared) for i, r in enumerate(results))
        + "<footer>Phases: DNS lookup, TCP connect, proxy handshake, TLS handshake, HTTP first "
        "byte or WebSocket upgrade, first data message; the ping round trip is measured on the "
        "open connection. ✗ marks a failure, ⚠ a warning, ℹ a fact to know (TLS inspection). "
        "Proxy passwords are shown as ***."
        "</footer>"
    )
    title = f"mpnet report {report.get('started_at', '')}" + (f" {host}" if host else "")
    return page(title.strip(), body)
