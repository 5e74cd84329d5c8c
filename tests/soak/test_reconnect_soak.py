"""Fault soak: a ReconnectingWebSocket fed by a lab exchange through repeated failures.

1. The exchange's server is stopped and started again on the same port 20 times while the client
   iterates messages.
2. The client goes through a relay in front of a real proxy (pproxy) that cuts a seeded random
   choice of tunnels after a random number of bytes: in the proxy handshake, the TLS handshake,
   the upgrade or the data stream.

Each soak checks the same invariants: every outage recovered, the subscription replayed (and
acknowledged first) on every new connection, one closed gap per outage, no exception left to
the event loop, no task and no file descriptor left behind. Randomness is seeded; nothing is
timed and nothing sleeps to synchronise (the client's injected ``sleep`` is where the first soak
decides when the server comes back).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import os
import random
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from fixtures_servers import ProxyProcess, direct_decision, proxy_decision, start_pproxy
from mpnet.config.model import Profile
from mpnet.config.profiles import load_profiles
from mpnet.core.match import fill_placeholders, matches
from mpnet.core.proxy import ProxyDecision
from mpnet.core.tls import TLSDecision
from mpnet.errors import ConnectError, ProbeError, ProtocolError, ProxyError, TLSError
from mpnet.lab import Lab
from mpnet.net.ws import ReconnectingWebSocket, WebSocketWrapper

# Deselected by the default command; .ci/run runs it with the other slow tests (-m slow).
pytestmark = [pytest.mark.soak, pytest.mark.slow]

EXCHANGE = "deribit"
BACKENDS = ["websockets", "aiohttp"]
RESTARTS = 20
#: Data messages read on a connection before its server is stopped.
DATA_PER_CONNECTION = 3
DATA_THROUGH_RELAY = 300
#: Hang guard only (a hung soak fails instead of blocking CI); nothing asserts on time.
SOAK_LIMIT = 60.0


# -- leak accounting ----------------------------------------------------------------------------


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


async def settled(condition: Callable[[], bool], *, limit: float = 5.0) -> bool:
    """Poll ``condition`` (collecting garbage between polls) until it holds or ``limit`` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        gc.collect()
        if condition():
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.01)


@dataclass
class LeakWatch:
    """Tasks, descriptors and loop-level exceptions, from before the soak to after it."""

    tasks: set[asyncio.Task[Any]]
    descriptors: int
    loop_errors: list[dict[str, Any]] = field(default_factory=list)

    def new_tasks(self) -> set[asyncio.Task[Any]]:
        return asyncio.all_tasks() - self.tasks

    async def assert_clean(self) -> None:
        await settled(lambda: not self.new_tasks() and open_descriptors() <= self.descriptors)
        assert self.loop_errors == []
        assert self.new_tasks() == set()
        assert open_descriptors() <= self.descriptors


@contextlib.asynccontextmanager
async def leak_watch() -> AsyncIterator[LeakWatch]:
    loop = asyncio.get_running_loop()
    gc.collect()
    watch = LeakWatch(tasks=asyncio.all_tasks(), descriptors=open_descriptors())
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: watch.loop_errors.append(context))
    try:
        yield watch
    finally:
        loop.set_exception_handler(previous)


# -- the client ---------------------------------------------------------------------------------


def lab_tls(lab: Lab) -> TLSDecision:
    assert lab.ca_file is not None
    return TLSDecision(
        verify=True, ca=lab.ca_file, ca_kind="file", layer="cli", reason="--ca-bundle"
    )


@dataclass
class CountingFactory:
    """Opens connections as :meth:`WebSocketWrapper.connect` does; keeps every outcome."""

    url: str
    proxy: ProxyDecision
    tls: TLSDecision
    backend: str
    opened: list[WebSocketWrapper] = field(default_factory=list)
    failures: list[ProbeError] = field(default_factory=list)

    async def __call__(self) -> WebSocketWrapper:
        try:
            ws = await WebSocketWrapper.connect(
                self.url, proxy=self.proxy, tls=self.tls, timeout=5, backend=self.backend
            )
        except ProbeError as exc:
            self.failures.append(exc)
            raise
        self.opened.append(ws)
        return ws


@dataclass
class Feed:
    """What the client read, per connection, classified by the profile's patterns.

    Keyed by ``id()``: the factory keeps every connection alive, so no id is reused.
    """

    profile: Profile
    by_connection: dict[int, list[str]] = field(default_factory=dict)
    data: int = 0

    def record(self, connection: WebSocketWrapper | None, message: str | bytes) -> str:
        assert connection is not None
        spec = self.profile.websocket
        assert spec is not None
        decoded = json.loads(message)
        if matches(spec.ack_match, decoded):
            kind = "ack"
        elif matches(spec.data_match, decoded):
            kind = "data"
            self.data += 1
        else:
            kind = "other"
        self.by_connection.setdefault(id(connection), []).append(kind)
        return kind

    def kinds(self, connections: list[WebSocketWrapper]) -> list[list[str]]:
        return [self.by_connection.get(id(ws), []) for ws in connections]


def subscriptions(profile: Profile) -> list[Any]:
    assert profile.websocket is not None
    return [fill_placeholders(message) for message in profile.websocket.subscribe]


def assert_recovered(rws: ReconnectingWebSocket, factory: CountingFactory) -> None:
    """Every disconnect is one gap, closed (data resumed) by exactly one successful reconnect
    before the next disconnect."""
    assert len(rws.gaps) == rws.reconnects
    assert all(gap.end is not None and gap.end > gap.start for gap in rws.gaps)
    assert all(a.end is not None and a.end <= b.start for a, b in itertools.pairwise(rws.gaps))
    # A connection that opened but lost its subscription send counts as a failed attempt.
    assert rws.reconnects + 1 <= len(factory.opened)


# -- 1. the server restarts ---------------------------------------------------------------------


class Restarts:
    """Stops the lab exchange on demand; the client's backoff sleeps bring it back.

    Each outage has a seeded number of refused attempts: the server comes back during the
    client's sleep before attempt ``refused + 1``. Real (short) backoff sleeps happen too.
    Every sleep first waits for the stop to finish, so no attempt reaches the server while it is
    going away: each restart is exactly one disconnect and one reconnect.
    """

    def __init__(self, lab: Lab, rng: random.Random) -> None:
        self.lab = lab
        self.rng = rng
        self.planned_refusals: list[int] = []
        self.sleeps: list[float] = []
        self._stopping: asyncio.Task[None] | None = None
        self._sleeps_this_outage = 0

    def begin(self) -> None:
        self.planned_refusals.append(self.rng.randint(0, 2))
        self._sleeps_this_outage = 0
        self._stopping = asyncio.create_task(self.lab.stop_exchange(EXCHANGE))

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self._sleeps_this_outage += 1
        if self._stopping is not None:
            await self._stopping
            self._stopping = None
        if self._sleeps_this_outage > self.planned_refusals[-1]:
            await self.lab.start_exchange(EXCHANGE)
        await asyncio.sleep(delay)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_survives_twenty_server_restarts(backend: str) -> None:
    rng = random.Random(20260611)
    async with leak_watch() as watch:
        async with Lab([load_profiles().get(EXCHANGE)], data_interval=0.002) as lab:
            profile = lab.profile(EXCHANGE)
            assert profile.websocket is not None
            restarts = Restarts(lab, rng)
            factory = CountingFactory(
                profile.websocket.url, direct_decision(), lab_tls(lab), backend
            )
            rws = ReconnectingWebSocket(
                factory,
                initial_delay=0.005,
                max_delay=0.02,
                random=rng.random,
                sleep=restarts.sleep,
            )
            feed = Feed(profile)
            stopped_for: set[int] = set()
            async with asyncio.timeout(SOAK_LIMIT), rws:
                await rws.subscribe(*subscriptions(profile))
                async for message in rws:
                    connection = rws.connection
                    feed.record(connection, message)
                    kinds = feed.by_connection[id(connection)]
                    if kinds.count("data") < DATA_PER_CONNECTION or id(connection) in stopped_for:
                        continue
                    if len(restarts.planned_refusals) == RESTARTS:
                        break
                    stopped_for.add(id(connection))
                    restarts.begin()
            connections_seen = lab.connections(EXCHANGE)
        assert rws.closed and rws.connection is None

        assert len(restarts.planned_refusals) == RESTARTS
        assert rws.reconnects == RESTARTS
        assert_recovered(rws, factory)
        assert len(factory.opened) == RESTARTS + 1
        # The server saw each connection, and on each one the subscription came first: its ack
        # is the first message, and data followed.
        assert connections_seen == RESTARTS + 1
        for kinds in feed.kinds(factory.opened):
            assert kinds[0] == "ack" and kinds.count("ack") == 1
            assert kinds.count("data") >= DATA_PER_CONNECTION
        # Exactly the planned refused attempts, each one a refused TCP connection, and one
        # backoff sleep before every attempt after a disconnect.
        refusals = sum(restarts.planned_refusals)
        assert len(factory.failures) == refusals
        assert all(isinstance(e, ConnectError) and e.kind == "refused" for e in factory.failures)
        assert len(restarts.sleeps) == RESTARTS + refusals
        await watch.assert_clean()


# -- 2. a proxy path that drops tunnels ---------------------------------------------------------


class DroppingRelay:
    """A TCP forwarder on 127.0.0.1 in front of a proxy that cuts every tunnel (a seeded choice
    of reset or close) after a seeded random number of bytes, counted over both directions.

    ``max_bytes`` a few times the size of the handshakes puts some cuts inside the proxy, TLS or
    upgrade handshake and the others in the data stream.
    """

    def __init__(self, upstream_port: int, rng: random.Random, *, max_bytes: int) -> None:
        self.upstream_port = upstream_port
        self.rng = rng
        self.max_bytes = max_bytes
        self.port = 0
        self.tunnels = 0
        self.cut = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._tunnel, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _tunnel(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.tunnels += 1
        # A quarter of the cuts land in the first bytes: the proxy handshake, or TLS's start.
        early = self.rng.random() < 0.25
        budget = self.rng.randint(0, 300 if early else self.max_bytes)
        reset = self.rng.random() < 0.5
        writers = [client_writer]
        self._writers.add(client_writer)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.upstream_port
            )
            writers.append(upstream_writer)
            self._writers.add(upstream_writer)
            left: list[int | None] = [budget]
            pipes = [
                asyncio.create_task(self._pipe(client_reader, upstream_writer, left)),
                asyncio.create_task(self._pipe(upstream_reader, client_writer, left)),
            ]
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
            if left[0] == 0:
                self.cut += 1
        except OSError:
            pass
        finally:
            for writer in writers:
                self._writers.discard(writer)
                if reset:
                    writer.transport.abort()
                else:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
            self._handlers.discard(task)

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, left: list[int | None]
    ) -> None:
        with contextlib.suppress(OSError):
            while chunk := await reader.read(65536):
                if left[0] is not None:
                    chunk = chunk[: left[0]]
                    left[0] -= len(chunk)
                writer.write(chunk)
                await writer.drain()
                if left[0] == 0:
                    return


@pytest.fixture(scope="module")
def pproxy_urls() -> Iterator[dict[str, str]]:
    process: ProxyProcess = start_pproxy({"http": "http", "socks5": "socks5"})
    try:
        yield process.urls
    finally:
        process.stop()


@pytest.mark.parametrize(
    ("backend", "listener", "scheme"),
    [
        ("websockets", "http", "http"),
        ("websockets", "socks5", "socks5h"),
        ("aiohttp", "http", "http"),
        ("aiohttp", "socks5", "socks5h"),
    ],
)
async def test_survives_a_proxy_that_drops_tunnels(
    pproxy_urls: dict[str, str], backend: str, listener: str, scheme: str
) -> None:
    rng = random.Random(8_675_309)
    upstream_port = int(pproxy_urls[listener].rsplit(":", 1)[1])
    async with leak_watch() as watch:
        relay = DroppingRelay(upstream_port, rng, max_bytes=16_000)
        await relay.start()
        try:
            async with Lab([load_profiles().get(EXCHANGE)], data_interval=0.002) as lab:
                profile = lab.profile(EXCHANGE)
                assert profile.websocket is not None
                factory = CountingFactory(
                    profile.websocket.url,
                    proxy_decision(f"{scheme}://127.0.0.1:{relay.port}"),
                    lab_tls(lab),
                    backend,
                )
                sleeps: list[float] = []

                async def backoff(delay: float) -> None:
                    sleeps.append(delay)
                    await asyncio.sleep(delay)

                rws = ReconnectingWebSocket(
                    factory,
                    initial_delay=0.002,
                    max_delay=0.01,
                    random=rng.random,
                    sleep=backoff,
                )
                feed = Feed(profile)
                async with asyncio.timeout(SOAK_LIMIT), rws:
                    await rws.subscribe(*subscriptions(profile))
                    async for message in rws:
                        feed.record(rws.connection, message)
                        if feed.data == DATA_THROUGH_RELAY:
                            break
                connections_seen = lab.connections(EXCHANGE)
        finally:
            await relay.close()
        assert rws.closed and rws.connection is None

        # The relay did cut tunnels, and some of the cuts hit open WebSockets.
        assert relay.cut > 0
        assert rws.reconnects > 0
        assert_recovered(rws, factory)
        attempts = len(factory.opened) + len(factory.failures)
        assert len(sleeps) == attempts - 1
        assert connections_seen >= len(factory.opened)
        # Every connection that carried anything (some were cut before the ack came back)
        # started with the ack of its own subscription.
        carried = [kinds for kinds in feed.kinds(factory.opened) if kinds]
        assert len(carried) > 1
        for kinds in carried:
            assert kinds[0] == "ack" and kinds.count("ack") == 1
            assert "other" not in kinds
        # Cuts in each handshake, each reported as a cut in that phase. (With no credentials a
        # SOCKS5 proxy that closes after the greeting reads as "wants credentials", which is
        # what pproxy does when it does want them: dial cannot tell the two apart.)
        by_phase = {str(e.phase) for e in factory.failures}
        assert by_phase == {"proxy", "tls", "ws_upgrade"}
        for error in factory.failures:
            if error.phase == "proxy":
                assert isinstance(error, ProxyError)
            elif error.phase == "tls":
                assert isinstance(error, TLSError) and error.kind == "handshake"
            else:
                assert isinstance(error, ProtocolError) and error.kind in ("closed", "reset")
        await watch.assert_clean()
