"""Clock offset and feed lag (pure): reading stamps, the NTP-style offset, min round trip,
Date intersection, feed lag with and without correction, and every bad stamp."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpnet.core.clock import (
    SOURCE_DATE,
    SOURCE_PONG,
    SOURCE_REST,
    ClockSample,
    FeedRecorder,
    TimeField,
    date_estimate,
    date_sample,
    estimate_clock,
    sample_clock,
    stamp_seconds,
    summarize_feed,
)

#: 2026-12-03T09:14:26.005819Z
T = 1_796_289_266.005819


# -- reading stamps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "seconds", "resolution"),
    [
        (1_796_289_266, "s", 1_796_289_266.0, 1.0),
        ("1796289266", "s", 1_796_289_266.0, 1.0),
        (1_796_289_266.5, "s", 1_796_289_266.5, 0.1),
        ("1796289266.005", "s", 1_796_289_266.005, 0.001),
        (1_796_289_266_005, "ms", 1_796_289_266.005, 0.001),
        ("1796289266005", "ms", 1_796_289_266.005, 0.001),  # OKX, Bitget: digits in a string
        (1_796_289_266_005_819, "us", T, 1e-6),  # Deribit usOut
        ("1796289266005819000", "ns", T, 1e-9),  # Bybit timeNano
        (" 1796289266005 ", "ms", 1_796_289_266.005, 0.001),
        ("2026-12-03T09:14:26Z", "iso8601", 1_796_289_266.0, 1.0),  # Kraken SystemStatus
        ("2026-12-03T09:14:26.005Z", "iso8601", 1_796_289_266.005, 0.001),  # BitMEX
        ("2026-12-03T09:14:26.005819Z", "iso8601", T, 1e-6),  # Kraken WS
        ("2026-12-03T09:14:26.005819123Z", "iso8601", 1_796_289_266.005819123, 1e-9),  # Coinbase
        ("2026-12-03T10:14:26.005819+01:00", "iso8601", T, 1e-6),
        ("2026-12-03T04:14:26.005819-0500", "iso8601", T, 1e-6),
        ("2026-12-03 09:14:26.005819z", "iso8601", T, 1e-6),
    ],
)
def test_stamps_in_every_unit(value: Any, unit: str, seconds: float, resolution: float) -> None:
    got = stamp_seconds(value, unit, "x")
    assert isinstance(got, tuple), got
    assert got[0] == pytest.approx(seconds, abs=1e-6)
    assert got[1] == pytest.approx(resolution)


@pytest.mark.parametrize(
    ("value", "unit", "reason"),
    [
        (None, "ms", "x is null, not a time stamp"),
        (True, "ms", "x is a boolean (true), not a time stamp"),
        ({"ts": 1}, "ms", "x is a mapping, not a time stamp"),
        ([1_796_289_266_005], "ms", "x is a list, not a time stamp"),
        ("abc", "ms", "x is 'abc', not a number of ms"),
        ("", "ms", "x is '', not a number of ms"),
        ("1e12", "ms", "not a number of ms"),
        ("9" * 5000, "ns", "not a number of ns"),  # never int() of thousands of digits
        (math.nan, "ms", "x is nan, not a time stamp"),
        (math.inf, "s", "x is inf, not a time stamp"),
        (0, "ms", "x = 0 ms is before 2001: not a plausible time (wrong unit?)"),
        (1_796_289_266, "ms", "is before 2001"),  # seconds read as ms
        (1_796_289_266_005, "s", "is after 2100"),  # ms read as seconds
        (-1_796_289_266_005, "ms", "is before 2001"),
        pytest.param(10**5000, "ns", "x = a huge integer ns is after 2100", id="huge-int"),
        (1_796_289_266_005, "iso8601", "x is a int, expected ISO 8601 text"),
        ("2026-12-03T09:14:26", "iso8601", "not an ISO 8601 time with a time zone"),
        ("2026-12-03", "iso8601", "not an ISO 8601 time with a time zone"),
        ("2026-02-31T00:00:00Z", "iso8601", "not a valid date and time"),
        ("2026-12-03T09:14:60Z", "iso8601", "not a valid date and time"),
        ("1999-12-31T23:59:59Z", "iso8601", "is before 2001"),
        ("2100-01-01T00:00:00Z", "iso8601", "is after 2100"),
        ("2026-12-03T09:14:26." + "1" * 5000 + "Z", "iso8601", None),  # long but valid
    ],
)
def test_bad_stamps_say_why(value: Any, unit: str, reason: str | None) -> None:
    got = stamp_seconds(value, unit, "x")
    if reason is None:
        assert isinstance(got, tuple)
        return
    assert isinstance(got, str), got
    assert reason in got


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=8,
    ),
    st.sampled_from(["s", "ms", "us", "ns", "iso8601"]),
)
def test_reading_never_raises_and_never_invents_a_time(value: Any, unit: str) -> None:
    got = TimeField("a.0.b", unit).read({"a": [{"b": value}]})
    if isinstance(got, tuple):
        assert 978_307_200 <= got[0] < 4_102_444_800 and got[1] > 0
    else:
        assert isinstance(got, str) and got


@pytest.mark.parametrize(
    ("document", "path", "unit", "expect"),
    [
        ({"data": [{"ts": "1796289266005"}]}, "data.0.ts", "ms", 1_796_289_266.005),
        ({"result": {"timeNano": "1796289266005819000"}}, "result.timeNano", "ns", T),
        ({"data": {"0": {"ts": 1_796_289_266_005}}}, "data.0.ts", "ms", 1_796_289_266.005),
        ([{"ts": 1_796_289_266_005}], "0.ts", "ms", 1_796_289_266.005),
        ({"data": []}, "data.0.ts", "ms", "no value at data.0.ts"),
        ({"data": [{}]}, "data.0.ts", "ms", "no value at data.0.ts"),
        ({"data": "text"}, "data.0.ts", "ms", "no value at data.0.ts"),
        ({"data": [{"ts": None}]}, "data.0.ts", "ms", "no value at data.0.ts"),
        ("pong", "data.0.ts", "ms", "no value at data.0.ts"),
    ],
)
def test_paths_with_list_indices(document: Any, path: str, unit: str, expect: Any) -> None:
    got = TimeField(path, unit).read(document)
    if isinstance(expect, str):
        assert got == expect
    else:
        assert isinstance(got, tuple)
        assert got[0] == pytest.approx(expect, abs=1e-6)


# -- the offset -----------------------------------------------------------------------------------


def sample(
    server: float, sent: float, received: float, *, resolution: float = 0.001
) -> ClockSample:
    return ClockSample(SOURCE_REST, "t", sent, received, server, resolution, "x")


def test_offset_is_the_stamp_against_the_round_trips_midpoint() -> None:
    # Sent at 100.000, answered at 100.040 (40 ms round trip); the server said 102.525.
    one = sample(102.525, 100.0, 100.040)
    assert one.round_trip_ms == pytest.approx(40.0)
    assert one.offset_ms == pytest.approx(2505.0)  # 102.525 - 100.020
    assert one.error_ms == pytest.approx(21.0)  # 20 ms + 1 ms resolution


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns", "iso8601"])
def test_a_true_offset_lies_within_the_error_in_every_unit(unit: str) -> None:
    skew = 3.7  # the server runs 3.7 s ahead; truncated stamps
    sent, received = T, T + 0.018
    # Wherever in the round trip it stamped (a millisecond from the ends: the floats of Unix
    # times in seconds carry about 0.2 µs of rounding, more than a ns stamp's resolution).
    for moment in (sent + 0.001, sent + 0.009, received - 0.001):
        server = moment + skew
        if unit == "iso8601":
            whole = int(server)
            from datetime import UTC, datetime

            raw: Any = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S") + (
                f".{int((server - whole) * 1e6):06d}Z"
            )
        else:
            divisor = {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}[unit]
            raw = int(server * divisor)
        got = sample_clock(
            {"t": raw}, TimeField("t", unit), source=SOURCE_REST, sent_at=sent, received_at=received
        )
        assert got.usable, got.skipped
        assert got.offset_ms is not None and got.error_ms is not None
        assert abs(got.offset_ms - skew * 1000) <= got.error_ms


def test_the_sample_with_the_smallest_round_trip_is_kept() -> None:
    slow = sample(1002.5, 1000.0, 1000.300)  # 300 ms
    fast = sample(1003.0, 1000.5, 1000.510)  # 10 ms
    middle = sample(1004.0, 1001.0, 1001.100)  # 100 ms
    skipped = ClockSample(SOURCE_REST, "t", 1002.0, 1002.001, skipped="t is 'abc'")
    estimate = estimate_clock([slow, fast, middle, skipped])
    assert estimate is not None and estimate.known
    assert estimate.offset_ms == pytest.approx(fast.offset_ms)
    assert estimate.error_ms == pytest.approx(6.0)
    assert estimate.round_trip_ms == pytest.approx(10.0)
    assert estimate.source == SOURCE_REST and estimate.path == "t"
    # Every sample stays in the estimate, the skipped one with its reason.
    assert [s["skipped"] for s in estimate.to_dict()["samples"]] == [None, None, None, "t is 'abc'"]
    assert estimate.usable_samples == 3


def test_no_usable_sample_gives_no_offset_but_keeps_the_reasons() -> None:
    bad = sample_clock(
        {"t": "soon"}, TimeField("t", "ms"), source=SOURCE_REST, sent_at=1.0, received_at=2.0
    )
    estimate = estimate_clock([bad])
    assert estimate is not None and not estimate.known
    assert estimate.offset_ms is None and estimate.error_ms is None
    assert estimate.to_dict()["samples"][0]["skipped"] == "t is 'soon', not a number of ms"
    assert estimate.to_dict()["samples"][0]["stamp"] == "soon"
    assert estimate_clock([]) is None


def test_a_clock_stepping_back_during_the_request_gives_no_offset() -> None:
    got = sample_clock(
        {"t": 1_796_289_266_005},
        TimeField("t", "ms"),
        source=SOURCE_PONG,
        sent_at=T,
        received_at=T - 0.5,
    )
    assert not got.usable and got.offset_ms is None
    assert got.skipped is not None and "stepped back" in got.skipped


def test_date_samples_are_coarse_and_intersected() -> None:
    date = "Thu, 03 Dec 2026 09:14:26 GMT"  # 1796289266
    first = date_sample(date, sent_at=1_796_289_262.0, received_at=1_796_289_262.2)
    second = date_sample(date, sent_at=1_796_289_262.5, received_at=1_796_289_262.6)
    assert first is not None and second is not None
    assert first.error_ms == pytest.approx(1100.0)  # half of 200 ms, plus a whole second
    estimate = date_estimate([first, second])
    assert estimate is not None and estimate.source == SOURCE_DATE and estimate.coarse
    # first: 3900 ±1100 (2800..5000); second: 3450 ±1050 (2400..4500): 2800..4500.
    assert estimate.offset_ms == pytest.approx(3650.0)
    assert estimate.error_ms == pytest.approx(850.0)


def test_date_samples_that_disagree_leave_the_last_one() -> None:
    date = "Thu, 03 Dec 2026 09:14:26 GMT"
    near = date_sample(date, sent_at=1_796_289_266.0, received_at=1_796_289_266.0)
    far = date_sample(date, sent_at=1_796_289_200.0, received_at=1_796_289_200.0)
    assert near is not None and far is not None
    estimate = date_estimate([near, far])
    assert estimate is not None and estimate.offset_ms == pytest.approx(far.offset_ms)


@pytest.mark.parametrize(
    ("date", "reason"),
    [
        ("not a date", "is not an HTTP date"),
        ("Mon, 01 Jan 1990 00:00:00 GMT", "is not a plausible time"),
    ],
)
def test_bad_date_headers_are_skipped(date: str, reason: str) -> None:
    got = date_sample(date, sent_at=1.0, received_at=2.0)
    assert got is not None and not got.usable
    assert got.skipped is not None and reason in got.skipped


# -- feed lag -------------------------------------------------------------------------------------


def feed_of(lags_s: list[float], *, kind: str = "event") -> FeedRecorder:
    """A recorder that saw messages stamped at T, received ``lags_s`` later by this clock."""
    recorder = FeedRecorder(TimeField("E", "ms", kind))
    for lag in lags_s:
        recorder.observe({"E": int(T * 1000)}, T + lag)
    return recorder


def test_lag_uncorrected_without_an_offset_and_says_so() -> None:
    record = feed_of([0.120, 0.130, 0.150]).record(duration_s=2.0)
    summary = summarize_feed([record], None)
    assert summary is not None and summary.lag_ms is not None
    assert not summary.corrected and summary.error_ms is None
    # E is T truncated to the ms (0.819 ms earlier): the median lag is 130.819 ms.
    assert summary.lag_ms.p50 == pytest.approx(130.819, abs=0.01)
    assert summary.note is not None and "uncorrected" in summary.note
    assert summary.rate_per_s == pytest.approx(1.5)
    assert summary.to_dict()["corrected"] is False


def test_lag_corrected_by_the_exchanges_offset() -> None:
    # This machine is 2 s behind the exchange: an event stamped at T (exchange clock) arrived
    # when this clock read T + lag, i.e. T + lag + 2 s on the exchange's.
    record = feed_of([-1.9, -1.8, -1.7]).record(duration_s=1.0)
    offset = estimate_clock([sample(1002.0, 999.99, 1000.01)])
    assert offset is not None and offset.offset_ms == pytest.approx(2000.0)
    summary = summarize_feed([record], offset)
    assert summary is not None and summary.corrected and summary.lag_ms is not None
    uncorrected = summarize_feed([record], None)
    assert uncorrected is not None and uncorrected.lag_ms is not None
    assert summary.lag_ms.p50 == pytest.approx(uncorrected.lag_ms.p50 + 2000.0)
    assert summary.lag_ms.p50 == pytest.approx(200.819, abs=0.01)
    assert summary.error_ms == pytest.approx(offset.error_ms)
    assert summary.offset_source == SOURCE_REST and summary.note is None


def test_an_unknown_offset_does_not_correct() -> None:
    record = feed_of([0.1]).record()
    unknown = estimate_clock([ClockSample(SOURCE_REST, "t", skipped="no value at t")])
    summary = summarize_feed([record], unknown)
    assert summary is not None and not summary.corrected
    assert summary.rate_per_s is None  # no window: only the first message


def test_a_trades_time_claims_no_lag() -> None:
    record = feed_of([5.0, 5.0], kind="last_trade").record(duration_s=1.0)
    summary = summarize_feed([record], None)
    assert summary is not None and summary.lag_ms is None and summary.messages == 2
    assert summary.note is not None and "last trade's time" in summary.note


def test_without_an_event_time_messages_are_counted_only() -> None:
    recorder = FeedRecorder(None)
    recorder.observe({"x": 1}, T)
    summary = summarize_feed([recorder.record(duration_s=0.5)], None)
    assert summary is not None and summary.lag_ms is None and summary.messages == 1
    assert summary.note is not None and "no event time" in summary.note


def test_unreadable_event_times_are_counted_by_reason() -> None:
    recorder = FeedRecorder(TimeField("E", "ms"))
    for message in ({"E": "soon"}, {"E": "soon"}, {}, {"E": int(T * 1000)}):
        recorder.observe(message, T + 0.1)
    summary = summarize_feed([recorder.record(duration_s=1.0)], None)
    assert summary is not None and summary.messages == 4
    assert summary.to_dict()["skipped"] == [
        {"reason": "E is 'soon', not a number of ms", "count": 2},
        {"reason": "no value at E", "count": 1},
    ]
    assert summary.lag_ms is not None  # from the one readable stamp


def test_lag_growth_over_the_window() -> None:
    steady = feed_of([0.1] * 9).record(duration_s=1.0)
    growing = feed_of([0.1, 0.1, 0.1, 0.3, 0.3, 0.3, 0.6, 0.6, 0.6]).record(duration_s=1.0)
    assert steady.growth_ms == pytest.approx(0.0)
    assert growing.growth_ms == pytest.approx(500.0)
    assert feed_of([0.1] * 5).record().growth_ms is None  # too few to tell
    summary = summarize_feed([steady, growing], None)
    assert summary is not None and summary.growth_ms == pytest.approx(500.0)
    assert summary.messages == 18 and summary.rate_per_s == pytest.approx(9.0)
