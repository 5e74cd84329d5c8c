"""Nothing piles up per scrape, per call, per cycle or per reconnect: objects are counted, not
timed.

Each test warms the path up, takes a census of the objects that a leak would leave behind
(tasks, sessions, connectors, prometheus registries and collectors, WebSocket wrappers, stream
writers, sockets, reports...), runs the path a few hundred times more, and takes the census
again. A leak of one object per operation shows as hundreds; the allowance is a handful (pooled
keep-alive connections, a timer not yet due). Everything runs against the lab on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from mpnet.cli.live import lab_network_options
from mpnet.client import ENDED_HISTORY, NetworkConnectionManager
from mpnet.config.layers import NetworkOptions
from mpnet.config.model import ConfigFile
from mpnet.config.profiles import load_profiles
from mpnet.core.result import Attempt, ProbeReport
from mpnet.core.watch import WatchState
from mpnet.lab import Lab
from mpnet.net.ws import GAP_HISTORY, Gap, ReconnectingWebSocket, WebSocketWrapper
from mpnet.probe.exporter import ProbeExporter
from mpnet.probe.plan import build_plan
from mpnet.probe.watch_runner import WatchRunner
from mpnet.serve.app import build_app, make_runner

# Deselected by the default command; .ci/run runs it with the other slow tests (-m slow).
pytestmark = [pytest.mark.soak, pytest.mark.slow]

#: okx: REST + WebSocket; kucoin: a bootstrap request before its WebSocket; binance: ping frames.
EXCHANGES = ("okx", "kucoin", "binance")
DROPPING = "okx"
WARM_UP = 30
SCRAPES = 240
#: Objects that may differ between two censuses without anything leaking.
SLACK = 4
#: The dial leak (branch `dial` fixes it): an SSLContext and an SSLObject subclass per dial.


def _is_mpnet_collector(kind: type) -> bool:
    module = kind.__dict__.get("__module__")
    return isinstance(module, str) and module.startswith("mpnet.") and "Collector" in kind.__name__


#: What a leak on these paths would leave behind, by name: a test of an object's type (never of
#: the object itself, which may be a dead weak proxy).
KINDS: dict[str, Callable[[type], bool]] = {
    "asyncio.Task": lambda k: issubclass(k, asyncio.Task),
    "aiohttp.ClientSession": lambda k: issubclass(k, aiohttp.ClientSession),
    "aiohttp.BaseConnector": lambda k: issubclass(k, aiohttp.BaseConnector),
    "prometheus registry": lambda k: issubclass(k, CollectorRegistry),
    "prometheus metric family": lambda k: issubclass(k, Metric),
    "mpnet collector": _is_mpnet_collector,
    "WebSocketWrapper": lambda k: issubclass(k, WebSocketWrapper),
    "web.WebSocketResponse (lab)": lambda k: issubclass(k, web.WebSocketResponse),
    "asyncio.StreamWriter": lambda k: issubclass(k, asyncio.StreamWriter),
    "asyncio.BaseTransport": lambda k: issubclass(k, asyncio.BaseTransport),
    "socket.socket": lambda k: issubclass(k, socket.socket),
    "ProbeReport": lambda k: issubclass(k, ProbeReport),
    "Attempt": lambda k: issubclass(k, Attempt),
    "Gap": lambda k: issubclass(k, Gap),
}
WATCH_KINDS = {name: test for name, test in KINDS.items() if name != "Gap"}
SSL_KINDS: dict[str, Callable[[type], bool]] = {
    "ssl.SSLContext": lambda k: issubclass(k, ssl.SSLContext),
    "ssl.SSLObject": lambda k: issubclass(k, ssl.SSLObject),
    "type": lambda k: issubclass(k, type),
}


async def census(kinds: dict[str, Callable[[type], bool]] = KINDS) -> Counter[str]:
    """Counts of each kind among live objects, once the loop has settled and garbage is gone."""
    for _ in range(3):
        # Closing transports finish on the next loop iterations.
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    gc.collect()
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        for name, test in kinds.items():
            if test(kind):
                counts[name] += 1
    counts["asyncio.all_tasks()"] = len(asyncio.all_tasks())
    return counts


def grown(before: Counter[str], after: Counter[str], *, slack: int = SLACK) -> dict[str, int]:
    """Kinds whose count grew by more than ``slack``, with their growth."""
    return {k: after[k] - before[k] for k in after if after[k] - before[k] > slack}


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    profiles = [load_profiles((), env={}).get(name) for name in EXCHANGES]
    # okx's simulator closes every WebSocket after 3 data messages. (Not binance: aiohttp 3.14
    # re-arms a closing server WebSocket's heartbeat, which then holds it until it fires.)
    async with Lab(
        profiles, tls=True, faults={DROPPING: "drop_after:3"}, data_interval=0.01
    ) as running:
        yield running


# -- the exporter's request path ----------------------------------------------------------------


@dataclass
class Exporter:
    base: str
    runner: web.AppRunner


@pytest.fixture
async def exporter(lab: Lab) -> AsyncIterator[Exporter]:
    served = ProbeExporter(
        lab.profiles(),
        config=ConfigFile(),
        options=lab_network_options(NetworkOptions(), lab.ca_file),
        env={},
        timeout=5,
    )
    runner = make_runner(build_app(served, max_probes=4, max_waiting=8))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Exporter(base=f"http://127.0.0.1:{port}/", runner=runner)
    finally:
        await runner.cleanup()


async def scrape(base: str, count: int, *, concurrency: int = 8) -> Counter[str]:
    """``count`` scrapes of /probe (both targets), ``concurrency`` at a time, round-robin over
    the exchanges, on a client session closed at the end; the outcome of each (``ok``, or what
    went wrong)."""
    outcomes: Counter[str] = Counter()
    turns = iter(range(count))

    async def scraper(session: aiohttp.ClientSession) -> None:
        for turn in turns:
            name = EXCHANGES[turn % len(EXCHANGES)]
            async with session.get(f"{base}probe?exchange={name}") as response:
                body = await response.text()
            if response.status != 200:
                outcomes[f"HTTP {response.status}"] += 1
            elif f'mpnet_probe_success{{exchange="{name}",target="rest"}} 1.0' not in body:
                outcomes["REST probe failed"] += 1
            else:
                outcomes["ok"] += 1

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(scraper(session) for _ in range(concurrency)))
    return outcomes


async def test_scrapes_leave_no_objects_behind(exporter: Exporter) -> None:
    await scrape(exporter.base, WARM_UP)
    before = await census()
    outcomes = await scrape(exporter.base, SCRAPES)
    after = await census()
    assert outcomes == Counter(ok=SCRAPES)
    assert grown(before, after) == {}


async def test_scrapes_leave_no_ssl_objects_behind(exporter: Exporter) -> None:
    await scrape(exporter.base, WARM_UP)
    before = await census(SSL_KINDS)
    await scrape(exporter.base, SCRAPES // 2)
    after = await census(SSL_KINDS)
    assert grown(before, after) == {}


async def test_a_scrape_builds_no_class(exporter: Exporter) -> None:
    """A class built per scrape is cyclic garbage that waits for a full collection: under load
    the resident set climbs between collections. Counted with the collector off."""
    await scrape(exporter.base, WARM_UP)
    gc.collect()
    gc.disable()
    try:
        before = _classes()
        await scrape(exporter.base, SCRAPES // 2)
        after = _classes()
    finally:
        gc.enable()
    new = {n: c for n, c in (after - before).items() if not n.endswith("CapturingSSLObject")}
    assert new == {}


def _classes() -> Counter[str]:
    return Counter(t.__qualname__ for t in gc.get_objects() if issubclass(type(t), type))


# -- the library ----------------------------------------------------------------------------------


def _lab_urls(lab: Lab) -> tuple[str, str]:
    rest, ws = lab.urls()["okx"]
    assert rest is not None and ws is not None
    return rest, ws


async def _repeat(times: int, call: Callable[[], Any]) -> list[Any]:
    return [await call() for _ in range(times)]


async def test_test_connectivity_loop_stays_flat(lab: Lab) -> None:
    rest, _ = _lab_urls(lab)
    async with NetworkConnectionManager(config=ConfigFile(), env={}) as nm:

        async def once() -> bool:
            result = await nm.test_connectivity(rest, connection_type="http", ca_bundle=lab.ca_file)
            return result.success

        await _repeat(WARM_UP, once)
        before = await census()
        results = await _repeat(SCRAPES, once)
        after = await census()
    assert results == [True] * SCRAPES
    assert grown(before, after) == {}


async def test_websockets_opened_and_closed_are_not_kept(lab: Lab) -> None:
    """The manager lists the latest ENDED_HISTORY ended connections and only counts the
    others: a closed WebSocket (and everything its connection held) can be freed."""
    _, ws_url = _lab_urls(lab)
    calls = ENDED_HISTORY + 60
    async with NetworkConnectionManager(config=ConfigFile(), env={}) as nm:

        async def once() -> None:
            ws = await nm.create_websocket_connection(ws_url, ca_bundle=lab.ca_file)
            await ws.close()

        await _repeat(WARM_UP, once)
        before = await census()
        await _repeat(calls, once)
        after = await census()
        kept = await nm.create_websocket_connection(ws_url, ca_bundle=lab.ca_file)
        stats = nm.get_network_stats()
    assert grown(before, after) == {}
    assert kept.closed  # closed by leaving the manager
    overview = stats.overview
    assert overview.total_connections == WARM_UP + calls + 1
    assert (overview.active_connections, overview.failed_connections) == (1, 0)
    entries = stats.connections
    assert len(entries) == ENDED_HISTORY + 1
    assert [e.state for e in entries] == ["closed"] * ENDED_HISTORY + ["open"]
    assert [e.id for e in entries] == sorted(e.id for e in entries)


# -- reconnecting feeds and watch -----------------------------------------------------------------


async def _no_wait(_delay: float) -> None:
    await asyncio.sleep(0)


async def test_reconnecting_websocket_keeps_bounded_gaps(lab: Lab) -> None:
    """The simulator closes every connection after 3 data messages: each reconnect is a new
    connection, and the old one must be freed."""
    url = lab.urls()[DROPPING][1]
    assert url is not None
    decision_proxy, decision_tls = NetworkConnectionManager(config=ConfigFile(), env={}).decide(
        url, ca_bundle=lab.ca_file
    )

    async def connect() -> WebSocketWrapper:
        return await WebSocketWrapper.connect(
            url, proxy=decision_proxy, tls=decision_tls, timeout=5
        )

    subscribe = lab.profile(DROPPING).websocket
    assert subscribe is not None
    rws = ReconnectingWebSocket(connect, initial_delay=0.0, sleep=_no_wait)
    reconnects = GAP_HISTORY + 60

    async def read_until(wanted: int) -> None:
        while rws.reconnects < wanted:
            await rws.recv()

    async with rws:
        await rws.subscribe(*subscribe.subscribe)
        # Past GAP_HISTORY first: up to there the gaps are meant to pile up.
        await read_until(GAP_HISTORY + 5)
        before = await census()
        await read_until(reconnects)
        after = await census()
    assert grown(before, after) == {}
    assert rws.gap_count == rws.reconnects == reconnects
    assert len(rws.gaps) == GAP_HISTORY
    assert all(gap.end is not None for gap in rws.gaps)


async def test_watch_cycles_stay_flat(lab: Lab) -> None:
    """REST attempts each cycle and long-lived feeds, one of which (okx) reconnects all the
    time; the runner's sleep between cycles only paces."""
    plan = build_plan(
        lab.profiles(),
        config=ConfigFile(),
        options=lab_network_options(NetworkOptions(), lab.ca_file),
        env={},
        timeout=5,
    )
    state = WatchState([(t.profile.name, t.target) for t in plan.targets])

    async def pace(_delay: float) -> None:
        # Real time for data to flow between cycles, without waiting for the interval.
        await asyncio.sleep(0.02)

    async with WatchRunner(plan, state, reconnect_delay=0.0, sleep=pace) as runner:
        await runner.run(interval=0.0, count=WARM_UP)
        # Gaps pile up to GAP_HISTORY by design (the reconnecting test goes past it).
        before = await census(WATCH_KINDS)
        await runner.run(interval=0.0, count=WARM_UP + SCRAPES // 2)
        after = await census(WATCH_KINDS)
        feeds = [feed for feed in runner.feeds if feed is not None]
        reconnects = [feed._rws.reconnects for feed in feeds]
    assert grown(before, after) == {}
    assert max(reconnects) > 10  # okx's feed did reconnect all along
    rows = state.rows()
    assert all(row.window <= 100 for row in rows)
