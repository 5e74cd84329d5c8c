"""Python's cyclic garbage collector, paused while probe attempts are timed.

A collection runs inside whichever allocation triggers it, on the loop, and every answer that
arrives meanwhile waits for it: the lab's 13 exchanges REST + WebSocket at once (130 attempts)
had about 24 young collections of up to 0.8 ms and 2 older ones of 1.1 to 1.4 ms, each a stall
billed to whatever attempt was waiting. Reference counting frees nearly everything as it goes;
what a paused collector leaves are reference cycles (an exception and its traceback, a few
asyncio objects), about a thousand objects in that run, with the same peak memory
(``bench/collector_bench.py``). They are collected once no run is in progress.

Runs that overlap (``mpnet serve``'s scrapes) share one pause: the collector resumes when the
last ends, and only if it was enabled when the first began. A run that piles up more than
:data:`PAUSE_LIMIT` tracked objects collects its young ones between two attempts anyway, so a
long run cannot grow without bound (the loop-lag monitor measures that stall like any other).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

#: Tracked objects (``gc.get_count()[0]``) a paused run lets pile up before it collects the
#: young ones between two attempts. The lab run above ends with about 3000.
PAUSE_LIMIT = 100_000

_runs = 0
_resume = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic collector for the body (re-entrant across overlapping runs)."""
    global _runs, _resume
    if _runs == 0:
        _resume = gc.isenabled()
        gc.disable()
    _runs += 1
    try:
        yield
    finally:
        _runs -= 1
        if _runs == 0 and _resume:
            gc.enable()


def collect_if_piled_up() -> None:
    """Between two attempts of a paused run: collect the young objects (those not yet in the
    oldest generation) if more than :data:`PAUSE_LIMIT` tracked ones piled up."""
    if _runs and gc.get_count()[0] > PAUSE_LIMIT:
        gc.collect(1)


__all__ = ["PAUSE_LIMIT", "collect_if_piled_up", "collector_paused"]
