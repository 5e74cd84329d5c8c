"""A sparkline (pure): recent latencies as a row of block characters, failures as ✗."""

from __future__ import annotations

from collections.abc import Sequence

BLOCKS = "▁▂▃▄▅▆▇█"
FAILED = "✗"


def sparkline(values: Sequence[float | None]) -> str:
    """``▁▃▂█✗▄``: each value scaled between the smallest and largest shown, None as ✗ (a
    failed cycle). Equal values sit in the middle; an empty sequence gives an empty string."""
    known = [v for v in values if v is not None]
    low, high = (min(known), max(known)) if known else (0.0, 0.0)
    span = high - low
    marks = []
    for value in values:
        if value is None:
            marks.append(FAILED)
        elif span <= 0:
            marks.append(BLOCKS[len(BLOCKS) // 2 - 1])
        else:
            index = round((value - low) / span * (len(BLOCKS) - 1))
            marks.append(BLOCKS[index])
    return "".join(marks)
