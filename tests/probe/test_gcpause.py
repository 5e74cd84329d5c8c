"""The cyclic garbage collector is paused while a probe run's attempts are timed
(probe/gcpause.py): a collection is a stall for every answer that arrives during it."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

import mpnet.probe.engine as engine
import mpnet.probe.gcpause as gcpause
from mpnet.config.layers import NetworkOptions
from mpnet.config.model import ConfigFile
from mpnet.config.profiles import load_profiles
from mpnet.core.result import Attempt
from mpnet.lab import Lab
from mpnet.probe.plan import ProbePlan, ProbeTarget, build_plan

KNOWN = load_profiles()


def _plan_of(lab: Lab, count: int = 1) -> ProbePlan:
    options = NetworkOptions(ca_bundle=lab.ca_file)
    return build_plan(
        lab.profiles(), config=ConfigFile(), options=options, env={}, count=count, timeout=10
    )


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

    async with Lab([KNOWN.get("okx")], tls=True) as lab:
        report = await engine.run_probes(_plan_of(lab, count=2), on_attempt=note)
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
    async with Lab([KNOWN.get("okx")], tls=True, faults={"okx": "slow:5"}) as lab:
        task = asyncio.create_task(engine.run_probes(_plan_of(lab)))
        await asyncio.sleep(0.3)
        assert not gc.isenabled()
        task.cancel()
        report = await task
    assert report.interrupted
    assert gc.isenabled()
