"""The exporter's memory of its last probes, per exchange and target (a bounded ring buffer).

Pure bookkeeping, like :mod:`mpnet.core.watch`: each probe's report goes in, and the status
page (``GET /`` of ``mpnet serve``) reads it back. Results are kept as their JSON documents
(:meth:`~mpnet.core.result.ProbeResult.to_dict`, passwords already redacted; kept as compact
JSON text), so a page drawn
from them shows what ``debug=true`` showed at the time. Memory is bounded twice: ``per_target``
probes per exchange x target, and ``max_targets`` exchange x target pairs (the least recently
probed pair is forgotten first).
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mpnet.core.result import ProbeReport

#: Probes kept per exchange x target.
PER_TARGET = 20
#: Exchange x target pairs kept (the exporter only probes known profiles: this is a backstop).
MAX_TARGETS = 512


@dataclass(frozen=True, slots=True)
class RecentProbe:
    """One probe of one target: its number in this exporter's life, when the probe started
    (ISO 8601, the report's ``started_at``), the mpnet version, whether it passed, and the
    result's JSON as compact text (a fifth of the memory of the parsed document)."""

    serial: int
    started_at: str
    mpnet_version: str
    ok: bool
    text: str

    @property
    def result(self) -> dict[str, Any]:
        """The result's JSON document (parsed anew on each call)."""
        document: dict[str, Any] = json.loads(self.text)
        return document

    def report(self) -> dict[str, Any]:
        """A one-result report document (the ``--format json`` shape) for the HTML view."""
        ok = 1 if self.ok else 0
        return {
            "mpnet_version": self.mpnet_version,
            "started_at": self.started_at,
            "results": [self.result],
            "summary": {"total": 1, "ok": ok, "failed": 1 - ok},
        }


class RecentProbes:
    """The last ``per_target`` probes of each exchange x target, oldest first."""

    def __init__(self, *, per_target: int = PER_TARGET, max_targets: int = MAX_TARGETS) -> None:
        if per_target < 1 or max_targets < 1:
            raise ValueError("keep at least one probe of at least one target")
        self.per_target = per_target
        self.max_targets = max_targets
        self._by_target: OrderedDict[tuple[str, str], deque[RecentProbe]] = OrderedDict()
        self.recorded = 0

    def add(self, report: ProbeReport) -> None:
        """Keep each result of ``report`` (one per target probed)."""
        self.add_document(report.to_dict())

    def add_document(self, report: Mapping[str, Any]) -> None:
        """Keep each result of a report's JSON document."""
        for result in report.get("results", []):
            key = (str(result.get("exchange")), str(result.get("target")))
            self.recorded += 1
            probe = RecentProbe(
                serial=self.recorded,
                started_at=str(report.get("started_at", "")),
                mpnet_version=str(report.get("mpnet_version", "")),
                ok=result.get("ok") is True,
                text=json.dumps(result, separators=(",", ":")),
            )
            kept = self._by_target.get(key)
            if kept is None:
                kept = self._by_target[key] = deque(maxlen=self.per_target)
                while len(self._by_target) > self.max_targets:
                    self._by_target.popitem(last=False)
            else:
                self._by_target.move_to_end(key)
            kept.append(probe)

    def targets(self) -> list[tuple[str, str]]:
        """Every exchange x target with a probe kept, by exchange then target."""
        return sorted(self._by_target)

    def history(self, exchange: str, target: str) -> list[RecentProbe]:
        """The kept probes of one target, oldest first (empty when never probed)."""
        return list(self._by_target.get((exchange, target), ()))

    def latest(self, exchange: str, target: str) -> RecentProbe | None:
        kept = self._by_target.get((exchange, target))
        return kept[-1] if kept else None

    def __len__(self) -> int:
        return sum(len(kept) for kept in self._by_target.values())
