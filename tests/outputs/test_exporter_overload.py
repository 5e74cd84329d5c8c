"""The exporter under overload: a bounded number of probes, 503 and a counted shed when the queue
is full, and a scrape whose client went away cancels its probe.

The exporter runs in this process (the runner ``mpnet serve`` uses, on 127.0.0.1:0) in front of
the lab, where kraken answers its REST health check only after 30 s: a probe of it holds its
slot until cancelled. Nothing is timed; the tests wait for the exporter's own gauges.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from mpnet.cli.app import get_app
from mpnet.cli.live import lab_network_options
from mpnet.cli.serve_cmd import serve_limits
from mpnet.config.file import parse_config_text
from mpnet.config.layers import NetworkOptions
from mpnet.config.model import ConfigFile
from mpnet.config.profiles import load_profiles
from mpnet.errors import InvalidConfigFile, UsageError
from mpnet.lab import Lab
from mpnet.probe.admission import ProbeSlots, Shed, default_max_probes, usable_cpus
from mpnet.probe.exporter import ProbeExporter
from mpnet.serve.app import SLOTS_KEY, build_app, make_runner

SLOW = "kraken"
FAST = "okx"
#: A bound on every wait below, so a hang fails the test instead of blocking it.
PATIENCE = 20.0


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    profiles = [load_profiles((), env={}).get(name) for name in (FAST, SLOW)]
    async with Lab(profiles, tls=True, faults={SLOW: "slow:30"}, data_interval=0.01) as running:
        yield running


@dataclass
class Served:
    base: str
    slots: ProbeSlots

    async def settled(self, condition: Callable[[ProbeSlots], bool]) -> None:
        """Wait until the exporter's slots are in the state ``condition`` wants."""
        async with asyncio.timeout(PATIENCE):
            while not condition(self.slots):
                await asyncio.sleep(0.01)


async def serve(lab: Lab, *, max_probes: int, max_waiting: int) -> tuple[web.AppRunner, Served]:
    exporter = ProbeExporter(
        lab.profiles(),
        config=ConfigFile(),
        options=lab_network_options(NetworkOptions(), lab.ca_file),
        env={},
        timeout=10,
    )
    app = build_app(exporter, max_probes=max_probes, max_waiting=max_waiting)
    runner = make_runner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    return runner, Served(base=base, slots=app[SLOTS_KEY])


@pytest.fixture
async def one_slot(lab: Lab) -> AsyncIterator[Served]:
    """At most one probe at once and one scrape waiting."""
    runner, served = await serve(lab, max_probes=1, max_waiting=1)
    try:
        yield served
    finally:
        await runner.cleanup()


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    timeout = aiohttp.ClientTimeout(total=PATIENCE)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url, headers=headers) as response,
    ):
        return response.status, response.headers.get("Retry-After", ""), await response.text()


async def metric(base: str, name: str, **labels: str) -> float:
    _, _, body = await get(base + "metrics")
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"{name}{labels} is not in /metrics")


def probing_tasks() -> list[asyncio.Task[object]]:
    """Tasks in the middle of mpnet's probe or network code (the lab's own handlers are not)."""
    return [
        task
        for task in asyncio.all_tasks()
        if any(
            f"/mpnet/{part}/" in frame.f_code.co_filename
            for frame in task.get_stack()
            for part in ("probe", "net")
        )
    ]


async def test_a_full_queue_sheds_with_503_and_counts_it(one_slot: Served) -> None:
    base = one_slot.base
    shed_before = await metric(base, "mpnet_exporter_scrapes_shed_total", reason="queue_full")
    cancelled_before = await metric(base, "mpnet_exporter_scrapes_cancelled_total")
    running = asyncio.create_task(get(base + f"probe?exchange={SLOW}&target=rest"))
    await one_slot.settled(lambda s: s.running == 1)
    waiting = asyncio.create_task(get(base + f"probe?exchange={SLOW}&target=rest"))
    await one_slot.settled(lambda s: s.waiting == 1)
    assert await metric(base, "mpnet_exporter_probes_running") == 1
    assert await metric(base, "mpnet_exporter_scrapes_waiting") == 1

    status, retry_after, body = await get(base + f"probe?exchange={FAST}&target=rest")

    assert status == 503
    assert retry_after == "1"
    assert body.count("\n") == 1 and body.endswith("\n")
    assert body.startswith("mpnet serve is overloaded: 1 probes running and 1 scrapes waiting")
    assert "--max-probes 1, --max-waiting 1" in body
    shed = await metric(base, "mpnet_exporter_scrapes_shed_total", reason="queue_full")
    assert shed == shed_before + 1
    # The two held scrapes go away: their probes are cancelled, and the slot is free again.
    for task in (waiting, running):
        task.cancel()
    await asyncio.gather(running, waiting, return_exceptions=True)
    await one_slot.settled(lambda s: s.running == 0 and s.waiting == 0)
    cancelled = await metric(base, "mpnet_exporter_scrapes_cancelled_total")
    assert cancelled == cancelled_before + 2
    status, _, body = await get(base + f"probe?exchange={FAST}&target=rest")
    assert status == 200 and 'mpnet_probe_success{exchange="okx",target="rest"} 1.0' in body


async def test_a_scrape_whose_client_left_cancels_its_probe(one_slot: Served, lab: Lab) -> None:
    """The client closes its connection mid-probe: the probe stops (no task runs mpnet's probe
    or network code any more), and its slot is free for the next scrape."""
    base = one_slot.base
    cancelled_before = await metric(base, "mpnet_exporter_scrapes_cancelled_total")
    reader, writer = await asyncio.open_connection("127.0.0.1", int(base.rsplit(":", 1)[1][:-1]))
    writer.write(f"GET /probe?exchange={SLOW}&target=rest HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    await one_slot.settled(lambda s: s.running == 1)
    writer.close()
    await writer.wait_closed()
    await one_slot.settled(lambda s: s.running == 0)
    assert await metric(base, "mpnet_exporter_scrapes_cancelled_total") == cancelled_before + 1
    async with asyncio.timeout(PATIENCE):
        while probing_tasks():
            await asyncio.sleep(0.01)
    assert await reader.read() == b""  # nothing was answered to the departed client


async def test_a_scrape_that_waited_half_its_budget_is_shed(lab: Lab) -> None:
    runner, served = await serve(lab, max_probes=1, max_waiting=4)
    try:
        base = served.base
        before = await metric(base, "mpnet_exporter_scrapes_shed_total", reason="queue_timeout")
        holder = asyncio.create_task(get(base + f"probe?exchange={SLOW}&target=rest"))
        await served.settled(lambda s: s.running == 1)
        # Budget 1.5 - 0.5 = 1 s, of which at most half may be spent waiting.
        status, _, body = await get(
            base + f"probe?exchange={FAST}&target=rest",
            headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"},
        )
        assert status == 503
        assert "no probe slot came free within 0.5 s" in body and body.count("\n") == 1
        after = await metric(base, "mpnet_exporter_scrapes_shed_total", reason="queue_timeout")
        assert after == before + 1
        holder.cancel()
        await asyncio.gather(holder, return_exceptions=True)
        await served.settled(lambda s: s.running == 0)
    finally:
        await runner.cleanup()


async def test_a_waiting_scrape_probes_with_what_is_left_of_its_budget(lab: Lab) -> None:
    runner, served = await serve(lab, max_probes=1, max_waiting=1)
    try:
        base = served.base
        holder = asyncio.create_task(get(base + f"probe?exchange={SLOW}&target=rest"))
        await served.settled(lambda s: s.running == 1)
        waiter = asyncio.create_task(get(base + f"probe?exchange={FAST}&target=rest"))
        await served.settled(lambda s: s.waiting == 1)
        holder.cancel()
        await asyncio.gather(holder, return_exceptions=True)
        status, _, body = await waiter
        assert status == 200
        budget = next(
            s.value
            for family in text_string_to_metric_families(body)
            for s in family.samples
            if s.name == "mpnet_probe_timeout_seconds"
        )
        assert 0 < budget < 10  # --timeout 10, less the wait
    finally:
        await runner.cleanup()


# -- the exporter's own metrics pass promtool -------------------------------------------------


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
async def test_exporter_metrics_pass_promtool(one_slot: Served) -> None:
    _, _, body = await get(one_slot.base + "metrics")
    own = "\n".join(line for line in body.splitlines() if "mpnet_exporter_" in line)
    assert "# TYPE mpnet_exporter_scrapes_shed_total counter" in own
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=own + "\n", capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


# -- the limits: command line, config file, default -------------------------------------------


def test_default_limit_is_sized_to_the_machine() -> None:
    assert default_max_probes() == 4 * usable_cpus()
    assert serve_limits(ConfigFile(), max_probes=None, max_waiting=None) == (
        default_max_probes(),
        default_max_probes(),
    )


@pytest.mark.parametrize(
    ("text", "cli", "expected"),
    [
        ("serve: {max_probes: 3}", (None, None), (3, 3)),
        ("serve: {max_probes: 3, max_waiting: 0}", (None, None), (3, 0)),
        ("serve: {max_probes: 3, max_waiting: 7}", (5, None), (5, 7)),
        ("serve: {max_waiting: 2}", (None, 9), (default_max_probes(), 9)),
    ],
)
def test_command_line_wins_over_the_config_file(
    text: str, cli: tuple[int | None, int | None], expected: tuple[int, int]
) -> None:
    config = parse_config_text(text, "mpnet.yaml")
    assert serve_limits(config, max_probes=cli[0], max_waiting=cli[1]) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "serve: {max_probes: 0}",
            "mpnet.yaml:1 serve.max_probes: expected an integer of at least 1",
        ),
        ("serve: {max_waiting: -1}", "serve.max_waiting: expected an integer of at least 0"),
        ("serve: {max_probes: many}", "serve.max_probes: expected an integer"),
        ("serve: {probes: 3}", "serve.probes: unknown key 'probes'"),
    ],
)
def test_bad_serve_block_names_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(InvalidConfigFile, match=message.replace(".", r"\.").replace("'", ".")):
        parse_config_text(text, "mpnet.yaml")


@pytest.mark.parametrize("value", ["0", "-2", "x"])
def test_bad_max_probes_flag_is_a_usage_error(value: str) -> None:
    result = CliRunner().invoke(get_app(), ["serve", "--max-probes", value])
    assert result.exit_code == 2
    assert "--max-probes" in result.stderr


def test_build_app_refuses_impossible_limits() -> None:
    exporter = ProbeExporter([], config=ConfigFile(), options=NetworkOptions(), env={}, timeout=1)
    with pytest.raises(UsageError, match="--max-probes must be at least 1"):
        build_app(exporter, max_probes=0)
    with pytest.raises(UsageError, match="--max-waiting must be 0 or more"):
        build_app(exporter, max_probes=1, max_waiting=-1)


# -- ProbeSlots on its own --------------------------------------------------------------------


async def test_slots_are_first_come_first_served_and_handed_over() -> None:
    slots = ProbeSlots(limit=1, queue=2)
    assert await slots.acquire(1.0) is None
    order: list[str] = []

    async def wait(name: str) -> None:
        assert await slots.acquire(PATIENCE) is None
        order.append(name)
        slots.release()

    first = asyncio.create_task(wait("first"))
    await asyncio.sleep(0)
    second = asyncio.create_task(wait("second"))
    await asyncio.sleep(0)
    assert slots.waiting == 2
    assert await slots.acquire(1.0) is Shed.QUEUE_FULL
    slots.release()
    await asyncio.gather(first, second)
    assert order == ["first", "second"]
    assert (slots.running, slots.waiting) == (0, 0)


async def test_a_cancelled_waiter_leaves_no_trace() -> None:
    slots = ProbeSlots(limit=1, queue=1)
    assert await slots.acquire(1.0) is None
    waiter = asyncio.create_task(slots.acquire(PATIENCE))
    await asyncio.sleep(0)
    assert slots.waiting == 1
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert (slots.running, slots.waiting) == (1, 0)
    slots.release()
    assert slots.free
    with pytest.raises(RuntimeError):
        slots.release()


def test_slots_refuse_impossible_limits() -> None:
    with pytest.raises(ValueError):
        ProbeSlots(limit=0, queue=1)
    with pytest.raises(ValueError):
        ProbeSlots(limit=1, queue=-1)
