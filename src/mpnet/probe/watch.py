"""State of ``mpnet watch``: a rolling window of attempts per target, like mtr keeps per hop.

Pure bookkeeping (no I/O, no clock): the command feeds each cycle's attempts in and renders
:class:`WatchRow` snapshots out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mpnet.core.result import Attempt, percentile

#: Attempts kept per target for the rolling statistics.
WINDOW = 100


@dataclass(frozen=True, slots=True)
class WatchRow:
    """One target's line of the watch table, as of the last cycle.

    ``p50_ms``/``p95_ms`` are nearest-rank percentiles of the total attempt time over the
    successes in the window; ``loss_pct`` is the share of failures in the window. ``drops``
    counts ok -> fail transitions (a target failing from its first attempt has none).
    """

    exchange: str
    target: str
    attempts: int
    window: int
    last_ok: bool | None
    last_phases: Mapping[str, float] = field(default_factory=dict)
    last_total_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    loss_pct: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    drops: int = 0
    last_finding: str | None = None


class TargetWatch:
    """The rolling record of one exchange x target."""

    __slots__ = (
        "_window",
        "attempts",
        "consecutive_failures",
        "drops",
        "exchange",
        "last",
        "last_error",
        "last_finding",
        "target",
    )

    def __init__(self, exchange: str, target: str, *, window: int = WINDOW) -> None:
        if window < 1:
            raise ValueError("window must hold at least one attempt")
        self.exchange = exchange
        self.target = target
        self._window: deque[Attempt] = deque(maxlen=window)
        self.attempts = 0
        self.consecutive_failures = 0
        self.drops = 0
        self.last: Attempt | None = None
        self.last_error: str | None = None
        self.last_finding: str | None = None

    def record(self, attempt: Attempt, *, finding: str | None = None) -> None:
        """Add one attempt; ``finding`` is the diagnosis code of a failure, if any."""
        previous = self.last
        if not attempt.ok and previous is not None and previous.ok:
            self.drops += 1
        self.consecutive_failures = 0 if attempt.ok else self.consecutive_failures + 1
        if attempt.error is not None:
            self.last_error = f"{attempt.error.phase} {attempt.error.kind}"
            self.last_finding = finding
        self._window.append(attempt)
        self.attempts += 1
        self.last = attempt

    def row(self) -> WatchRow:
        """A snapshot for rendering."""
        window = list(self._window)
        totals = [a.total_ms for a in window if a.ok]
        last = self.last
        return WatchRow(
            exchange=self.exchange,
            target=self.target,
            attempts=self.attempts,
            window=len(window),
            last_ok=last.ok if last is not None else None,
            last_phases=dict(last.phases) if last is not None else {},
            last_total_ms=last.total_ms if last is not None and last.ok else None,
            p50_ms=percentile(totals, 50) if totals else None,
            p95_ms=percentile(totals, 95) if totals else None,
            loss_pct=100 * (len(window) - len(totals)) / len(window) if window else None,
            last_error=self.last_error,
            consecutive_failures=self.consecutive_failures,
            drops=self.drops,
            last_finding=self.last_finding,
        )


class WatchState:
    """Every watched target plus the cycle count."""

    def __init__(self, targets: Sequence[tuple[str, str]], *, window: int = WINDOW) -> None:
        self.targets = [
            TargetWatch(exchange, target, window=window) for exchange, target in targets
        ]
        self.cycles = 0
        self.last_cycle_ok: bool | None = None

    def record_cycle(
        self, attempts: Sequence[Attempt], findings: Sequence[str | None] | None = None
    ) -> None:
        """Record one attempt per target, in the order the targets were given."""
        if len(attempts) != len(self.targets):
            raise ValueError(f"expected {len(self.targets)} attempts, got {len(attempts)}")
        codes = list(findings) if findings is not None else [None] * len(attempts)
        for watch, attempt, code in zip(self.targets, attempts, codes, strict=True):
            watch.record(attempt, finding=code)
        self.cycles += 1
        self.last_cycle_ok = all(a.ok for a in attempts)

    def rows(self) -> list[WatchRow]:
        return [watch.row() for watch in self.targets]
