"""Latency over time as one self-contained HTML page (pure), from ``mpnet watch --record``.

Per target, on one time axis shared by every target: the p50-p95 band of the latency over
short buckets of time and its p50 line, each successful cycle as a dot (when there are few
enough to see), failed cycles as ✗ along the top, drops (ok -> fail) as dashed lines marked
"drop" and feed reconnects as solid lines marked "↻"; below it, when the records carry them,
the clock offset (exchange minus local) and the feed lag. Meaning is carried by shape and
words as well as colour, every mark has a ``<title>``, and the page shares the report's
stylesheet (dark mode, print).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from mpnet.core.clock import epoch_seconds
from mpnet.core.result import percentile
from mpnet.probe.timeline import (
    Timeline,
    drop_indexes,
    latencies,
    reconnect_indexes,
    summarize,
)
from mpnet.render.html import esc, fmt_ms, page

WIDTH = 760
LEFT = 64
RIGHT = 12
CHART_H = 190
SMALL_H = 90
#: Time buckets of the band, at most (one per record when there are fewer).
MAX_BUCKETS = 120
#: Cycles per bucket of the band, at least (fewer buckets when the recording is short).
SAMPLES_PER_BUCKET = 3
#: Above this many successful cycles, the dots are left out (the band says it all).
MAX_DOTS = 600


def _clock(seconds: float, *, tenths: bool = False) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    text = moment.strftime("%H:%M:%S")
    return f"{text}.{moment.microsecond // 100_000}" if tenths else text


def _c(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


class _Axis:
    """Time to x and value to y for one chart."""

    def __init__(self, t0: float, t1: float, top: float, height: float, vmin: float, vmax: float):
        self.t0, self.span = t0, max(t1 - t0, 1e-9)
        self.top, self.height = top, height
        self.vmin, self.vspan = vmin, max(vmax - vmin, 1e-9)

    def x(self, t: float) -> float:
        return LEFT + (t - self.t0) / self.span * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        return self.top + self.height - (value - self.vmin) / self.vspan * self.height


def _frame(axis: _Axis, labels: Sequence[tuple[float, str]], t0: float, t1: float) -> str:
    """Axes, value labels at ``labels`` and five time labels."""
    bottom = axis.top + axis.height
    parts = [
        f'<line class="axis" x1="{LEFT}" y1="{_c(bottom)}" x2="{WIDTH - RIGHT}" '
        f'y2="{_c(bottom)}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{_c(axis.top)}" x2="{LEFT}" y2="{_c(bottom)}"/>',
    ]
    for value, text in labels:
        y = axis.y(value)
        parts.append(
            f'<text class="mut" x="{LEFT - 4}" y="{_c(y + 4)}" text-anchor="end">{esc(text)}</text>'
        )
    for step in range(5):
        t = t0 + (t1 - t0) * step / 4
        anchor = "start" if step == 0 else "end" if step == 4 else "middle"
        parts.append(
            f'<text class="mut" x="{_c(axis.x(t))}" y="{_c(bottom + 14)}" '
            f'text-anchor="{anchor}">{_clock(t, tenths=t1 - t0 < 20)}</text>'
        )
    return "".join(parts)


def _band_path(points: Sequence[tuple[float, float, float]]) -> str:
    """A closed path between lows and highs over runs of ``(x, low_y, high_y)`` points."""
    if not points:
        return ""
    upper = "L".join(f"{_c(x)} {_c(hi)}" for x, _, hi in points)
    lower = "L".join(f"{_c(x)} {_c(lo)}" for x, lo, _ in reversed(points))
    if len(points) == 1:
        x, lo, hi = points[0]
        return f"M{_c(x - 2)} {_c(hi)}h4V{_c(lo)}h-4z"
    return f"M{upper}L{lower}z"


def _runs(
    items: Sequence[tuple[float, float, float] | None],
) -> list[list[tuple[float, float, float]]]:
    runs: list[list[tuple[float, float, float]]] = [[]]
    for item in items:
        if item is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(item)
    return [run for run in runs if run]


def latency_chart(timeline: Timeline, t0: float, t1: float) -> str:
    """The latency chart of one target (see the module docstring)."""
    records = timeline.records
    times = [epoch_seconds(r.get("at")) for r in records]
    ok_values = latencies(records)
    # A few cycles per bucket, so a bucket's p95 means something and jitter in the cycles'
    # times leaves no bucket empty.
    buckets = max(1, min(MAX_BUCKETS, len(records) // SAMPLES_PER_BUCKET))
    width_t = max(t1 - t0, 1e-9) / buckets
    per_bucket: list[list[float]] = [[] for _ in range(buckets)]
    failed_bucket: list[list[int]] = [[] for _ in range(buckets)]
    for index, (record, t) in enumerate(zip(records, times, strict=True)):
        if t is None:
            continue
        slot = min(buckets - 1, max(0, int((t - t0) / width_t)))
        ms = record.get("ms")
        if record.get("ok") is True and isinstance(ms, int | float):
            per_bucket[slot].append(float(ms))
        elif record.get("ok") is False:
            failed_bucket[slot].append(index)
    p95s = [percentile(b, 95) for b in per_bucket if b]
    top_value = max(p95s, default=0.0)
    if ok_values and len(ok_values) <= MAX_DOTS:
        top_value = max(top_value, max(ok_values))
    top_value = _nice(top_value * 1.08 or 1.0)
    axis = _Axis(t0, t1, 22, CHART_H - 22 - 22, 0.0, top_value)
    centre = [t0 + width_t * (i + 0.5) for i in range(buckets)]
    band_items: list[tuple[float, float, float] | None] = []
    for i, values in enumerate(per_bucket):
        if values:
            band_items.append(
                (axis.x(centre[i]), axis.y(percentile(values, 50)), axis.y(percentile(values, 95)))
            )
        elif failed_bucket[i]:
            band_items.append(None)  # nothing but failures: the line breaks here
    runs = _runs(band_items)
    band = "".join(_band_path(run) for run in runs)
    median = "".join(
        "M" + "L".join(f"{_c(x)} {_c(y)}" for x, y, _ in run) for run in runs if len(run) > 1
    )
    parts = [
        _frame(
            axis,
            [(0.0, "0"), (top_value / 2, fmt_ms(top_value / 2)), (top_value, fmt_ms(top_value))],
            t0,
            t1,
        )
    ]
    if band:
        parts.append(
            f'<path class="band" data-series="p50-p95" d="{band}"><title>p50 to p95 of the '
            "successful cycles in each bucket of time</title></path>"
        )
    if median:
        parts.append(f'<path class="p50" data-series="p50" d="{median}"><title>p50</title></path>')
    if ok_values and len(ok_values) <= MAX_DOTS:
        dots = "".join(
            f"M{_c(axis.x(t))} {_c(axis.y(float(r['ms'])))}h0"
            for r, t in zip(records, times, strict=True)
            if t is not None and r.get("ok") is True and isinstance(r.get("ms"), int | float)
        )
        parts.append(f'<path class="dots" data-series="samples" d="{dots}"/>')
    for i, indexes in enumerate(failed_bucket):
        if not indexes:
            continue
        first = records[indexes[0]]
        why = first.get("finding") or first.get("error") or "failed"
        parts.append(
            f'<g class="fail" data-count="{len(indexes)}"><title>{len(indexes)} failed '
            f"cycle(s) from {esc(first.get('at'))}: {esc(why)}</title>"
            f'<text class="xmark" x="{_c(axis.x(centre[i]) - 4)}" y="14">✗</text></g>'
        )
    for index in drop_indexes(records):
        t = times[index]
        if t is None:
            continue
        x = axis.x(t)
        record = records[index]
        why = record.get("finding") or record.get("error") or "failed"
        parts.append(
            f'<g class="drop-mark" data-index="{index}"><title>drop at {esc(record.get("at"))}: '
            f'{esc(why)}</title><line class="drop" x1="{_c(x)}" y1="18" x2="{_c(x)}" '
            f'y2="{_c(axis.top + axis.height)}"/><text x="{_c(x + 2)}" y="{_c(axis.top + 10)}" '
            'class="mut">drop</text></g>'
        )
    for index in reconnect_indexes(records):
        t = times[index]
        if t is None:
            continue
        x = axis.x(t)
        parts.append(
            f'<g class="reconnect-mark" data-index="{index}"><title>feed reconnected by '
            f'{esc(records[index].get("at"))}</title><line class="reconnect" x1="{_c(x)}" '
            f'y1="18" x2="{_c(x)}" y2="{_c(axis.top + axis.height)}"/>'
            f'<text x="{_c(x + 2)}" y="{_c(axis.top + 22)}">↻</text></g>'
        )
    label = f"latency of {timeline.exchange} {timeline.target} over time"
    return (
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {CHART_H}" width="{WIDTH}" role="img" '
        f'aria-label="{esc(label)}">' + "".join(parts) + "</svg>"
    )


def _series_chart(
    name: str,
    title: str,
    points: Sequence[Point],
    t0: float,
    t1: float,
    *,
    signed: bool,
) -> str:
    """A small chart of ``(t, value, low, high)`` points: a line and, where known, a band."""
    values = [v for _, v, *_ in points] + [
        x for *_, lo, hi in points for x in (lo, hi) if x is not None
    ]
    vmax = max(values, default=1.0)
    vmin = min(values, default=0.0)
    if signed:
        bound = _nice(max(abs(vmin), abs(vmax)) * 1.1 or 1.0)
        vmin, vmax = -bound, bound
    else:
        vmin, vmax = 0.0, _nice(vmax * 1.1 or 1.0)
    axis = _Axis(t0, t1, 8, SMALL_H - 8 - 22, vmin, vmax)
    labels = [(vmin, fmt_ms(vmin)), (vmax, fmt_ms(vmax))]
    if signed:
        labels.append((0.0, "0"))
    parts = [_frame(axis, labels, t0, t1)]
    band = [
        (axis.x(t), axis.y(lo), axis.y(hi))
        for t, _, lo, hi in points
        if lo is not None and hi is not None
    ]
    if band:
        parts.append(f'<path class="band" d="{_band_path(band)}"/>')
    if points:
        line = "L".join(f"{_c(axis.x(t))} {_c(axis.y(v))}" for t, v, *_ in points)
        parts.append(f'<path class="p50" data-series="{esc(name)}" d="M{line}"/>')
        last_t, last_v, *_ = points[-1]
        parts.append(
            f'<text x="{_c(axis.x(last_t) - 2)}" y="{_c(axis.y(last_v) - 4)}" text-anchor="end">'
            f"{esc(fmt_ms(last_v))}</text>"
        )
    return (
        f"<h3>{esc(title)}</h3>"
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {SMALL_H}" width="{WIDTH}" role="img" '
        f'aria-label="{esc(title)}">' + "".join(parts) + "</svg>"
    )


def _nice(value: float) -> float:
    """The next 1, 2 or 5 x 10^n at or above ``value``."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * 10**exponent >= value:
            return float(step * 10**exponent)
    return float(10 ** (exponent + 1))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


#: ``(time, value, low, high)`` of the small charts (low/high: the band, when known).
#: ``(time, value, low, high)`` of the small charts (low/high: the band, when known).
Point = tuple[float, float, float | None, float | None]


def clock_points(records: Sequence[Mapping[str, Any]]) -> list[Point]:
    """The clock offsets recorded (``clock.offset_ms`` ± ``error_ms``), in order."""
    points: list[Point] = []
    for record in records:
        t = epoch_seconds(record.get("at"))
        clock = record.get("clock")
        if t is None or not isinstance(clock, Mapping):
            continue
        offset = _number(clock.get("offset_ms"))
        if offset is None:
            continue
        error = _number(clock.get("error_ms"))
        low, high = (offset - error, offset + error) if error is not None else (None, None)
        points.append((t, offset, low, high))
    return points


def feed_lag_points(records: Sequence[Mapping[str, Any]]) -> list[Point]:
    """The feed lags recorded (``feed.lag_ms``: p50 line, p50-p95 band), in order."""
    points: list[Point] = []
    for record in records:
        t = epoch_seconds(record.get("at"))
        feed = record.get("feed")
        lag = feed.get("lag_ms") if isinstance(feed, Mapping) else None
        if t is None or not isinstance(lag, Mapping):
            continue
        p50 = _number(lag.get("p50"))
        if p50 is None:
            continue
        points.append((t, p50, p50, _number(lag.get("p95"))))
    return points


def summary_row(timeline: Timeline) -> str:
    summary = summarize(timeline)
    loss = summary.loss_pct
    cells = [
        f'<a href="#tl-{esc(timeline.exchange)}-{esc(timeline.target)}">'
        f"{esc(timeline.exchange)}</a>",
        esc(timeline.target),
        str(summary.cycles),
        f"{loss:.1f} %" if loss is not None else "-",
        fmt_ms(summary.p50_ms),
        fmt_ms(summary.p95_ms),
        fmt_ms(summary.max_ms),
        str(summary.drops),
        str(summary.reconnects),
    ]
    return (
        f"<tr><td>{cells[0]}</td><td>{cells[1]}</td>"
        + "".join(f"<td class=n>{c}</td>" for c in cells[2:])
        + "</tr>"
    )


def render_timeline_html(
    timelines: Sequence[Timeline],
    *,
    source: str,
    host: str | None = None,
    generated_at: str | None = None,
) -> str:
    """The whole page: a summary table, then one section per target."""
    moments = [
        t for tl in timelines for r in tl.records if (t := epoch_seconds(r.get("at"))) is not None
    ]
    t0, t1 = (min(moments), max(moments)) if moments else (0.0, 1.0)
    if t1 <= t0:
        t1 = t0 + 1.0
    sections = []
    for timeline in timelines:
        records = timeline.records
        extra = ""
        clock = clock_points(records)
        if clock:
            extra += _series_chart(
                "clock",
                "Clock offset (exchange minus local; band: ± error)",
                clock,
                t0,
                t1,
                signed=True,
            )
        lag = feed_lag_points(records)
        if lag:
            extra += _series_chart(
                "feed-lag", "Feed lag (p50 line, p50-p95 band)", lag, t0, t1, signed=False
            )
        sections.append(
            f'<section class="target" id="tl-{esc(timeline.exchange)}-{esc(timeline.target)}" '
            f'data-exchange="{esc(timeline.exchange)}" data-target="{esc(timeline.target)}">'
            f"<h2>{esc(timeline.exchange)} {esc(timeline.target)}</h2>"
            + latency_chart(timeline, t0, t1)
            + extra
            + "</section>"
        )
    meta = [f"from {esc(source)}", f"{_iso(t0)} to {_iso(t1)} ({_duration(t1 - t0)})"]
    if generated_at:
        meta.append(f"written {esc(generated_at)}")
    if host:
        meta.append(f"on {esc(host)}")
    body = (
        "<header><h1>mpnet: latency over time</h1>"
        f'<p class="meta">{" · ".join(meta)}</p></header>'
        "<table><tr><th>exchange</th><th>target</th><th class=n>cycles</th><th class=n>loss</th>"
        "<th class=n>p50</th><th class=n>p95</th><th class=n>max</th><th class=n>drops</th>"
        "<th class=n>reconnects</th></tr>"
        + "".join(summary_row(tl) for tl in timelines)
        + "</table>"
        + '<p class="mut">Latency: REST the whole request, WebSocket the ping on its long-lived '
        "feed. Shaded: p50 to p95 of each bucket of time, line: p50, dots: single cycles; "
        "✗ along the top: failed cycles; dashed line “drop”: ok → fail; solid line “↻”: the "
        "feed reconnected. Hover any mark for its figures.</p>" + "".join(sections)
    )
    return page(f"mpnet latency over time — {source}", body)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
