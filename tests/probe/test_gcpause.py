"""The cyclic garbage collector is paused while a probe run's attempts are timed
(probe/gcpause.py): a collection is a stall for every answer that arrives during it."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

import mpnet.probe.engine as engine
import mpnet.probe.gcpause as gcpause
from fixtures_servers import lab_plan
from mpnet.core.result import Attempt
from mpnet.probe.plan import ProbeTarget


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    """Whatever a test does, the suite goes on with the collector as it was."""
    enabled = gc.isenabled()
    yield
    assert gcpause._runs == 0
    if enabled:
        gc.enable()
    else:
        gc.disable()


async def test_a_run_pauses_the_collector_while_its_attempts_run() -> None:
    gc.enable()
    seen: list[bool] = []

    def note(target: ProbeTarget, attempt: Attempt) -> None:
        seen.append(gc.isenabled())

    async with lab_plan("okx", count=2) as plan:
        report = await engine.run_probes(plan, on_attempt=note)
    assert report.ok
    assert seen and not any(seen)
    assert gc.isenabled()


def test_overlapping_runs_share_one_pause() -> None:
    gc.enable()
    first, second = gcpause.collector_paused(), gcpause.collector_paused()
    first.__enter__()
    second.__enter__()
    assert not gc.isenabled()
    first.__exit__(None, None, None)
    assert not gc.isenabled(), "the other run is still timing its attempts"
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_collector_disabled_before_the_run_stays_disabled() -> None:
    gc.disable()
    with gcpause.collector_paused():
        pass
    assert not gc.isenabled()


def test_a_run_that_piles_up_objects_collects_between_attempts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collected: list[int] = []
    monkeypatch.setattr(gcpause.gc, "collect", lambda generation=2: collected.append(generation))
    monkeypatch.setattr(gcpause, "PAUSE_LIMIT", -1)
    gcpause.collect_if_piled_up()
    assert collected == []  # no run in progress: the collector does its own work
    with gcpause.collector_paused():
        gcpause.collect_if_piled_up()
    assert collected == [1]


async def test_an_interrupted_run_resumes_the_collector() -> None:
    gc.enable()
    async with lab_plan("okx", faults={"okx": "slow:5"}) as plan:
        task = asyncio.create_task(engine.run_probes(plan))
        await asyncio.sleep(0.3)
        assert not gc.isenabled()
        task.cancel()
        report = await task
    assert report.interrupted
    assert gc.isenabled()
