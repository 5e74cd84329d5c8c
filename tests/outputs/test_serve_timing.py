"""`mpnet serve` and `mpnet watch`, in process: the loop-lag gauge in a scrape, and the network
prepared (SSL contexts, imports) when a scrape is planned or a watch starts, so an unreadable CA
stops them before any probe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

import mpnet.probe.engine as engine
from mpnet.config.layers import NetworkOptions
from mpnet.config.model import ConfigFile
from mpnet.config.profiles import load_profiles
from mpnet.lab import Lab
from mpnet.probe.exporter import ProbeExporter
from mpnet.serve.app import build_app


async def _scrape(exporter: ProbeExporter, query: str) -> tuple[int, str]:
    async with TestClient(TestServer(build_app(exporter))) as client:
        response = await client.get("/probe?" + query)
        return response.status, await response.text()


async def test_a_scrape_carries_the_loop_lag_gauge() -> None:
    async with Lab([load_profiles().get("okx")], tls=True) as lab:
        exporter = ProbeExporter(
            lab.profiles(),
            config=ConfigFile(),
            options=NetworkOptions(ca_bundle=lab.ca_file),
            env={},
            timeout=5.0,
        )
        status, body = await _scrape(exporter, "exchange=okx&target=rest")
    assert status == 200, body
    [line] = [
        line for line in body.splitlines() if line.startswith("mpnet_probe_loop_lag_seconds{")
    ]
    assert 'exchange="okx"' in line and 'target="rest"' in line
    assert float(line.rpartition(" ")[2]) >= 0


async def test_an_unreadable_ca_is_refused_at_plan_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    started: list[Any] = []

    async def never(*args: Any, **kwargs: Any) -> Any:
        started.append(args)
        raise AssertionError("no probe may run")

    monkeypatch.setattr(engine, "run_probes", never)
    exporter = ProbeExporter(
        [load_profiles().get("okx")],
        config=ConfigFile(),
        options=NetworkOptions(ca_bundle=str(bad)),
        env={},
        timeout=5.0,
    )
    status, body = await _scrape(exporter, "exchange=okx")
    assert status == 400
    assert f"cannot load CA {bad}" in body
    assert started == []


async def test_watch_prepares_the_network_before_opening_feeds(tmp_path: Path) -> None:
    from mpnet.core.watch import WatchState
    from mpnet.errors import ConfigError
    from mpnet.probe.plan import build_plan
    from mpnet.probe.watch_runner import WatchRunner

    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    plan = build_plan(
        [load_profiles().get("okx")],
        config=ConfigFile(),
        options=NetworkOptions(ca_bundle=str(bad)),
        env={},
    )
    runner = WatchRunner(plan, WatchState([(t.profile.name, t.target) for t in plan.targets]))
    with pytest.raises(ConfigError, match=f"cannot load CA {bad}"):
        await runner.start()
    assert runner.feeds == []
