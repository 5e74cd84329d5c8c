"""mpnet watch bookkeeping and views (pure: attempts in, rows and text out)."""

from __future__ import annotations

import io

import pytest
from report_builders import failed_attempt, ok_attempt
from rich.console import Console

from mpnet.core.result import Attempt, ErrorInfo
from mpnet.core.watch import FeedSample, TargetWatch, WatchState
from mpnet.render.watch import watch_line, watch_table


def ok(ms: float) -> Attempt:
    return ok_attempt({"tcp": ms / 2, "http": ms / 2})


def fail(phase: str = "tcp", kind: str = "refused") -> Attempt:
    return failed_attempt({"dns": 1.0}, phase=phase, kind=kind, message=kind, status=None)


@pytest.mark.parametrize(
    ("sequence", "drops", "consecutive"),
    [
        ("", 0, 0),
        ("ok", 0, 0),
        ("F", 0, 1),  # failing from the first attempt is not a drop
        ("F F", 0, 2),
        ("ok F", 1, 1),
        ("ok F F ok", 1, 0),
        ("ok F ok F F", 2, 2),
        ("F ok F", 1, 1),
    ],
)
def test_drops_and_consecutive_failures(sequence: str, drops: int, consecutive: int) -> None:
    watch = TargetWatch("okx", "rest")
    for token in sequence.split():
        watch.record(ok(10) if token == "ok" else fail())
    row = watch.row()
    assert (row.drops, row.consecutive_failures) == (drops, consecutive)
    assert row.attempts == len(sequence.split())


def test_rolling_window_keeps_the_last_attempts_only() -> None:
    watch = TargetWatch("okx", "rest", window=4)
    for attempt in (fail(), fail(), ok(10), ok(20), ok(30), ok(40)):
        watch.record(attempt)
    row = watch.row()
    assert (row.window, row.attempts) == (4, 6)
    assert row.loss_pct == 0  # the two failures have left the window
    assert (row.p50_ms, row.p95_ms) == (20, 40)


def test_loss_and_percentiles_over_successes() -> None:
    watch = TargetWatch("binance", "ws")
    for attempt in (ok(10), fail(), ok(30), fail()):
        watch.record(attempt)
    row = watch.row()
    assert row.loss_pct == 50
    assert (row.p50_ms, row.p95_ms) == (10, 30)
    assert row.last_ok is False and row.last_ms is None


def test_last_error_survives_a_recovery_and_names_the_finding() -> None:
    watch = TargetWatch("binance", "rest")
    watch.record(fail("http", "http_status"), finding="GEO_BLOCKED")
    watch.record(ok(12))
    row = watch.row()
    assert row.last_ok is True and row.last_ms == 12
    assert (row.last_error, row.last_finding) == ("http http_status", "GEO_BLOCKED")


def test_state_records_cycles_in_target_order() -> None:
    state = WatchState([("okx", "rest"), ("okx", "ws")])
    state.record_cycle([ok(5), fail()])
    assert state.last_cycle_ok is False
    state.record_cycle([ok(5), ok(7)])
    assert state.cycles == 2 and state.last_cycle_ok is True
    assert [row.drops for row in state.rows()] == [0, 0]
    with pytest.raises(ValueError):
        state.record_cycle([ok(5)])


def render(table: object) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


def test_table_shows_every_column_value() -> None:
    state = WatchState([("okx", "rest"), ("binance", "ws")])
    state.record_cycle([ok(10), fail("ws_upgrade", "http_status")], [None, "GEO_BLOCKED"])
    text = render(watch_table(state.rows(), cycles=state.cycles, interval=2, final=True))
    assert "summary after 1 cycle(s)" in text
    assert "ws_upgrade http_status (GEO_BLOCKED)" in text
    assert "tcp 5.0 http 5.0" in text
    assert "FAIL" in text and "100" in text  # loss % of the failing target


def test_plain_line_for_pipes() -> None:
    state = WatchState([("okx", "rest")])
    state.record_cycle([fail()])
    line = watch_line(state.rows()[0], cycle=1)
    assert line.startswith("cycle 1 okx rest FAIL tcp refused")


# -- long-lived WebSocket feeds -------------------------------------------------------------


def up(ping: float | None, *, reconnects: int = 0, gaps: int = 0, **extra: object) -> FeedSample:
    return FeedSample(
        connected=True, reconnects=reconnects, gaps=gaps, ping_ms=ping, messages=5, **extra
    )


CLOSED = ErrorInfo(phase="first_message", kind="closed", message="1001 going away")


def feed_ok(ping: float) -> Attempt:
    return ok_attempt({"tcp": 1.0, "ws_upgrade": 2.0, "ping_rtt": ping})


def feed_down() -> Attempt:
    return Attempt(ok=False, phases={"tcp": 1.0}, error=CLOSED)


def test_a_feeds_latency_is_its_ping_and_loss_its_down_cycles() -> None:
    watch = TargetWatch("okx", "ws")
    watch.record(feed_ok(4.0), feed=up(4.0))
    watch.record(feed_down(), feed=FeedSample(connected=False, gaps=1, last_error=CLOSED))
    watch.record(feed_ok(8.0), feed=up(8.0, reconnects=1, gaps=1, last_error=CLOSED))
    row = watch.row()
    # Not the connection phases (tcp + upgrade = 3 ms): the ping.
    assert (row.last_ms, row.p50_ms, row.p95_ms) == (8.0, 4.0, 8.0)
    # The interval in which the feed came back (reconnected) is not ok either: flapping.
    assert row.status == "flapping" and (row.flapping, row.dropped, row.reconnected) == (1, 0, 1)
    assert row.loss_pct == pytest.approx(200 / 3)
    assert row.drops == 1 and row.consecutive_failures == 0
    assert row.feed is not None and (row.feed.reconnects, row.feed.gaps) == (1, 1)


def test_a_feed_connected_without_a_ping_is_not_loss() -> None:
    watch = TargetWatch("htx", "ws")
    watch.record(ok_attempt({"tcp": 1.0}), feed=up(None))
    row = watch.row()
    assert (row.loss_pct, row.p50_ms, row.last_ms) == (0, None, None)


def test_a_drop_healed_within_one_cycle_still_shows_as_the_last_error() -> None:
    watch = TargetWatch("okx", "ws")
    watch.record(feed_ok(4.0), feed=up(4.0))
    watch.record(feed_ok(4.0), feed=up(4.0, reconnects=1, gaps=1, last_error=CLOSED))
    row = watch.row()
    assert row.last_error == "first_message closed"
    # Up again and its ping answered, yet it dropped: flapping, a bad cycle, not ok.
    assert (row.status, row.flapping) == ("flapping", 1)
    assert row.loss_pct == 50 and row.drops == 1
    assert row.p50_ms == 4.0 and row.last_ms == 4.0


def test_a_feeds_diagnosis_stays_until_a_new_error() -> None:
    watch = TargetWatch("binance", "ws")
    refused = ErrorInfo(phase="ws_upgrade", kind="http_status", message="451", status=451)
    down = FeedSample(connected=False, last_error=refused)
    watch.record(Attempt(ok=False, error=refused), finding="GEO_BLOCKED", feed=down)
    watch.record(feed_ok(3.0), feed=up(3.0, last_error=refused))
    assert (watch.row().last_error, watch.row().last_finding) == (
        "ws_upgrade http_status",
        "GEO_BLOCKED",
    )


def test_table_and_lines_show_feed_columns_and_dashes_for_rest() -> None:
    state = WatchState([("okx", "rest"), ("okx", "ws"), ("deribit", "ws")])
    state.record_cycle(
        [ok(10), feed_ok(2.5), feed_down()],
        [None, None, None],
        [
            None,
            up(2.5, reconnects=3, gaps=4, longest_gap_ms=812.4, last_error=CLOSED),
            FeedSample(connected=False, reconnects=7, gaps=8, last_error=CLOSED),
        ],
    )
    text = render(watch_table(state.rows(), cycles=state.cycles, interval=1, final=True))
    assert "reconn" in text and "gaps" in text and "msgs" in text
    rest, ws, down = (
        line for line in text.splitlines() if line.lstrip().startswith(("okx", "der"))
    )
    # The last two columns are the clock offset and the feed lag: none measured here.
    assert rest.split()[-5:] == ["-", "-", "-", "-", "-"]
    assert ws.split()[-6:] == ["3", "4", "(812)", "5", "-", "-"]
    # 4 disconnects and 3 reconnects during the first interval: flapping, with its count.
    assert "flapping 4 2.5" in ws and "DOWN" in down
    lines = [watch_line(row, cycle=1) for row in state.rows()]
    assert "reconnects" not in lines[0]
    assert lines[1] == (
        "cycle 1 okx ws flapping 4 ping 2.5 ms (4 drops, 3 reconnects this interval) "
        "p50 2.5 p95 2.5 loss 100% drops 0 reconnects 3 gaps 4 (812) msgs 5"
    )
    assert lines[2].startswith("cycle 1 deribit ws DOWN first_message closed ")
    assert lines[2].endswith(" reconnects 7 gaps 8 msgs 0")


# -- flapping: a feed that dropped or reconnected during an interval is not ok ----------------


def sample(token: str, previous: FeedSample | None) -> tuple[Attempt, FeedSample]:
    """``up`` (steady), ``drop`` (dropped and reconnected once since the last cycle, up again),
    ``drop2`` (twice), ``down`` (dropped, not back yet)."""
    gaps = previous.gaps if previous is not None else 0
    reconnects = previous.reconnects if previous is not None else 0
    if token == "down":
        return feed_down(), FeedSample(connected=False, reconnects=reconnects, gaps=gaps + 1)
    times = {"up": 0, "drop": 1, "drop2": 2}[token]
    back = previous is not None and not previous.connected  # reconnected after a down cycle
    return feed_ok(3.0), up(3.0, reconnects=reconnects + times + back, gaps=gaps + times)


@pytest.mark.parametrize(
    ("sequence", "statuses", "loss", "drops", "troubled"),
    [
        ("up up up", "ok ok ok", 0, 0, False),
        ("up drop up", "ok flapping ok", 100 / 3, 1, True),
        ("up drop2 drop", "ok flapping flapping", 200 / 3, 1, True),
        ("up down up", "ok DOWN flapping", 200 / 3, 1, True),
        ("drop up", "flapping ok", 50, 0, True),
    ],
)
def test_a_feed_that_dropped_in_an_interval_is_flapping_not_ok(
    sequence: str, statuses: str, loss: float, drops: int, troubled: bool
) -> None:
    state = WatchState([("okx", "ws")])
    seen = []
    previous: FeedSample | None = None
    for token in sequence.split():
        attempt, feed = sample(token, previous)
        state.record_cycle([attempt], [None], [feed])
        previous = feed
        seen.append(state.rows()[0].status)
    assert " ".join(seen) == statuses
    row = state.rows()[0]
    assert row.loss_pct == pytest.approx(loss)
    assert row.drops == drops
    assert state.troubled is troubled
    assert state.last_cycle_ok is (seen[-1] == "ok")


def test_flapping_shows_its_count_in_words_and_yellow() -> None:
    state = WatchState([("okx", "ws")])
    state.record_cycle([feed_ok(3.0)], [None], [up(3.0, reconnects=2, gaps=3)])
    [row] = state.rows()
    assert (row.flapping, row.dropped, row.reconnected) == (3, 3, 2)
    assert watch_line(row, cycle=1).startswith(
        "cycle 1 okx ws flapping 3 ping 3.0 ms (3 drops, 2 reconnects this interval) "
    )
    console = Console(width=200, file=io.StringIO(), force_terminal=True, color_system="standard")
    console.print(watch_table(state.rows(), cycles=1, interval=1))
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[33mflapping 3" in output  # yellow, and the word says it without the colour
    assert "flapping N: the feed dropped or reconnected N times" in output


def test_a_failure_in_any_cycle_makes_the_run_troubled_even_after_recovery() -> None:
    state = WatchState([("okx", "rest")])
    state.record_cycle([ok(5)])
    assert not state.troubled
    state.record_cycle([fail()])
    state.record_cycle([ok(5)])
    assert state.last_cycle_ok and state.troubled


def test_a_skipped_cycle_is_neither_loss_nor_success() -> None:
    from mpnet.core.ratelimit import Skip

    skip = Skip("okx", "http_429", "HTTP 429 with Retry-After: 7", 6.5)
    state = WatchState([("okx", "rest")])
    state.record_cycle([ok(5)])
    state.record_cycle([Attempt(ok=False, skipped=skip)])
    [row] = state.rows()
    assert (row.status, row.skips, row.attempts, row.window) == ("SKIP", 1, 2, 1)
    assert row.loss_pct == 0 and row.drops == 0 and row.consecutive_failures == 0
    assert not state.troubled and state.last_cycle_ok
    assert watch_line(row, cycle=2).startswith(
        "cycle 2 okx rest SKIP not sent: okx asked to wait (HTTP 429 with Retry-After: 7); "
        "6.5 s left p50 "
    )
    text = render(watch_table(state.rows(), cycles=2, interval=1))
    assert "SKIP" in text and "rate-limit wait (http_429), 6 s left" in text


# -- clock offset and feed lag -----------------------------------------------------------------


def timed(ms: float, *, offset_s: float, trip_s: float) -> Attempt:
    """A REST cycle whose answer said the server's clock read ``offset_s`` ahead of ours."""
    from dataclasses import replace

    from mpnet.core.clock import SOURCE_REST, ClockSample

    sent = 1_796_289_266.0
    clock = ClockSample(
        SOURCE_REST, "serverTime", sent, sent + trip_s, sent + trip_s / 2 + offset_s, 0.001
    )
    return replace(ok(ms), clock=clock)


def test_rest_rows_show_the_best_offset_of_the_window() -> None:
    state = WatchState([("okx", "rest")])
    state.record_cycle([timed(10, offset_s=2.0, trip_s=0.2)])
    state.record_cycle([timed(10, offset_s=2.1, trip_s=0.02)])  # the shorter round trip wins
    state.record_cycle([timed(10, offset_s=2.5, trip_s=0.1)])
    [row] = state.rows()
    assert row.clock is not None and row.clock.offset_ms is not None
    assert row.clock.offset_ms == pytest.approx(2100.0)
    assert row.clock.error_ms == pytest.approx(11.0)
    assert "offset +2100±11.0 ms" in watch_line(row, cycle=3)


def test_feed_lag_rolls_and_is_corrected_by_the_same_exchanges_offset() -> None:
    state = WatchState([("okx", "rest"), ("okx", "ws"), ("bybit", "ws")])
    lags = tuple(float(x) for x in range(-1900, -1800, 10))  # uncorrected: ours is 2 s behind
    state.record_cycle(
        [timed(10, offset_s=2.0, trip_s=0.02), feed_ok(1.0), feed_ok(1.0)],
        None,
        [None, up(1.0, lags_ms=lags), up(1.0, lags_ms=(120.0, 130.0))],
    )
    rest, ws, other = state.rows()
    assert ws.lag_corrected and ws.lag_p50_ms == pytest.approx(140.0)  # -1860 + 2000
    assert ws.lag_p95_ms == pytest.approx(190.0)
    # No offset measured for bybit in this watch: its lag is shown uncorrected, and says so.
    assert not other.lag_corrected and other.lag_p50_ms == pytest.approx(120.0)
    assert rest.lag_p50_ms is None
    assert "lag p50 140.0 p95 190.0 ms" in watch_line(ws, cycle=1)
    assert "lag p50 120.0 p95 130.0 ms uncorrected" in watch_line(other, cycle=1)
    text = render(watch_table(state.rows(), cycles=1, interval=1))
    assert "140.0/190.0" in text and "120.0/130.0u" in text and "+2000±11.0" in text
    # The next cycle's lags join the rolling window.
    state.record_cycle(
        [timed(10, offset_s=2.0, trip_s=0.02), feed_ok(1.0), feed_ok(1.0)],
        None,
        [None, up(1.0, lags_ms=(-1000.0,) * 30), up(1.0)],
    )
    assert state.rows()[1].lag_p50_ms == pytest.approx(1000.0)
