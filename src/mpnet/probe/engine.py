"""Run a probe plan: every target concurrently (bounded), N attempts each, then diagnose.

One attempt at a REST target: dial (dns, tcp, proxy, tls), send the profile's health request
(http), check status and JSON, then read the server's clock from the answer (or from the
profile's separate time request). One attempt at a WebSocket target: the optional bootstrap
request (KuCoin's token), dial and upgrade (ws_upgrade), subscribe and wait for the first data
message (first_message), then one application-level ping (ping_rtt), then keep reading the feed
for the plan's feed window, noting each data message's lag (:mod:`mpnet.core.clock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mpnet import __version__
from mpnet.core.address import ConnectFailure
from mpnet.core.clock import (
    SOURCE_REST,
    ClockSample,
    FeedRecord,
    sample_clock,
    unreadable_sample,
)
from mpnet.core.diagnose import diagnose
from mpnet.core.edge import Edge, edge_from_headers
from mpnet.core.match import fill_placeholders, matches
from mpnet.core.result import (
    Attempt,
    ErrorInfo,
    ProbeReport,
    ProbeResult,
    with_exchange_clocks,
)
from mpnet.errors import (
    HTTPStatusError,
    Phase,
    ProbeError,
    ProbeTimeout,
    ProtocolError,
)
from mpnet.net.dial import AddressReport, PhaseTimings, address_family, address_observer
from mpnet.probe.bootstrap import _bootstrap, _preview
from mpnet.probe.conversation import _Conversation, _ping_warning
from mpnet.probe.gcpause import collect_if_piled_up, collector_paused
from mpnet.probe.looplag import attempt_window
from mpnet.probe.pacing import RateGate
from mpnet.probe.plan import ProbePlan, ProbeTarget

if TYPE_CHECKING:
    from mpnet.net.exchange import TimedResponse
    from mpnet.probe.looplag import LoopLagMonitor

AttemptCallback = Callable[[ProbeTarget, Attempt], None]

OUTER_GRACE = 0.25
#: Attempts setting up their connection at once (DNS to the first answer: the HTTP response or
#: the WebSocket upgrade). A set-up's CPU work (the TLS handshake's crypto, parsing) runs on the
#: loop, inside every other attempt's timed span, so two set-ups at once bill each other's work
#: to their phases (docs/timing.md). Waits for the network are not limited by it: see
#: FAST_PHASE.
CONNECTING_AT_ONCE = 1
#: Seconds a phase of the set-up may last while it holds the slot. A phase still running after
#: that is waiting for the network (a loopback connect, request or upgrade answers well within
#: it), so holding the others back would only slow the run: the slot passes on, and the rare
#: overlap that follows is measured as loop lag like any other.
FAST_PHASE = 0.002
#: The same for a TLS handshake (or a proxy's, which may include one), whose own crypto and the
#: server's take 1 to 4 ms even on loopback. The larger of the two applies.
FAST_HANDSHAKE = 0.005
#: Phases that are handshakes, for FAST_HANDSHAKE.
_HANDSHAKE_PHASES = frozenset({"tls", "proxy"})
#: Seconds an attempt may hold its connecting slot at most, however many fast phases it has.
CONNECT_SLOT_HOLD = 0.5
#: Seconds a ping waits for a set-up slot at most before it goes without one (see _probe_ws).
PING_SLOT_WAIT = 0.05
#: Phases the engine times itself, around net/'s calls.
ENGINE_PHASES = frozenset({"bootstrap", "first_message", "ping_rtt"})
#: ``-4`` / ``-6`` (a target's ``family``) as the socket family dial() resolves with.
SOCKET_FAMILIES = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}
#: Answers whose headers name the CDN edge of the exchange (not a proxy's refusal).
EDGE_PHASES = frozenset({Phase.HTTP, Phase.WS_UPGRADE})


async def run_probes(
    plan: ProbePlan,
    *,
    on_attempt: AttemptCallback | None = None,
    gate: RateGate | None = None,
) -> ProbeReport:
    """Run every target of ``plan`` and return the diagnosed report.

    Every attempt goes through ``gate`` (a fresh one when None): paced to the profile's
    ``rate_limit`` and ``plan.interval``, and skipped, not sent, inside an exchange's 429/418 wait.

    Before the first attempt, everything that would block the loop while clocks run is done
    (imports, SSL contexts: :func:`~mpnet.net.prepare.prepare_network`), and a
    :class:`~mpnet.probe.looplag.LoopLagMonitor` runs for the whole run so that each attempt
    reports the loop lag its figures may include. Python's cyclic garbage collector is paused
    while the attempts run (:mod:`mpnet.probe.gcpause`).

    Cancelling the task (Ctrl-C in the CLI) stops all probes at once and returns what has been
    collected so far, with ``interrupted`` set.

    Raises:
        ConfigError: a CA bundle of the plan cannot be loaded (before any attempt).
    """
    from mpnet.net.prepare import prepare_network
    from mpnet.probe.looplag import acquire_shared_monitor, release_shared_monitor

    prepare_network(t.tls for t in plan.targets)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    # Each route is its own set of targets, with its own budgets: ``concurrency`` attempts in
    # flight and CONNECTING_AT_ONCE connection set-ups per route, so that comparing routes makes
    # none of them wait for the others (bench/probe_bench.py). The extra set-ups at once cost
    # loop lag (the lab over two routes: median 29 to 41 ms against 21 to 29 ms with 4 for
    # all, for 10 to 25 % less wall time), which every attempt measures and reports.
    budgets: dict[str | None, tuple[asyncio.Semaphore, asyncio.Semaphore]] = {}
    for target in plan.targets:
        budgets.setdefault(
            target.route.name if target.route is not None else None,
            (
                asyncio.Semaphore(plan.concurrency),
                asyncio.Semaphore(min(plan.concurrency, CONNECTING_AT_ONCE)),
            ),
        )
    monitor = acquire_shared_monitor()
    collected: list[list[Attempt]] = [[] for _ in plan.targets]
    gate = gate if gate is not None else RateGate()

    async def run_target(index: int, target: ProbeTarget) -> None:
        semaphore, connecting = budgets[target.route.name if target.route is not None else None]
        for _ in range(plan.count):
            attempt = await gate.attempt(
                target,
                lambda: run_attempt(
                    target,
                    plan.timeout,
                    monitor=monitor,
                    connecting=connecting,
                    feed_window=plan.feed_window,
                ),
                interval=plan.interval,
                semaphore=semaphore,
            )
            collected[index].append(attempt)
            if on_attempt is not None:
                on_attempt(target, attempt)
            collect_if_piled_up()

    tasks = [asyncio.create_task(run_target(i, t)) for i, t in enumerate(plan.targets)]
    interrupted = False
    # A collection is a stall for every attempt waiting meanwhile (probe/gcpause.py).
    with collector_paused():
        try:
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            interrupted = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            release_shared_monitor(monitor)
    results = [
        ProbeResult(
            exchange=t.profile.name,
            target=t.target,
            url=t.url,
            attempts=tuple(collected[i]),
            proxy=t.proxy,
            ssl=t.tls,
            route=t.route.name if t.route is not None else None,
        )
        for i, t in enumerate(plan.targets)
    ]
    return ProbeReport(
        mpnet_version=__version__,
        started_at=started_at,
        # Each feed's lag is corrected by the offset its exchange showed in this run.
        results=diagnose(with_exchange_clocks(results), tolerances=plan.tolerances),
        interrupted=interrupted,
    )


async def run_attempt(
    target: ProbeTarget,
    timeout: float,
    *,
    monitor: LoopLagMonitor | None = None,
    connecting: asyncio.Semaphore | None = None,
    feed_window: float = 0.0,
) -> Attempt:
    """One attempt; never raises for a network failure (it is reported in the Attempt).

    With a running ``monitor``, the attempt's ``loop_lag_ms`` is the longest loop stall that
    overlapped the span its clocks ran; without one it is None (not measured). With
    ``connecting``, the attempt takes a slot of it before its clocks start and gives it back once
    its connection is set up (TLS done), so that only so many handshakes share the loop at once.
    Call :func:`~mpnet.net.prepare.prepare_network` for the target's TLS decision first, or the
    first attempt pays for building its SSL context.

    A WebSocket attempt keeps reading its feed for ``feed_window`` seconds after the first data
    message (within its ``timeout``), after its ping: that reading is not in its timed span.
    """
    slot = await _ConnectSlot.take(connecting, _setup_ends_with(target))
    window = None
    window_token = None
    attempt_ok = False
    family_token = address_family.set(SOCKET_FAMILIES.get(target.family or "", socket.AF_UNSPEC))
    observer_token = None
    try:
        started_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        window = monitor.open_window() if monitor is not None else None
        # Everything that works for this attempt runs in this context: its waits are its lag.
        window_token = attempt_window.set(window)
        progress = _Progress(
            timeout, on_phase_end=slot.phase_ended, on_phase_start=slot.phase_started
        )
        observer_token = address_observer.set(progress.note_addresses)
        progress.monitor = monitor
        progress.connecting = connecting
        progress.feed_window = max(0.0, feed_window)
        if monitor is not None and window is not None:
            progress.on_span_end = functools.partial(monitor.close, window)
            progress.timings.on_phase_span = window.phase
        try:
            # The inner steps get the remaining budget and name their own phase on timeout;
            # this outer guard (a little later) covers the waits between them.
            async with asyncio.timeout(timeout + OUTER_GRACE):
                if target.target == "rest":
                    attempt = await _probe_rest(target, progress)
                else:
                    attempt = await _probe_ws(target, progress)
        except TimeoutError:
            # Cut off from outside: the phase in progress is the one a net/ measurement was in
            # when it was cancelled, else the engine's own step.
            phase = progress.cut_phase()
            error = ProbeTimeout(
                f"no answer within {timeout:g} s during {phase}", phase=phase, kind="timeout"
            )
            attempt = progress.failed(error)
        except ProbeError as exc:
            attempt = progress.failed(exc)
        ended_ns = progress.span_ended_ns or time.perf_counter_ns()
        attempt_ok = attempt.ok
    finally:
        if observer_token is not None:
            address_observer.reset(observer_token)
        if window_token is not None:
            attempt_window.reset(window_token)
        address_family.reset(family_token)
        slot.release()
        if monitor is not None and window is not None:
            # Also when cancelled: a window left open would be checked at every tick.
            monitor.close(window)
            if not attempt_ok:
                # A failed attempt's phase in progress has no span: its whole span counts.
                window.phases = None
    lag = await monitor.settle(window) if monitor is not None and window is not None else None
    return replace(
        attempt,
        started_at=started_at,
        window_ns=(progress.started_ns, ended_ns),
        loop_lag_ms=lag,
    )


@contextlib.contextmanager
def forced_family(target: ProbeTarget) -> Iterator[None]:
    """Inside the block, dial() resolves only ``target.family`` (``-4`` / ``-6``), if set."""
    token = address_family.set(SOCKET_FAMILIES.get(target.family or "", socket.AF_UNSPEC))
    try:
        yield
    finally:
        address_family.reset(token)


def _setup_ends_with(target: ProbeTarget) -> str:
    """The phase that completes the set-up of ``target``: its first answer."""
    return "http" if target.target == "rest" else "ws_upgrade"


class _ConnectSlot:
    """A slot of the ``connecting`` semaphore, held from before the attempt's clocks start until
    its first answer has come, the attempt ends, one of its phases has lasted
    :data:`FAST_PHASE`, or :data:`CONNECT_SLOT_HOLD` has passed (whichever comes first: a phase
    that takes longer is waiting for the network, not using the loop, and must not hold back the
    others)."""

    def __init__(self, semaphore: asyncio.Semaphore | None, setup_ends_with: str) -> None:
        self._semaphore = semaphore
        self._setup_ends_with = setup_ends_with
        self._timer: asyncio.TimerHandle | None = None
        self._phase_timer: asyncio.TimerHandle | None = None
        if semaphore is not None:
            self._timer = asyncio.get_running_loop().call_later(CONNECT_SLOT_HOLD, self.release)
            # The attempt's first step starts now, measured or not (KuCoin's bootstrap request
            # is timed by the engine, not through a measure block).
            self._arm(FAST_PHASE)

    @classmethod
    async def take(
        cls,
        semaphore: asyncio.Semaphore | None,
        setup_ends_with: str,
        *,
        within: float | None = None,
    ) -> _ConnectSlot:
        """Wait for a slot; with ``within``, at most that many seconds, after which the caller
        goes on without one (a slot that does not come means a busy loop, which the loop-lag
        monitor measures, not a reason to fail)."""
        if semaphore is not None:
            if within is None:
                await semaphore.acquire()
            else:
                try:
                    async with asyncio.timeout(within):
                        await semaphore.acquire()
                except TimeoutError:
                    return cls(None, setup_ends_with)
        return cls(semaphore, setup_ends_with)

    def phase_started(self, phase: str) -> None:
        """A phase starts: it has :data:`FAST_PHASE` (a handshake :data:`FAST_HANDSHAKE`) to
        end before the slot passes on."""
        handshake = phase in _HANDSHAKE_PHASES
        self._arm(max(FAST_PHASE, FAST_HANDSHAKE) if handshake else FAST_PHASE)

    def phase_ended(self, phase: str) -> None:
        """A phase has its figure: the set-up is done, or its next step starts now (the HTTP
        exchange is timed without a ``measure`` block, so its start is the previous end)."""
        if phase == self._setup_ends_with:
            self.release()
        else:
            self._arm(FAST_PHASE)

    def _arm(self, limit: float) -> None:
        """The step starting now has ``limit`` seconds before the slot passes on."""
        if self._semaphore is None:
            return
        if self._phase_timer is not None:
            self._phase_timer.cancel()
        self._phase_timer = asyncio.get_running_loop().call_later(limit, self.release)

    def release(self) -> None:
        semaphore, self._semaphore = self._semaphore, None
        for timer in (self._timer, self._phase_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._phase_timer = None
        if semaphore is not None:
            semaphore.release()


class _TrackedTimings(PhaseTimings):
    """PhaseTimings that remember which measurement was cut off (left by an exception), so an
    outer timeout can name the phase net/ was in, and report each phase as it starts and as its
    figure is set (by ``measure`` or directly, as the HTTP exchange does). ``to_dict`` is
    unchanged."""

    def __init__(
        self,
        on_phase_end: Callable[[str], None] | None = None,
        on_phase_start: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.cut: str | None = None
        self._on_phase_end = on_phase_end
        self._on_phase_start = on_phase_start
        #: ``(start_ns, end_ns)`` of each phase as its figure is set (the loop-lag window's).
        self.on_phase_span: Callable[[int, int], None] | None = None
        #: ``(phase, started_ns)`` of the measure block running now: it reports its own span.
        self._measuring: tuple[str, int] | None = None

    def __setattr__(self, name: str, value: object) -> None:
        super().__setattr__(name, value)
        if value is not None and name in _PHASE_FIELDS:
            on_phase_span = getattr(self, "on_phase_span", None)
            if on_phase_span is not None and isinstance(value, float | int):
                ended = time.perf_counter_ns()
                measuring = self._measuring
                if measuring is not None and measuring[0] == name:
                    on_phase_span(measuring[1], ended)
                else:
                    # Set directly the moment the phase ends (the HTTP exchange, at the first
                    # byte): it ran for its figure up to now.
                    on_phase_span(ended - round(value * 1e6), ended)
            on_phase_end = getattr(self, "_on_phase_end", None)
            if on_phase_end is not None:
                on_phase_end(name)

    @contextlib.contextmanager
    def measure(self, phase: Phase | str) -> Iterator[None]:
        name = str(phase)
        self.cut = name
        if self._on_phase_start is not None:
            self._on_phase_start(name)
        self._measuring = (name, time.perf_counter_ns())
        try:
            with PhaseTimings.measure(self, phase):
                yield
        finally:
            self._measuring = None
        # Reached only when the body ended normally.
        self.cut = None


_PHASE_FIELDS = frozenset(f.name for f in dataclasses.fields(PhaseTimings))


class _Progress:
    """What an attempt has measured so far, so a failure can still report earlier phases."""

    def __init__(
        self,
        timeout: float,
        *,
        on_phase_end: Callable[[str], None] | None = None,
        on_phase_start: Callable[[str], None] | None = None,
    ) -> None:
        self.started_ns = time.perf_counter_ns()
        self.deadline = time.monotonic() + timeout
        self.phase: Phase = Phase.DNS
        self.phases: dict[str, float] = {}
        # Handed to net/ (dial, the HTTP request, the WebSocket connect), filled as they go.
        self.timings = _TrackedTimings(on_phase_end, on_phase_start)
        self.status: int | None = None
        self.server_date: str | None = None
        self.local_time: float | None = None
        self.addresses: tuple[str, ...] = ()
        self.address: str | None = None
        self.tls: Any = None
        self.tcp_rtt_kernel_ms: float | None = None
        # The last message that did not match, kept as evidence when the data never comes.
        self.last_unmatched: str | None = None
        # The CDN edge of the REST answer or the upgrade answer, once one arrived.
        self.edge: Edge | None = None
        self.connect_failures: tuple[ConnectFailure, ...] = ()
        # The server's clock, read from the answer or the pong; the feed read after the ping.
        self.clock: ClockSample | None = None
        self.feed: FeedRecord | None = None
        self.feed_window = 0.0
        self.monitor: LoopLagMonitor | None = None
        # The route's set-up slots: the ping's round trip takes one too (see _probe_ws).
        self.connecting: asyncio.Semaphore | None = None
        # The attempt's timed span ends before the feed window (its reading is not a phase).
        self.on_span_end: Callable[[], None] | None = None
        self.span_ended_ns: int | None = None

    def note_addresses(self, report: AddressReport) -> None:
        """What dial()'s DNS and TCP phases found (also when the connection failed)."""
        self.addresses = report.addresses
        self.address = report.address
        self.connect_failures = tuple(ConnectFailure(a, why) for a, why in report.failures)

    def side_timings(self) -> _TrackedTimings:
        """Timings for a request the attempt makes on the side (KuCoin's bootstrap): its steps
        (DNS, TCP, TLS, HTTP) reach the set-up slot as the attempt's own phases do, so the slot
        passes on when one of them waits, not after :data:`FAST_PHASE` of the whole request; their
        figures stay out of the attempt's phases and its lag window (the request's whole span is
        its phase)."""
        return _TrackedTimings(self.timings._on_phase_end, self.timings._on_phase_start)

    def timed(self, phase: str, ms: float, started_ns: int) -> None:
        """One of the engine's own phases (bootstrap, first_message, ping_rtt) has its figure:
        ``ms``, timed inside the span from ``started_ns`` to now (the span the loop-lag window
        counts for it)."""
        self.phases[phase] = ms
        if self.timings.on_phase_span is not None:
            self.timings.on_phase_span(started_ns, time.perf_counter_ns())

    def end_span(self) -> None:
        """End the attempt's timed span now (its loop-lag window closes with it)."""
        if self.span_ended_ns is not None:
            return
        self.span_ended_ns = time.perf_counter_ns()
        if self.on_span_end is not None:
            self.on_span_end()

    def remaining(self) -> float:
        """Seconds left of the attempt's budget (at least a sliver, so the callee times out)."""
        return max(0.001, self.deadline - time.monotonic())

    def absorb(self, timings: Any, peer: Any) -> None:
        self.phases.update(timings.to_dict())
        if peer is not None:
            self.addresses = tuple(peer.addresses)
            self.address = peer.address
            self.tls = peer.tls
            # PeerInfo.tcp_rtt_kernel_ms comes with branch dial; absent before it.
            self.tcp_rtt_kernel_ms = getattr(peer, "tcp_rtt_kernel_ms", None)

    def merge_timings(self) -> None:
        """Add the connection phases net/ measured in this attempt's timings."""
        self.merge_phases(self.timings.to_dict())

    def merge_phases(self, phases: Mapping[str, float]) -> None:
        """Add connection phases net/ measured before a failure (the engine times
        ``bootstrap``, ``first_message`` and ``ping_rtt`` itself: the WebSocket wrapper's own
        ``first_message`` is its first message of any kind, not the first data message)."""
        for name, value in phases.items():
            if name not in ENGINE_PHASES:
                self.phases.setdefault(name, value)

    def cut_phase(self) -> Phase:
        """The phase in progress when the attempt was cut off from outside."""
        cut = self.timings.cut
        return Phase(cut) if cut is not None else self.phase

    def keep_stuck_phase(self, phase: Phase) -> None:
        """Give the phase a timeout cut off the time spent in it so far.

        net/ records a measured phase even when it is cut off; when it did not (the HTTP wait,
        the engine's own steps), the phase gets the attempt's time not accounted for by the
        phases before it (they ran one after the other, so the rest is the stuck phase's).
        """
        self.merge_timings()
        name = str(phase)
        if name in self.phases:
            return
        elapsed = (time.perf_counter_ns() - self.started_ns) / 1e6
        self.phases[name] = max(0.0, elapsed - sum(self.phases.values()))

    def failed(self, error: ProbeError) -> Attempt:
        if isinstance(error, ProbeTimeout):
            self.keep_stuck_phase(error.phase)
        else:
            self.merge_timings()
        # A data message that never came: the last message that did not match is the answer.
        unmatched = self.last_unmatched if error.phase is Phase.FIRST_MESSAGE else None
        info = ErrorInfo.from_error(error, body=unmatched)
        status = info.status
        headers = info.headers
        edge = self.edge
        if edge is None and headers and error.phase in EDGE_PHASES:
            edge = edge_from_headers(dict(headers))
        return Attempt(
            ok=False,
            phases=dict(self.phases),
            error=info,
            status=status if status is not None else self.status,
            server_date=self.server_date or _header(headers, "date"),
            local_time=self.local_time,
            addresses=self.addresses,
            address=self.address,
            tls=self.tls,
            tcp_rtt_kernel_ms=self.tcp_rtt_kernel_ms,
            edge=edge,
            connect_failures=self.connect_failures,
            clock=self.clock,
            feed=self.feed,
        )

    def succeeded(self) -> Attempt:
        return Attempt(
            ok=True,
            phases=dict(self.phases),
            status=self.status,
            server_date=self.server_date,
            local_time=self.local_time,
            addresses=self.addresses,
            address=self.address,
            tls=self.tls,
            tcp_rtt_kernel_ms=self.tcp_rtt_kernel_ms,
            edge=self.edge,
            connect_failures=self.connect_failures,
            clock=self.clock,
            feed=self.feed,
        )


def _header(headers: Any, name: str) -> str | None:
    for key, value in dict(headers).items():
        if key.lower() == name:
            return str(value)
    return None


# -- REST -----------------------------------------------------------------------------------------


async def _probe_rest(target: ProbeTarget, progress: _Progress) -> Attempt:
    from mpnet.net.exchange import timed_request

    rest = target.profile.rest
    assert rest is not None
    health = rest.health
    # Outside dial's measured phases (which the timings name themselves), the request is in its
    # HTTP exchange: that is the phase an outer timeout names.
    progress.phase = Phase.HTTP
    try:
        response = await timed_request(
            health.method,
            target.url,
            proxy=target.proxy,
            tls=target.tls,
            timeout=progress.remaining(),
            headers=rest.headers,
            json_body=fill_placeholders(health.body) if health.body is not None else None,
            timings=progress.timings,
        )
    except ProbeError as exc:
        _absorb_partial(progress, exc)
        raise
    progress.absorb(response.timings, response.peer)
    progress.phase = Phase.HTTP
    progress.edge = edge_from_headers(response.headers)
    progress.status = response.status
    progress.server_date = response.header("date")
    progress.local_time = response.received_at
    if response.status != health.expect_status:
        raise HTTPStatusError(
            f"HTTP {response.status} {response.reason} (expected {health.expect_status})",
            status=response.status,
            headers=response.headers,
            body=response.body,
        )
    if health.expect_json_keys or health.expect_json is not None:
        document = response.json()
        missing = [
            key
            for key in health.expect_json_keys
            if not isinstance(document, dict) or key not in document
        ]
        if missing:
            raise ProtocolError(
                f"JSON answer lacks {', '.join(missing)}: {_preview(response.body)}",
                phase=Phase.HTTP,
                kind="unexpected_json",
            )
        if health.expect_json is not None and not matches(health.expect_json, document):
            # A status endpoint answers 200 in maintenance too: its JSON says what state the
            # exchange is in, and expect_json is what "operational" looks like.
            what = (
                "does not report the exchange operational"
                if health.status_endpoint
                else "does not match expect_json"
            )
            raise ProtocolError(
                f"the answer {what}: {_preview(response.body)}",
                phase=Phase.HTTP,
                kind="maintenance" if health.status_endpoint else "json_mismatch",
                body=response.body,
            )
    if rest.server_time is not None:
        progress.clock = await _rest_clock(target, response, progress)
    return progress.succeeded()


async def _rest_clock(
    target: ProbeTarget, health: TimedResponse, progress: _Progress
) -> ClockSample:
    """The server's clock from the health answer, or from the profile's time request.

    Never fails the attempt (the health check passed): an answer that cannot be read, or a time
    request that fails, is a skipped sample with the reason.
    """
    from mpnet.net.exchange import timed_request

    rest = target.profile.rest
    assert rest is not None and rest.server_time is not None
    field = rest.server_time
    response = health
    if rest.time is not None:
        url = rest.time_url
        assert url is not None
        try:
            # Timings of its own: this request is not one of the attempt's phases.
            response = await timed_request(
                rest.time.method,
                url,
                proxy=target.proxy,
                tls=target.tls,
                timeout=progress.remaining(),
                headers=rest.headers,
            )
        except ProbeError as exc:
            return unreadable_sample(
                SOURCE_REST, field.path, f"the time request {rest.time.path} failed: {exc.message}"
            )
        if not 200 <= response.status < 300:
            return unreadable_sample(
                SOURCE_REST,
                field.path,
                f"the time request {rest.time.path} answered HTTP {response.status}",
            )
    try:
        document = response.json()
    except ProtocolError:
        return unreadable_sample(
            SOURCE_REST, field.path, f"the answer is not JSON: {_preview(response.body, 40)}"
        )
    if response.sent_at is None:
        return unreadable_sample(SOURCE_REST, field.path, "the request's send time is unknown")
    return sample_clock(
        document,
        field,
        source=SOURCE_REST,
        sent_at=response.sent_at,
        received_at=response.received_at,
    )


def _absorb_partial(progress: _Progress, exc: BaseException) -> None:
    """Keep the phases a failed request did measure (net/ attaches them, including the ``http``
    wait of a timeout once net/ fills it; :meth:`_Progress.keep_stuck_phase` covers the rest)."""
    if isinstance(exc, ProbeError):
        progress.merge_phases(exc.phases)


# -- WebSocket ------------------------------------------------------------------------------------


async def _probe_ws(target: ProbeTarget, progress: _Progress) -> Attempt:
    from mpnet.net.ws import WebSocketWrapper

    spec = target.profile.websocket
    assert spec is not None
    url = target.url
    if spec.bootstrap is not None:
        progress.phase = Phase.BOOTSTRAP
        url = await _bootstrap(target, progress)
    progress.phase = Phase.DNS
    try:
        # Filled in phase by phase, so a refused upgrade still shows its dns/tcp/tls times.
        ws = await WebSocketWrapper.connect(
            url,
            proxy=target.proxy,
            tls=target.tls,
            timeout=progress.remaining(),
            headers=spec.headers,
            timings=progress.timings,
        )
    except ProbeError as exc:
        progress.merge_timings()
        progress.tls = exc.tls
        raise
    try:
        progress.absorb(ws.timings, ws.peer)
        progress.edge = edge_from_headers(ws.upgrade_headers)
        conversation = _Conversation(ws, target, progress)
        if spec.welcome is not None:
            progress.phase = Phase.FIRST_MESSAGE
            await conversation.wait_for(spec.welcome, what="welcome message")
        progress.phase = Phase.FIRST_MESSAGE
        started = time.perf_counter_ns()
        await conversation.subscribe()
        first = await conversation.wait_for(spec.data_match, what="data message")
        progress.timed("first_message", (time.perf_counter_ns() - started) / 1e6, started)
        # From here on every data message is noted, the ping's wait included.
        feed = conversation.start_feed(first)
        warnings: tuple[ErrorInfo, ...] = ()
        if spec.ping is not None:
            progress.phase = Phase.PING_RTT
            # A round trip as short as a set-up step: it takes a set-up slot (and gives it back
            # on the pong, or after FAST_PHASE), so no other attempt's handshake crypto starts
            # while its pong is due (the lab's 13 feeds at once: median ping 0.56 to 0.63 ms
            # against 0.76 to 1.02 without; serially 0.83).
            # Never at the cost of the ping: the wait is short and eats little of the budget.
            slot = await _ConnectSlot.take(
                progress.connecting,
                "ping_rtt",
                within=min(PING_SLOT_WAIT, progress.remaining() / 4),
            )
            started = time.perf_counter_ns()
            try:
                progress.timed("ping_rtt", await conversation.ping(progress.remaining()), started)
            except ProbeError as exc:
                # Data arrived, so the feed works: a ping without answer is a warning.
                warnings = (_ping_warning(exc),)
            finally:
                slot.release()
        progress.end_span()
        await conversation.read_feed(feed)
        return replace(progress.succeeded(), warnings=warnings)
    finally:
        await ws.close()
