"""State of ``mpnet watch``: a rolling window of cycles per target, like mtr keeps per hop.

Pure bookkeeping (no I/O, no clock): each cycle's attempts (and, for WebSocket targets, what the
long-lived feed showed: :class:`FeedSample`) go in, :class:`WatchRow` snapshots come out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mpnet.core.clock import (
    ClockEstimate,
    ClockSample,
    best_estimate,
    date_estimate,
    estimate_clock,
)
from mpnet.core.ratelimit import Skip
from mpnet.core.result import Attempt, ErrorInfo, percentile

#: Cycles kept per target for the rolling statistics.
WINDOW = 100
#: Feed lags kept per target for the rolling lag percentiles (the most recent ones).
LAG_WINDOW = 10_000


@dataclass(frozen=True, slots=True)
class FeedSample:
    """What one watch cycle saw of a long-lived WebSocket feed (kept by mpnet.probe.feed).

    Attributes:
        connected: a connection was open when the cycle looked.
        reconnects: successful connections after the first, so far.
        gaps: disconnects so far; each one is a gap in the data.
        longest_gap_ms: the longest silence between two data messages so far, reconnects
            included (and the current one while disconnected); None before any data.
        messages: data messages (those matching the profile's ``data_match``) since the
            previous cycle.
        ping_ms: this cycle's application ping round trip; None when it failed or was not sent.
        last_error: the feed's latest error (a connection that ended or could not be opened, a
            ping that failed), kept after the feed recovered.
        last_error_dropped: ``last_error`` ended a connection that was up (a disconnect, which
            the probe's diagnoses do not explain), rather than failing to open one.
        lags_ms: uncorrected lags (local receive time minus event time) of the data messages
            since the previous cycle, in arrival order (:mod:`mpnet.core.clock`).
        lag_note: why no lag is measured (no event time in the profile, a trade's time).
        clock: this cycle's reading of the server's clock from its pong, if the profile has one.
    """

    connected: bool
    reconnects: int = 0
    gaps: int = 0
    longest_gap_ms: float | None = None
    messages: int = 0
    ping_ms: float | None = None
    last_error: ErrorInfo | None = None
    last_error_dropped: bool = False
    lags_ms: tuple[float, ...] = ()
    lag_note: str | None = None
    clock: ClockSample | None = None


@dataclass(frozen=True, slots=True)
class WatchRow:
    """One target's line of the watch table, as of the last cycle.

    ``last_ms`` is the last successful cycle's latency: the total attempt time of a REST target,
    the application ping round trip of a WebSocket feed. ``p50_ms``/``p95_ms`` are nearest-rank
    percentiles of those latencies over the successes in the window; ``loss_pct`` is the share
    of bad cycles in the window (failed; for a feed also disconnected, its ping failed, or
    flapping). ``drops`` counts ok -> bad transitions (a target bad from its first cycle has
    none). ``feed`` is the last :class:`FeedSample` of a WebSocket target (None for REST).

    ``flapping`` is how often the feed dropped or reconnected during the last interval
    (the larger of the two counts; 0 for a steady feed): a connected feed that flapped is not ok.
    ``dropped``/``reconnected`` are the two counts. ``skipped`` is set when the last cycle was
    not sent because the exchange's rate-limit wait was running (``skips`` counts such cycles;
    they are neither loss nor success).

    ``clock`` is this target's rolling reading of the exchange's clock (the sample with the
    smallest round trip in the window, or the Date headers). ``lag_p50_ms``/``lag_p95_ms`` are
    a feed's rolling lag percentiles over its last :data:`LAG_WINDOW` data messages, corrected
    by the exchange's best offset in the window when ``lag_corrected``.
    """

    exchange: str
    target: str
    attempts: int
    window: int
    last_ok: bool | None
    last_phases: Mapping[str, float] = field(default_factory=dict)
    last_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    loss_pct: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    drops: int = 0
    last_finding: str | None = None
    feed: FeedSample | None = None
    flapping: int = 0
    dropped: int = 0
    reconnected: int = 0
    skipped: Skip | None = None
    skips: int = 0
    #: The route asked for (``--via``), None for the usual layers.
    route: str | None = None
    clock: ClockEstimate | None = None
    lag_p50_ms: float | None = None
    lag_p95_ms: float | None = None
    lag_corrected: bool = False

    @property
    def status(self) -> str:
        """``ok``, ``flapping``, ``DOWN``, ``FAIL``, ``SKIP`` or ``-`` (no cycle yet)."""
        if self.skipped is not None:
            return "SKIP"
        if self.last_ok is None:
            return "-"
        if self.last_ok:
            return "flapping" if self.flapping else "ok"
        if self.feed is not None and not self.feed.connected:
            return "DOWN"
        return "FAIL"


def flapping_counts(previous: FeedSample | None, current: FeedSample) -> tuple[int, int]:
    """Disconnects and reconnects of a feed between two samples (from the start for the first)."""
    gaps = previous.gaps if previous is not None else 0
    reconnects = previous.reconnects if previous is not None else 0
    return max(0, current.gaps - gaps), max(0, current.reconnects - reconnects)


class TargetWatch:
    """The rolling record of one exchange x target."""

    __slots__ = (
        "_clock_samples",
        "_dates",
        "_feed_error",
        "_lags",
        "_last_good",
        "_window",
        "attempts",
        "consecutive_failures",
        "dropped",
        "drops",
        "exchange",
        "feed",
        "last",
        "last_error",
        "last_finding",
        "reconnected",
        "route",
        "skipped",
        "skips",
        "target",
        "troubled",
    )

    def __init__(
        self, exchange: str, target: str, *, window: int = WINDOW, route: str | None = None
    ) -> None:
        if window < 1:
            raise ValueError("window must hold at least one attempt")
        self.exchange = exchange
        self.target = target
        self.route = route
        # (good, latency in ms or None) per cycle that was sent.
        self._window: deque[tuple[bool, float | None]] = deque(maxlen=window)
        self._last_good: bool | None = None
        self.attempts = 0
        self.consecutive_failures = 0
        self.drops = 0
        self.last: Attempt | None = None
        self.last_error: str | None = None
        self.last_finding: str | None = None
        self.feed: FeedSample | None = None
        self._feed_error: ErrorInfo | None = None
        self.dropped = 0
        self.reconnected = 0
        self.skipped: Skip | None = None
        self.skips = 0
        #: Cycles that failed or in which the feed dropped or reconnected (for the exit code).
        self.troubled = 0
        # Clock readings (the time field's, the Date header's) and feed lags, rolling.
        self._clock_samples: deque[ClockSample] = deque(maxlen=window)
        self._dates: deque[ClockSample] = deque(maxlen=window)
        self._lags: deque[float] = deque(maxlen=LAG_WINDOW)

    def record(
        self, attempt: Attempt, *, finding: str | None = None, feed: FeedSample | None = None
    ) -> None:
        """Add one cycle.

        Args:
            attempt: the cycle's outcome (for a feed: ok when connected and the ping answered).
            finding: the diagnosis code of a failure, if any.
            feed: what a WebSocket feed showed; its ping time is the cycle's latency, and its
                last error is shown even when the feed recovered within the cycle. A feed that
                dropped or reconnected since the previous cycle makes this cycle a bad one
                (flapping, when it is connected again), never ok.

        A skipped attempt (the exchange's rate-limit wait) is counted apart and changes
        nothing else.
        """
        self.attempts += 1
        if attempt.skipped is not None:
            self.skipped = attempt.skipped
            self.skips += 1
            return
        self.skipped = None
        if feed is not None:
            self.dropped, self.reconnected = flapping_counts(self.feed, feed)
        else:
            self.dropped = self.reconnected = 0
        good = attempt.ok and not (self.dropped or self.reconnected)
        if not good:
            self.troubled += 1
            if self._last_good:
                self.drops += 1
        self._last_good = good
        self.consecutive_failures = 0 if attempt.ok else self.consecutive_failures + 1
        if attempt.error is not None:
            self.last_error = _error_text(attempt.error)
            self.last_finding = finding
        elif (
            feed is not None and feed.last_error is not None and feed.last_error != self._feed_error
        ):
            self.last_error = _error_text(feed.last_error)
            self.last_finding = None
        if feed is not None:
            self._feed_error = feed.last_error
        latency = (feed.ping_ms if feed is not None else attempt.total_ms) if attempt.ok else None
        self._window.append((good, latency))
        self.last = attempt
        self.feed = feed
        clock = feed.clock if feed is not None else attempt.clock
        if clock is not None:
            self._clock_samples.append(clock)
        date = attempt.date_sample
        if date is not None:
            self._dates.append(date)
        if feed is not None:
            self._lags.extend(feed.lags_ms)

    def clock(self) -> ClockEstimate | None:
        """This target's reading of the exchange's clock over the window (None: none)."""
        estimate = estimate_clock(list(self._clock_samples))
        if estimate is not None and estimate.known:
            return estimate
        dates = date_estimate(list(self._dates))
        return dates if dates is not None and dates.known else estimate

    def row(self, exchange_clock: ClockEstimate | None = None) -> WatchRow:
        """A snapshot for rendering; a feed's lag is corrected by ``exchange_clock`` (the best
        offset its exchange showed in the window) when given."""
        window = list(self._window)
        # Every latency measured, a flapping feed's ping included: it is what the ping took.
        latencies = [ms for _, ms in window if ms is not None]
        failures = sum(1 for ok, _ in window if not ok)
        last = self.last
        shift = exchange_clock.offset_ms if exchange_clock is not None else None
        lags = [lag + (shift or 0.0) for lag in self._lags]
        return WatchRow(
            exchange=self.exchange,
            target=self.target,
            attempts=self.attempts,
            window=len(window),
            last_ok=last.ok if last is not None else None,
            last_phases=dict(last.phases) if last is not None else {},
            last_ms=window[-1][1] if window else None,
            p50_ms=percentile(latencies, 50) if latencies else None,
            p95_ms=percentile(latencies, 95) if latencies else None,
            loss_pct=100 * failures / len(window) if window else None,
            last_error=self.last_error,
            consecutive_failures=self.consecutive_failures,
            drops=self.drops,
            last_finding=self.last_finding,
            feed=self.feed,
            flapping=max(self.dropped, self.reconnected) if last is not None and last.ok else 0,
            dropped=self.dropped,
            reconnected=self.reconnected,
            skipped=self.skipped,
            skips=self.skips,
            route=self.route,
            clock=self.clock(),
            lag_p50_ms=percentile(lags, 50) if lags else None,
            lag_p95_ms=percentile(lags, 95) if lags else None,
            lag_corrected=bool(lags) and shift is not None,
        )


class WatchState:
    """Every watched target plus the cycle count."""

    def __init__(
        self,
        targets: Sequence[tuple[str, str] | tuple[str, str, str | None]],
        *,
        window: int = WINDOW,
    ) -> None:
        """``targets``: (exchange, target) or (exchange, target, route) per row, in order."""
        self.targets = [
            TargetWatch(row[0], row[1], window=window, route=row[2] if len(row) > 2 else None)
            for row in targets
        ]
        self.cycles = 0
        self.last_cycle_ok: bool | None = None

    def record_cycle(
        self,
        attempts: Sequence[Attempt],
        findings: Sequence[str | None] | None = None,
        feeds: Sequence[FeedSample | None] | None = None,
    ) -> None:
        """Record one attempt per target, in the order the targets were given; ``findings``
        and ``feeds`` (None for a REST target) line up with ``attempts``."""
        if len(attempts) != len(self.targets):
            raise ValueError(f"expected {len(self.targets)} attempts, got {len(attempts)}")
        codes = list(findings) if findings is not None else [None] * len(attempts)
        samples = list(feeds) if feeds is not None else [None] * len(attempts)
        for watch, attempt, code, sample in zip(
            self.targets, attempts, codes, samples, strict=True
        ):
            watch.record(attempt, finding=code, feed=sample)
        self.cycles += 1
        rows = self.rows()
        self.last_cycle_ok = all(row.status in ("ok", "SKIP") for row in rows)

    @property
    def troubled(self) -> bool:
        """Some cycle failed, or a feed dropped or reconnected during some interval (``watch
        --count`` then exits 1)."""
        return any(watch.troubled for watch in self.targets)

    def rows(self) -> list[WatchRow]:
        best: dict[str, ClockEstimate | None] = {}
        for watch in self.targets:
            best[watch.exchange] = best_estimate((best.get(watch.exchange), watch.clock()))
        return [watch.row(best.get(watch.exchange)) for watch in self.targets]


def _error_text(error: ErrorInfo) -> str:
    return f"{error.phase} {error.kind}"
