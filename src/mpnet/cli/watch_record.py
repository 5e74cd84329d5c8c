"""``mpnet watch --record FILE.jsonl``: append each cycle's records to a file (the format is
:mod:`mpnet.probe.timeline`'s)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from mpnet.core.watch import WatchRow
from mpnet.probe.timeline import record_lines

#: Appends the rows of one cycle (rows, cycle number).
Recorder = Callable[[Sequence[WatchRow], int], None]


def open_recorder(path: str) -> Recorder:
    """A recorder appending to ``path``, checked for writing now (before any probe runs).

    Each cycle opens, appends and closes the file, so what was recorded is on disk even when
    the watch is killed, and another watch may append to the same file later.

    Raises:
        OSError: the file cannot be opened for appending (the CLI says so, exit 2).
    """
    with open(path, "a", encoding="utf-8"):
        pass

    def append(rows: Sequence[WatchRow], cycle: int) -> None:
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(record_lines(rows, cycle=cycle, at=at))

    return append
