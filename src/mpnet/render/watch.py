"""The ``mpnet watch`` views (pure): the live table, the final summary and plain log lines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich import box
from rich.columns import Columns
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from mpnet.core.result import PHASE_ORDER
from mpnet.core.watch import FeedSample, WatchRow
from mpnet.render.probe_table import UNCORRECTED_MARK, offset_cell
from mpnet.render.sparkline import sparkline

#: Short column names for the phases, so a whole row fits an 120-column terminal.
PHASE_ABBREVIATIONS = {
    "bootstrap": "boot",
    "dns": "dns",
    "tcp": "tcp",
    "proxy": "proxy",
    "tls": "tls",
    "http": "http",
    "ws_upgrade": "upg",
    "first_message": "1st",
    "ping_rtt": "ping",
}


def watch_table(
    rows: Sequence[WatchRow],
    *,
    cycles: int,
    interval: float,
    final: bool = False,
    trends: Mapping[tuple[str, str], Sequence[float | None]] | None = None,
) -> Table:
    """The table ``mpnet watch`` refreshes every cycle (and prints once more at the end);
    ``trends`` (the last latencies per exchange and target) adds a sparkline column."""
    window = max((row.window for row in rows), default=0)
    title = (
        f"mpnet watch: summary after {cycles} cycle(s)"
        if final
        else f"mpnet watch: cycle {cycles}, every {interval:g} s"
    )
    caption = (
        f"Times in ms. last, p50, p95, loss over the last {window} cycle(s): REST the whole "
        "request, WebSocket the ping on its long-lived feed (loss: failed, down, no pong or "
        "flapping).\n"
        "flapping N: the feed dropped or reconnected N times in the last interval (up again, "
        "not ok); SKIP: not sent, the exchange's rate-limit wait is running.\n"
        "drops: ok -> not ok transitions; reconn: reconnects; gaps: disconnects (longest "
        "silence between data messages); msgs: data messages in the last interval.\n"
        "offset: the exchange's clock minus this machine's ± its error (d: from the Date "
        "header); lag: event stamp to arrival over the last data messages, corrected by the "
        "exchange's offset (u: uncorrected)."
    )
    if trends is not None:
        caption += "\ntrend: the last cycles' latencies, oldest first, ▁ low to █ high; ✗ failed."
    # No column rules, as mtr: fourteen columns must fit a 120-column terminal.
    table = Table(
        title=title,
        caption=caption,
        title_justify="left",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    # Only the phases and the error wrap on a narrow terminal; numbers never fold.
    table.add_column("exchange", no_wrap=True)
    table.add_column("target", no_wrap=True)
    routed = any(row.route is not None for row in rows)
    if routed:
        table.add_column("route", overflow="fold", max_width=32)
    table.add_column("last", no_wrap=True)
    table.add_column("phases")
    for name in ("p50", "p95", "loss%"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("last error")
    for name in ("fails", "drops", "reconn", "gaps", "msgs", "offset", "lag p50/p95"):
        table.add_column(name, justify="right", no_wrap=True)
    if trends is not None:
        table.add_column("trend", no_wrap=True)
    for row in rows:
        feed = row.feed
        table.add_row(
            row.exchange,
            row.target,
            *([row.route or "-"] if routed else []),
            _last(row),
            _phases_cell(row),
            _ms(row.p50_ms),
            _ms(row.p95_ms),
            f"{row.loss_pct:.0f}" if row.loss_pct is not None else "-",
            error_text(row),
            Text(str(row.consecutive_failures), style="red" if row.consecutive_failures else ""),
            str(row.drops),
            Text(str(feed.reconnects), style="yellow" if feed.reconnects else "")
            if feed is not None
            else "-",
            gaps_text(feed) if feed is not None else "-",
            _messages(feed) if feed is not None else "-",
            offset_cell(row.clock),
            watch_lag_cell(row),
            *(
                [sparkline(trends.get((row.exchange, row.target), ()))]
                if trends is not None
                else []
            ),
        )
    return table


def watch_lag_cell(row: WatchRow) -> str:
    """``2.1/3.5`` (rolling p50/p95 ms, ``u`` when uncorrected) or ``-``."""
    if row.lag_p50_ms is None or row.lag_p95_ms is None:
        return "-"
    mark = "" if row.lag_corrected else UNCORRECTED_MARK
    return f"{_ms(row.lag_p50_ms)}/{_ms(row.lag_p95_ms)}{mark}"


def watch_line(row: WatchRow, *, cycle: int) -> str:
    """One plain log line for a target after a cycle (used when stdout is not a terminal)."""
    feed = row.feed
    parts = [f"cycle {cycle}", row.exchange, row.target]
    if row.route is not None:
        parts.append(f"via {row.route}")
    parts.append(_status(row).plain)
    if row.skipped is not None:
        parts.append(row.skipped.message)
    elif row.last_ok:
        if feed is not None:
            parts.append(f"ping {_ms(row.last_ms)} ms" if row.last_ms is not None else "no ping")
        else:
            parts.append(f"{_ms(row.last_ms)} ms")
    else:
        parts.append(error_text(row))
    if row.skipped is None and (row.dropped or row.reconnected):
        parts.append(f"({flapping_text(row)} this interval)")
    parts.append(f"p50 {_ms(row.p50_ms)} p95 {_ms(row.p95_ms)} loss {row.loss_pct or 0:.0f}%")
    parts.append(f"drops {row.drops}")
    if feed is not None:
        parts.append(f"reconnects {feed.reconnects} gaps {gaps_text(feed)} msgs {feed.messages}")
    clock = row.clock
    if clock is not None and clock.known:
        parts.append(f"offset {offset_cell(clock)} ms")
    if row.lag_p50_ms is not None and row.lag_p95_ms is not None:
        how = "" if row.lag_corrected else " uncorrected"
        parts.append(f"lag p50 {_ms(row.lag_p50_ms)} p95 {_ms(row.lag_p95_ms)} ms{how}")
    return " ".join(parts)


def flapping_text(row: WatchRow) -> str:
    """``3 drops, 2 reconnects``: what a feed did during the last interval."""
    return (
        f"{row.dropped} drop{'' if row.dropped == 1 else 's'}, "
        f"{row.reconnected} reconnect{'' if row.reconnected == 1 else 's'}"
    )


def gaps_text(feed: FeedSample) -> str:
    """``3 (812)``: disconnects so far and the longest silence between data messages (ms)."""
    if feed.longest_gap_ms is None:
        return str(feed.gaps)
    return f"{feed.gaps} ({feed.longest_gap_ms:.0f})"


def phase_pairs(row: WatchRow) -> list[str]:
    """``["dns 0.1", "tcp 1.2", ...]``: the last cycle's phases in order (a feed's ping is its
    latency, shown apart)."""
    phases = {k: v for k, v in row.last_phases.items() if row.feed is None or k != "ping_rtt"}
    ordered = sorted(
        phases.items(),
        key=lambda kv: PHASE_ORDER.index(kv[0]) if kv[0] in PHASE_ORDER else len(PHASE_ORDER),
    )
    return [f"{PHASE_ABBREVIATIONS.get(k, k)} {v:.1f}" for k, v in ordered]


def phases_text(row: WatchRow) -> str:
    return " ".join(phase_pairs(row)) or "-"


def _phases_cell(row: WatchRow) -> RenderableType:
    pairs = phase_pairs(row)
    if not pairs:
        return "-"
    # On a narrow terminal the cell wraps between phases, never inside "tcp 1.2".
    return Columns([Text(pair, no_wrap=True) for pair in pairs])


def error_text(row: WatchRow) -> str:
    if row.skipped is not None:
        return f"rate-limit wait ({row.skipped.cause}), {row.skipped.remaining_s:.0f} s left"
    if row.last_error is None:
        return "-"
    if row.last_finding:
        return f"{row.last_error} ({row.last_finding})"
    return row.last_error


def _messages(feed: FeedSample) -> Text:
    # Up but silent for a whole interval: what a trader notices first.
    silent = feed.connected and feed.messages == 0
    return Text(str(feed.messages), style="yellow" if silent else "")


def _last(row: WatchRow) -> Text:
    status = _status(row)
    if row.last_ok and not row.skipped and row.last_ms is not None:
        status.append(f" {_ms(row.last_ms)}", style="")
    return status


_STATUS_STYLES = {
    "ok": "green",
    "flapping": "yellow",
    "SKIP": "yellow",
    "DOWN": "bold red",
    "FAIL": "bold red",
}


def _status(row: WatchRow) -> Text:
    """The status word; a flapping feed carries its count (``flapping 3``) so that the word,
    not only the colour, says what happened."""
    status = row.status
    text = f"flapping {row.flapping}" if status == "flapping" else status
    return Text(text, style=_STATUS_STYLES.get(status, ""))


def _ms(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"
