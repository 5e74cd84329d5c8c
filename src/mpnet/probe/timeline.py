"""Latency over time: the records ``mpnet watch --record FILE.jsonl`` appends and ``mpnet
report FILE.jsonl`` reads back (pure: no file is opened here).

One JSON object per line, one line per target per watch cycle::

    {"v": 1, "at": "2026-11-02T10:15:02.125+00:00", "cycle": 2, "exchange": "okx",
     "target": "ws", "ok": true, "ms": 4.1, "phases": {...}, "error": null, "finding": null,
     "drops": 0, "failures": 0, "feed": {"connected": true, "reconnects": 0, "gaps": 0,
     "messages": 40}}

``ms`` is the cycle's latency (REST: the whole request; WebSocket: the ping on its long-lived
feed), null when the cycle failed. ``drops`` and ``feed.reconnects`` are running counts, so a
reader sees where each one happened. Optional keys, written when the watch has them and shown
when present: ``clock`` (``{"offset_ms", "error_ms"}``: exchange clock minus local clock) and
``feed.lag_ms`` (``{"p50", "p95", "max"}``).
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mpnet.core.watch import WatchRow
from mpnet.errors import UsageError

RECORD_VERSION = 1


def record_of(row: WatchRow, *, cycle: int, at: str) -> dict[str, Any]:
    """The record of one target after one watch cycle (``at``: ISO 8601 time of the cycle)."""
    record: dict[str, Any] = {
        "v": RECORD_VERSION,
        "at": at,
        "cycle": cycle,
        "exchange": row.exchange,
        "target": row.target,
        "ok": row.last_ok,
        "ms": _rounded(row.last_ms),
        "phases": {name: _rounded(ms) for name, ms in row.last_phases.items()},
        "error": None if row.last_ok else row.last_error,
        "finding": None if row.last_ok else row.last_finding,
        "drops": row.drops,
        "failures": row.consecutive_failures,
    }
    feed = row.feed
    if feed is not None:
        record["feed"] = {
            "connected": feed.connected,
            "reconnects": feed.reconnects,
            "gaps": feed.gaps,
            "messages": feed.messages,
        }
        lag = getattr(feed, "lag_ms", None)
        if isinstance(lag, Mapping):
            record["feed"]["lag_ms"] = dict(lag)
    clock = getattr(row, "clock", None)
    if isinstance(clock, Mapping):
        record["clock"] = dict(clock)
    return record


def record_lines(rows: Iterable[WatchRow], *, cycle: int, at: str) -> str:
    """The JSON lines of one cycle (each ends with a newline)."""
    return "".join(
        json.dumps(record_of(row, cycle=cycle, at=at), separators=(",", ":")) + "\n" for row in rows
    )


def _rounded(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, 3)


@dataclass(frozen=True, slots=True)
class Timeline:
    """The records of one exchange x target, in file order."""

    exchange: str
    target: str
    records: tuple[Mapping[str, Any], ...]


def parse_records(lines: Iterable[str], *, source: str) -> list[Timeline]:
    """Group the records of a ``--record`` file by exchange x target (first seen first).

    Blank lines are skipped; a last line cut short (the watch was killed while writing it) is
    dropped.

    Raises:
        UsageError: a line is not a JSON object with ``at``, ``exchange`` and ``target``
            (names ``source:line``), or the file holds no record at all.
    """
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    for index, (number, line) in enumerate(numbered):
        try:
            record = json.loads(line)
        except ValueError:
            if index == len(numbered) - 1 and not line.endswith("\n"):
                break  # cut short by an interrupted write
            raise UsageError(
                f"{source}:{number}: not a JSON line of `mpnet watch --record`"
            ) from None
        if not isinstance(record, dict) or not all(
            isinstance(record.get(key), str) for key in ("at", "exchange", "target")
        ):
            raise UsageError(
                f"{source}:{number}: expected an object with 'at', 'exchange' and 'target' "
                "(a line of `mpnet watch --record`)"
            )
        grouped.setdefault((record["exchange"], record["target"]), []).append(record)
    if not grouped:
        raise UsageError(f"{source}: no record in it (write one with `mpnet watch --record`)")
    return [Timeline(e, t, tuple(records)) for (e, t), records in grouped.items()]


def latencies(records: Sequence[Mapping[str, Any]]) -> list[float]:
    """The latencies of the successful cycles, in order."""
    return [
        float(r["ms"])
        for r in records
        if r.get("ok") is True and isinstance(r.get("ms"), int | float)
    ]


def drop_indexes(records: Sequence[Mapping[str, Any]]) -> list[int]:
    """Where an ok cycle was followed by a failed one (the records' own ``drops`` counts when
    they carry them, else ok -> fail transitions)."""
    found = []
    previous_ok: bool | None = None
    previous_drops: int | None = None
    for index, record in enumerate(records):
        drops = record.get("drops")
        if isinstance(drops, int) and previous_drops is not None:
            if drops > previous_drops:
                found.append(index)
        elif previous_ok is True and record.get("ok") is False:
            found.append(index)
        previous_ok = record.get("ok") if isinstance(record.get("ok"), bool) else previous_ok
        previous_drops = drops if isinstance(drops, int) else previous_drops
    return found


def reconnect_indexes(records: Sequence[Mapping[str, Any]]) -> list[int]:
    """Where the feed's running count of reconnects went up."""
    found = []
    previous: int | None = None
    for index, record in enumerate(records):
        feed = record.get("feed")
        count = feed.get("reconnects") if isinstance(feed, Mapping) else None
        if isinstance(count, int):
            if previous is not None and count > previous:
                found.append(index)
            previous = count
    return found


@dataclass(frozen=True, slots=True)
class TimelineSummary:
    """What a whole recording says about one target."""

    cycles: int
    failed: int
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None
    drops: int
    reconnects: int

    @property
    def loss_pct(self) -> float | None:
        return 100 * self.failed / self.cycles if self.cycles else None


def summarize(timeline: Timeline) -> TimelineSummary:
    """Counts and nearest-rank percentiles over every record of ``timeline``."""
    from mpnet.core.result import percentile

    records = timeline.records
    values = latencies(records)
    return TimelineSummary(
        cycles=sum(1 for r in records if isinstance(r.get("ok"), bool)),
        failed=sum(1 for r in records if r.get("ok") is False),
        p50_ms=percentile(values, 50) if values else None,
        p95_ms=percentile(values, 95) if values else None,
        max_ms=max(values) if values else None,
        drops=len(drop_indexes(records)),
        reconnects=len(reconnect_indexes(records)),
    )


class LatencyTrend:
    """The last ``width`` latencies of each target (None for a failed cycle), in order: what
    the sparkline column of ``mpnet watch`` draws."""

    def __init__(self, width: int = 12) -> None:
        self.width = width
        self._values: dict[tuple[str, str], deque[float | None]] = {}

    def record(self, rows: Iterable[WatchRow]) -> None:
        """Add one cycle's rows."""
        for row in rows:
            kept = self._values.setdefault((row.exchange, row.target), deque(maxlen=self.width))
            kept.append(row.last_ms if row.last_ok else None)

    def values(self) -> dict[tuple[str, str], list[float | None]]:
        return {key: list(kept) for key, kept in self._values.items()}
