"""Exchange clocks and feed lag (pure): time stamps read from answers, the offset, the lag.

**Clock offset**, the way NTP measures it (RFC 5905 §8, one request instead of four stamps): the
request is written at local wall time ``t0``, the first answer byte arrives at ``t1``, and the
answer carries the server's time ``S``, stamped somewhere in between. Then

    offset = S - (t0 + t1) / 2        error = (t1 - t0) / 2 + the stamp's resolution

``offset`` is the exchange's clock minus this machine's: positive when this machine is behind.
Across attempts the sample with the smallest round trip ``t1 - t0`` is kept (NTP's clock filter:
the shortest exchange leaves the least room for asymmetry). A ``Date`` header (whole seconds) is
the coarse fallback for profiles without a time field; its samples' ranges are intersected
instead, each being a second or more wide (:func:`date_estimate`).

**Feed lag**: for each data message with an event time ``E`` (exchange clock), received at local
wall time ``L``: ``lag = L + offset - E``. Without an offset measured for the same exchange in the
same run the lag is reported uncorrected (``L - E``: it includes this machine's clock offset), and
says so. A field of ``kind: last_trade`` (KuCoin's ticker ``data.time``: the last trade, not the
push) is never read as a lag.

Stamps are read from decoded JSON by a dotted path with list indices (``data.0.ts``,
``result.timeNano``: :func:`mpnet.core.match.dig`'s syntax), in one of :data:`UNITS`. A stamp that
cannot be read (no value there, a mapping, ``"abc"``, ``NaN``, a time before 2001 or after 2100)
is a skipped sample with its reason, never an error and never a made-up offset.

Nothing here reads a clock: callers pass the wall times they measured.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from statistics import median as _median
from typing import Any

#: Units a profile's time field may be written in.
UNITS = ("s", "ms", "us", "ns", "iso8601")
#: What a WebSocket event time is: the push time (``event``) or a trade's time (``last_trade``,
#: which says nothing about how late the message is).
KINDS = ("event", "last_trade")
_DIVISORS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_UNIT_WORDS = {"s": "seconds", "ms": "ms", "us": "µs", "ns": "ns"}
#: Stamps outside these bounds (2001-01-01 and 2100-01-01 UTC) are absurd: a wrong unit, a
#: counter, a zero.
EARLIEST_S = 978_307_200.0
LATEST_S = 4_102_444_800.0
#: A stamp's shown value is cut to this many characters in reasons and JSON.
SHOWN_STAMP = 40

#: CLOCK_SKEW fires when |offset| - error exceeds this (ms).
DEFAULT_CLOCK_TOLERANCE_MS = 500.0
#: FEED_LAGGING fires when the median lag (less its uncertainty) exceeds this (ms).
DEFAULT_FEED_LAG_TOLERANCE_MS = 1000.0
#: Lags kept per attempt; a firehose beyond it is still counted, its later lags not kept.
MAX_LAGS = 20_000
#: A lag that grows by more than this (ms) over a window says something holds messages back.
LAG_GROWTH_MS = 100.0

#: Sources of a clock sample, as they appear in JSON.
SOURCE_REST = "rest.server_time"
SOURCE_PONG = "websocket.ping.server_time"
SOURCE_DATE = "date"


@dataclass(frozen=True, slots=True)
class ClockTolerances:
    """How far off the clock and how late the feed may be before mpnet warns (ms)."""

    offset_ms: float = DEFAULT_CLOCK_TOLERANCE_MS
    feed_lag_ms: float = DEFAULT_FEED_LAG_TOLERANCE_MS


# -- reading stamps -------------------------------------------------------------------------------


def _compile_path(path: str) -> tuple[tuple[str, int | None], ...]:
    return tuple((part, int(part) if part.isdigit() else None) for part in path.split("."))


@dataclass(frozen=True, slots=True)
class TimeField:
    """Where a time stamp is in a JSON answer, and how it is written.

    Attributes:
        path: dotted path with list indices (``data.0.ts``).
        unit: one of :data:`UNITS`.
        kind: ``event`` (the time the message was pushed) or ``last_trade``.
    """

    path: str
    unit: str
    kind: str = "event"
    _steps: tuple[tuple[str, int | None], ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_steps", _compile_path(self.path))

    @property
    def is_event(self) -> bool:
        return self.kind == "event"

    def read(self, document: Any) -> tuple[float, float] | str:
        """``(seconds since the epoch, resolution in seconds)``, or why there is none.

        The hot path of feed-lag measurement: the path is followed without building anything.
        """
        node = document
        for key, index in self._steps:
            if type(node) is dict:
                node = node.get(key)
            elif isinstance(node, list):
                node = node[index] if index is not None and index < len(node) else None
            elif isinstance(node, Mapping):
                node = node.get(key)
            else:
                node = None
            if node is None:
                return f"no value at {self.path}"
        return stamp_seconds(node, self.unit, self.path)


_DECIMAL = re.compile(r"[+-]?\d+(?:\.(\d+))?\Z")
_ISO = re.compile(
    r"((\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2}))(?:[.,](\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))\Z"
)
#: The last ``YYYY-MM-DD HH:MM:SS`` seen and its epoch seconds: a feed's stamps share it.
_iso_cache: tuple[str, int] = ("", 0)


def stamp_seconds(value: Any, unit: str, where: str) -> tuple[float, float] | str:
    """A stamp's value as ``(seconds since the epoch, resolution in seconds)``, or why not.

    Integers (and strings of digits, as OKX and Bybit send them) resolve to one unit; decimals
    to their last digit; ISO 8601 text to its last fractional digit (one second without one).
    """
    if isinstance(value, bool) or value is None:
        return f"{where} is {_kind(value)}, not a time stamp"
    if unit == "iso8601":
        if not isinstance(value, str):
            return f"{where} is {_kind(value)}, expected ISO 8601 text"
        return _iso_seconds(value, where)
    if unit not in _DIVISORS:
        return f"unknown unit {unit!r}"
    divisor = _DIVISORS[unit]
    resolution = 1.0
    if isinstance(value, str):
        text = value.strip()
        match = _DECIMAL.match(text) if len(text) <= SHOWN_STAMP else None
        if match is None:
            return f"{where} is {_shown(value)}, not a number of {_UNIT_WORDS[unit]}"
        digits = match.group(1)
        if digits is None:
            number: int | float = int(text)
        else:
            number = float(text)
            resolution = 10.0 ** -len(digits)
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            return f"{where} is {value!r}, not a time stamp"
        number = value
        if not value.is_integer():
            fraction = repr(value).partition(".")[2]
            resolution = 10.0 ** -len(fraction) if fraction.isdigit() else resolution
    else:
        return f"{where} is {_kind(value)}, not a time stamp"
    # Checked before dividing: an integer too large for a float would overflow.
    if not EARLIEST_S * divisor <= number < LATEST_S * divisor:
        era = "before 2001" if number < EARLIEST_S * divisor else "after 2100"
        return (
            f"{where} = {_shown(value)} {_UNIT_WORDS[unit]} is {era}: "
            "not a plausible time (wrong unit?)"
        )
    return number / divisor, resolution / divisor


def _iso_seconds(text: str, where: str) -> tuple[float, float] | str:
    global _iso_cache
    match = _ISO.match(text.strip())
    if match is None:
        return f"{where} is {_shown(text)}, not an ISO 8601 time with a time zone"
    prefix, *fields = match.groups()
    fraction, zulu, sign, tz_hours, tz_minutes = fields[6:]
    cached_prefix, cached = _iso_cache
    if prefix == cached_prefix:
        whole = cached
    else:
        year, month, day, hour, minute, second = (int(f) for f in fields[:6])
        try:
            # Validates the calendar (no 31 February, no second 60); strptime would import a
            # module on first use, while an attempt's clock runs.
            datetime(year, month, day, hour, minute, second)
        except ValueError:
            return f"{where} is {_shown(text)}, not a valid date and time"
        whole = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
        _iso_cache = (prefix, whole)
    seconds = float(whole)
    resolution = 1.0
    if fraction:
        # Digits past nanoseconds are below a float's precision here (and int() of thousands
        # of digits is refused).
        digits = fraction[:9]
        seconds += int(digits) / 10 ** len(digits)
        resolution = 10.0 ** -len(digits)
    if not zulu:
        shift = int(tz_hours) * 3600 + int(tz_minutes) * 60
        seconds -= shift if sign == "+" else -shift
    if not EARLIEST_S <= seconds < LATEST_S:
        era = "before 2001" if seconds < EARLIEST_S else "after 2100"
        return f"{where} = {_shown(text)} is {era}: not a plausible time"
    return seconds, resolution


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {_shown(value)}"
    return f"a {type(value).__name__}"


def _shown(value: Any) -> str:
    if isinstance(value, int) and value.bit_length() > 256:
        return "a huge integer"
    text = value if isinstance(value, str) else repr(value)
    text = text if len(text) <= SHOWN_STAMP else text[: SHOWN_STAMP - 1] + "…"
    return repr(text) if isinstance(value, str) else text


# -- clock samples and the offset -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClockSample:
    """One reading of a server's clock against this machine's.

    ``sent_at`` (t0) and ``received_at`` (t1) are local Unix times: the request written, the
    answer's first byte back. ``server_time`` (S) is the server's stamp in Unix seconds and
    ``resolution_s`` how coarse it is. ``skipped`` says why the sample gave no offset (the
    other fields may then be partly missing); ``stamp`` is the raw value, as evidence.
    """

    source: str
    path: str | None = None
    sent_at: float | None = None
    received_at: float | None = None
    server_time: float | None = None
    resolution_s: float = 0.0
    stamp: str | None = None
    skipped: str | None = None

    @property
    def usable(self) -> bool:
        return (
            self.skipped is None
            and self.sent_at is not None
            and self.received_at is not None
            and self.server_time is not None
            and self.received_at >= self.sent_at
        )

    @property
    def round_trip_ms(self) -> float | None:
        if self.sent_at is None or self.received_at is None:
            return None
        return (self.received_at - self.sent_at) * 1000

    @property
    def offset_ms(self) -> float | None:
        """The server's clock minus this machine's, at the round trip's midpoint."""
        if not self.usable:
            return None
        assert self.sent_at is not None and self.received_at is not None
        assert self.server_time is not None
        return (self.server_time - (self.sent_at + self.received_at) / 2) * 1000

    @property
    def error_ms(self) -> float | None:
        """Half the round trip plus the stamp's resolution: the true offset lies within."""
        if not self.usable:
            return None
        assert self.sent_at is not None and self.received_at is not None
        return ((self.received_at - self.sent_at) / 2 + self.resolution_s) * 1000

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "path": self.path,
            "offset_ms": _rounded(self.offset_ms),
            "error_ms": _rounded(self.error_ms),
            "round_trip_ms": _rounded(self.round_trip_ms),
            "stamp": self.stamp,
            "skipped": self.skipped,
        }


def sample_clock(
    document: Any,
    time_field: TimeField,
    *,
    source: str,
    sent_at: float,
    received_at: float,
) -> ClockSample:
    """Read ``time_field`` from a decoded answer into a :class:`ClockSample` (skipped, with the
    reason, when the stamp cannot be read or the local clock stepped back meanwhile)."""
    raw = _raw_stamp(document, time_field)
    got = time_field.read(document)
    if isinstance(got, str):
        return ClockSample(source, time_field.path, sent_at, received_at, stamp=raw, skipped=got)
    if received_at < sent_at:
        return ClockSample(
            source,
            time_field.path,
            sent_at,
            received_at,
            stamp=raw,
            skipped="this machine's clock stepped back during the request: no round trip",
        )
    seconds, resolution = got
    return ClockSample(source, time_field.path, sent_at, received_at, seconds, resolution, raw)


def unreadable_sample(source: str, path: str | None, reason: str) -> ClockSample:
    """A sample that could not be taken at all (no answer to read, an answer not JSON)."""
    return ClockSample(source, path, skipped=reason)


def _raw_stamp(document: Any, time_field: TimeField) -> str | None:
    node = document
    for key, index in time_field._steps:
        if isinstance(node, Mapping):
            node = node.get(key)
        elif isinstance(node, list) and index is not None and index < len(node):
            node = node[index]
        else:
            return None
    if node is None:
        return None
    text = node if isinstance(node, str) else _shown(node)
    return text if len(text) <= SHOWN_STAMP else text[: SHOWN_STAMP - 1] + "…"


def date_sample(date: str | None, *, sent_at: float, received_at: float) -> ClockSample | None:
    """A ``Date`` header (RFC 9110 §6.6.1, whole seconds) as a clock sample; None without one."""
    if date is None:
        return None
    try:
        stamped = parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError, OverflowError):
        stamped = None
    if stamped is None:
        return ClockSample(
            SOURCE_DATE,
            None,
            sent_at,
            received_at,
            stamp=_shown_text(date),
            skipped=f"Date {_shown(date)} is not an HTTP date",
        )
    if stamped.tzinfo is None:
        stamped = stamped.replace(tzinfo=UTC)
    try:
        server = stamped.timestamp()
    except (OverflowError, OSError, ValueError):
        server = math.nan
    if not EARLIEST_S <= server < LATEST_S:
        return ClockSample(
            SOURCE_DATE,
            None,
            sent_at,
            received_at,
            stamp=_shown_text(date),
            skipped=f"Date {_shown(date)} is not a plausible time",
        )
    return ClockSample(SOURCE_DATE, None, sent_at, received_at, server, 1.0, _shown_text(date))


def _shown_text(text: str) -> str:
    return text if len(text) <= SHOWN_STAMP else text[: SHOWN_STAMP - 1] + "…"


@dataclass(frozen=True, slots=True)
class ClockEstimate:
    """The offset of a server's clock from this machine's, from one or more samples.

    ``offset_ms`` (positive: this machine is behind) and ``error_ms`` are None when no sample
    was usable; ``samples`` then still say why. ``source`` is where the chosen figure came from
    (:data:`SOURCE_REST`, :data:`SOURCE_PONG` or :data:`SOURCE_DATE`, the coarse one).
    """

    offset_ms: float | None
    error_ms: float | None
    source: str | None
    samples: tuple[ClockSample, ...] = ()
    round_trip_ms: float | None = None
    path: str | None = None

    @property
    def known(self) -> bool:
        return self.offset_ms is not None and self.error_ms is not None

    @property
    def coarse(self) -> bool:
        return self.source == SOURCE_DATE

    @property
    def usable_samples(self) -> int:
        return sum(1 for s in self.samples if s.usable)

    def to_dict(self) -> dict[str, Any]:
        return {
            "offset_ms": _rounded(self.offset_ms),
            "error_ms": _rounded(self.error_ms),
            "samples": [s.to_dict() for s in self.samples],
            "source": self.source,
            "path": self.path,
            "round_trip_ms": _rounded(self.round_trip_ms),
        }


def estimate_clock(samples: Sequence[ClockSample]) -> ClockEstimate | None:
    """The sample with the smallest round trip (ties: the finer stamp); None without samples.

    All samples are kept in the estimate, the skipped ones with their reasons.
    """
    if not samples:
        return None
    usable = [s for s in samples if s.usable]
    if not usable:
        return ClockEstimate(None, None, None, tuple(samples))
    best = min(usable, key=lambda s: (s.round_trip_ms, s.resolution_s))
    return ClockEstimate(
        best.offset_ms,
        best.error_ms,
        best.source,
        tuple(samples),
        round_trip_ms=best.round_trip_ms,
        path=best.path,
    )


def date_estimate(samples: Sequence[ClockSample]) -> ClockEstimate | None:
    """The offset a run of ``Date`` samples allows, None without any.

    A Date has whole seconds, so each sample only bounds the offset to ``offset ± error``
    (its error is at least a second); the bounds of every sample are intersected. When they do
    not overlap (servers behind a balancer disagree), the last sample alone counts.
    """
    if not samples:
        return None
    low, high = -math.inf, math.inf
    last: tuple[float, float] | None = None
    trips: list[float] = []
    for sample in samples:
        offset, error, trip = sample.offset_ms, sample.error_ms, sample.round_trip_ms
        if offset is None or error is None or trip is None:
            continue
        bounds = (offset - error, offset + error)
        low, high = max(low, bounds[0]), min(high, bounds[1])
        last = bounds
        trips.append(trip)
    if last is None:
        return ClockEstimate(None, None, None, tuple(samples))
    if low > high:
        low, high = last
    return ClockEstimate(
        (low + high) / 2,
        (high - low) / 2,
        SOURCE_DATE,
        tuple(samples),
        round_trip_ms=min(trips),
    )


def best_estimate(estimates: Iterable[ClockEstimate | None]) -> ClockEstimate | None:
    """Of several estimates of one exchange's clock, the known one with the smallest error."""
    known = [e for e in estimates if e is not None and e.known]
    return min(known, key=lambda e: e.error_ms or 0.0) if known else None


# -- feed lag -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedRecord:
    """What one attempt saw of a feed, from its first data message to the end of the window.

    ``lags_ms`` are uncorrected (local receive time minus event time), in arrival order;
    ``skipped`` counts the messages whose stamp could not be read, by reason. ``duration_s`` is
    how long the feed was read after the first data message (None: no window, only the first
    message was read). ``kind`` is the profile's ``event_time.kind`` (None: no event time).
    """

    messages: int
    lags_ms: tuple[float, ...] = ()
    skipped: tuple[tuple[str, int], ...] = ()
    duration_s: float | None = None
    kind: str | None = None
    path: str | None = None
    loop_lag_ms: float | None = None

    @property
    def growth_ms(self) -> float | None:
        """How much the lag grew over the window: the median of the last third of the lags
        minus the median of the first third (None with fewer than 6 lags)."""
        lags = self.lags_ms
        if len(lags) < 6:
            return None
        third = len(lags) // 3
        return _median(lags[-third:]) - _median(lags[:third])

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "duration_s": _rounded(self.duration_s),
            "lags": len(self.lags_ms),
            "loop_lag_ms": _rounded(self.loop_lag_ms),
            "skipped": _skipped_list(self.skipped),
        }


class FeedRecorder:
    """Collects one attempt's feed: call :meth:`observe` with every decoded data message and the
    local Unix time it was received, then :meth:`record`.

    Cheap by design (``bench/ws_throughput.py`` measures it): the path is precompiled, nothing
    is built per message but one float.
    """

    __slots__ = ("_field", "_lags", "_skipped", "messages")

    def __init__(self, time_field: TimeField | None) -> None:
        self._field = time_field
        self._lags: list[float] = []
        self._skipped: dict[str, int] = {}
        self.messages = 0

    def observe(self, message: Any, received_at: float) -> None:
        self.messages += 1
        time_field = self._field
        if time_field is None or time_field.kind != "event":
            return
        got = time_field.read(message)
        if type(got) is tuple:
            if len(self._lags) < MAX_LAGS:
                self._lags.append((received_at - got[0]) * 1000)
        else:
            self.skip(str(got))

    def skip(self, reason: str, count: int = 1) -> None:
        """Note ``count`` messages whose event time was not read, and why."""
        self._skipped[reason] = self._skipped.get(reason, 0) + count

    def record(
        self, *, duration_s: float | None = None, loop_lag_ms: float | None = None
    ) -> FeedRecord:
        time_field = self._field
        return FeedRecord(
            messages=self.messages,
            lags_ms=tuple(self._lags),
            skipped=tuple(self._skipped.items()),
            duration_s=duration_s,
            kind=time_field.kind if time_field is not None else None,
            path=time_field.path if time_field is not None else None,
            loop_lag_ms=loop_lag_ms,
        )


@dataclass(frozen=True, slots=True)
class LagStats:
    p50: float
    p95: float
    max: float

    def to_dict(self) -> dict[str, float]:
        return {"p50": round(self.p50, 3), "p95": round(self.p95, 3), "max": round(self.max, 3)}


@dataclass(frozen=True, slots=True)
class FeedSummary:
    """A target's feed over its attempts: message count and rate, lag statistics.

    ``lag_ms`` holds nearest-rank percentiles of every lag, corrected by the exchange's offset
    when ``corrected`` (``error_ms`` is then that offset's error, which every lag shares), else
    uncorrected. It is None when no lag could be measured; ``note`` says why.
    """

    messages: int
    rate_per_s: float | None
    lag_ms: LagStats | None
    corrected: bool
    error_ms: float | None = None
    offset_source: str | None = None
    growth_ms: float | None = None
    loop_lag_ms: float | None = None
    duration_s: float | None = None
    skipped: tuple[tuple[str, int], ...] = ()
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "rate_per_s": _rounded(self.rate_per_s),
            "lag_ms": self.lag_ms.to_dict() if self.lag_ms is not None else None,
            "corrected": self.corrected,
            "error_ms": _rounded(self.error_ms),
            "offset_source": self.offset_source,
            "lag_growth_ms": _rounded(self.growth_ms),
            "loop_lag_ms": _rounded(self.loop_lag_ms),
            "window_s": _rounded(self.duration_s),
            "skipped": _skipped_list(self.skipped),
            "note": self.note,
        }


def summarize_feed(
    records: Sequence[FeedRecord], clock: ClockEstimate | None
) -> FeedSummary | None:
    """The feed of a target's attempts, its lags corrected by ``clock`` when it is known."""
    if not records:
        return None
    messages = sum(r.messages for r in records)
    timed = [r for r in records if r.duration_s is not None and r.duration_s > 0]
    duration = sum(r.duration_s for r in timed if r.duration_s is not None)
    rate = sum(r.messages for r in timed) / duration if timed and duration > 0 else None
    skipped: dict[str, int] = {}
    for record in records:
        for reason, count in record.skipped:
            skipped[reason] = skipped.get(reason, 0) + count
    lags = [lag for r in records for lag in r.lags_ms]
    corrected = clock is not None and clock.known
    shift = clock.offset_ms if corrected and clock is not None and clock.offset_ms else 0.0
    growths = [g for g in (r.growth_ms for r in records) if g is not None]
    loop_lags = [r.loop_lag_ms for r in records if r.loop_lag_ms is not None]
    kinds = {r.kind for r in records}
    path = next((r.path for r in records if r.path), None)
    note = None
    if kinds == {None}:
        note = "the profile names no event time (websocket.event_time): no lag measured"
    elif "last_trade" in kinds:
        note = (
            f"{path} is the last trade's time, not the time the message was pushed: no lag "
            "claimed from it"
        )
    elif not lags:
        note = "no data message carried a readable event time"
    elif not corrected:
        note = (
            "uncorrected: no clock offset was measured for this exchange in this run, so the "
            "lag includes this machine's clock offset"
        )
    stats = None
    if lags:
        ordered = sorted(lag + shift for lag in lags)
        stats = LagStats(
            p50=nearest_rank(ordered, 50), p95=nearest_rank(ordered, 95), max=ordered[-1]
        )
    return FeedSummary(
        messages=messages,
        rate_per_s=rate,
        lag_ms=stats,
        corrected=corrected and stats is not None,
        error_ms=clock.error_ms if corrected and clock is not None and stats else None,
        offset_source=clock.source if corrected and clock is not None and stats else None,
        growth_ms=max(growths) if growths else None,
        loop_lag_ms=max(loop_lags) if loop_lags else None,
        duration_s=duration if timed else None,
        skipped=tuple(skipped.items()),
        note=note,
    )


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty, sorted sequence: the one
    definition every p50 / p95 mpnet shows uses (:func:`mpnet.core.result.percentile`)."""
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _skipped_list(skipped: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
    return [{"reason": reason, "count": count} for reason, count in skipped]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


__all__ = [
    "KINDS",
    "UNITS",
    "ClockEstimate",
    "ClockSample",
    "ClockTolerances",
    "FeedRecord",
    "FeedRecorder",
    "FeedSummary",
    "LagStats",
    "TimeField",
    "best_estimate",
    "date_estimate",
    "date_sample",
    "estimate_clock",
    "nearest_rank",
    "sample_clock",
    "stamp_seconds",
    "summarize_feed",
    "unreadable_sample",
]


def epoch_seconds(at: object) -> float | None:
    """Unix seconds of an ISO 8601 text (UTC when it names no zone); None for anything else."""
    if not isinstance(at, str) or not at:
        return None
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
