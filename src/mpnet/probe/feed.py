"""One long-lived WebSocket feed, watched the way a trader's market-data feed runs.

:class:`FeedMonitor` keeps one :class:`~mpnet.net.ws.ReconnectingWebSocket` open to a target:
the profile's subscriptions are replayed after every reconnect, server keepalives (HTX's
``{"ping": x}``) answered, KuCoin's bootstrap run again before every connection. A reader task
counts data messages and the silences between them; :meth:`FeedMonitor.sample` is called once
per watch cycle and pings the server (the profile's ``ping``) on the open connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mpnet.core.clock import MAX_LAGS, SOURCE_PONG, ClockSample, sample_clock
from mpnet.core.match import fill_placeholders, matches
from mpnet.core.result import Attempt, ErrorInfo
from mpnet.core.watch import FeedSample
from mpnet.errors import Phase, ProbeError, ProbeTimeout, ProtocolError
from mpnet.probe.bootstrap import run_bootstrap
from mpnet.probe.engine import forced_family
from mpnet.probe.messages import decode_message, server_ping_reply
from mpnet.probe.pacing import RateGate
from mpnet.probe.plan import ProbeTarget

if TYPE_CHECKING:
    from mpnet.config.model import WebSocketSpec
    from mpnet.net.dial import PhaseTimings
    from mpnet.net.ws import Outgoing, ReconnectingWebSocket, WebSocketWrapper

#: Reconnect backoff: the first retry waits up to this long (full jitter), doubling per failure.
RECONNECT_INITIAL_DELAY = 0.5
RECONNECT_MAX_DELAY = 30.0


class FeedMonitor:
    """A long-lived feed to one WebSocket target, with reconnect and gap accounting.

    Use as ``async with FeedMonitor(target, timeout=5) as feed:`` and call :meth:`sample` once
    per cycle. Closing cancels the reader and closes the connection.

    Args:
        target: a ``ws`` target of a probe plan (proxy and TLS already decided).
        timeout: seconds allowed for one connection (bootstrap, dial, upgrade, welcome) and for
            one ping.
        initial_delay, max_delay: the reconnect backoff window (full jitter).
        clock: monotonic seconds, for the silences between data messages.
        gate: the rate-limit gate; each connection (KuCoin's bootstrap included) waits for the
            exchange's turn there, and its refusals (429, 418) start the exchange's wait.
    """

    def __init__(
        self,
        target: ProbeTarget,
        *,
        timeout: float,
        initial_delay: float = RECONNECT_INITIAL_DELAY,
        max_delay: float = RECONNECT_MAX_DELAY,
        clock: Callable[[], float] = time.monotonic,
        gate: RateGate | None = None,
    ) -> None:
        from mpnet.net.ws import ReconnectingWebSocket

        spec = target.profile.websocket
        if target.target != "ws" or spec is None:
            raise ValueError(f"{target.label}: a feed needs a WebSocket target")
        self.target = target
        self.spec: WebSocketSpec = spec
        self.timeout = timeout
        self._clock = clock
        self._gate = gate
        self._rws: ReconnectingWebSocket = ReconnectingWebSocket(
            self._connect,
            initial_delay=initial_delay,
            max_delay=max_delay,
            keepalive=self._keepalive if spec.server_ping is not None else None,
            clock=clock,
        )
        self._reader: asyncio.Task[None] | None = None
        # The newest connection the factory opened: closed on exit even if the reconnecting
        # wrapper never took it over (cancelled while subscribing).
        self._opened: WebSocketWrapper | None = None
        self._phases: dict[str, float] = {}
        self._connected_at_ns: int | None = None
        # Set to the pong (perf_counter_ns, Unix time, message), or None when the connection
        # went away first.
        self._pong: asyncio.Future[tuple[int, float, Any] | None] | None = None
        # Uncorrected lags of the data messages since the last sample, and the pong's clock.
        self._lags: list[float] = []
        self._clock_sample: ClockSample | None = None
        self._data_messages = 0
        self._sampled_messages = 0
        self._last_data_at: float | None = None
        self._longest_gap = 0.0
        self._gap_measured = False
        self._settled = asyncio.Event()
        self._data_arrived = asyncio.Event()
        self._seen_connection_error: ProbeError | None = None
        self._connect_error: ProbeError | None = None
        self._last_error: ErrorInfo | None = None
        self._last_error_dropped = False
        self._sampled = False

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Record the subscriptions and start the reader (which opens the first connection)."""
        if self._reader is not None:
            return
        await self._rws.subscribe(*(fill_placeholders(m) for m in self.spec.subscribe))
        self._reader = asyncio.create_task(self._read(), name=f"mpnet feed {self.target.label}")

    async def close(self) -> None:
        """Cancel the reader, close the connection and stop reconnecting; never raises for the
        network."""
        reader, self._reader = self._reader, None
        try:
            if reader is not None:
                reader.cancel()
                # Not `await reader`: a cancellation of the caller must still propagate.
                await asyncio.gather(reader, return_exceptions=True)
        finally:
            await self._rws.close()
            opened, self._opened = self._opened, None
            if opened is not None:
                await opened.close()

    async def __aenter__(self) -> FeedMonitor:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- what a cycle sees --------------------------------------------------------------------

    @property
    def data_messages(self) -> int:
        """Data messages received so far, over every connection."""
        return self._data_messages

    async def wait_for_data(self, total: int) -> None:
        """Wait until ``total`` data messages have arrived in all (no time limit of its own)."""
        while self._data_messages < total:
            self._data_arrived.clear()
            await self._data_arrived.wait()

    async def sample(self) -> tuple[Attempt, FeedSample]:
        """One cycle's look at the feed: ping the server if connected, then the counters.

        The first sample waits (up to ``timeout``) for the first data message or the first
        failed connection, so a feed is not reported down only because it was still starting.

        Returns:
            An attempt (ok when connected and the ping, if the profile has one, answered; its
            phases are those of the current or last connection, plus ``ping_rtt``) and the
            feed's counters.
        """
        if self._reader is None:
            raise RuntimeError("start the feed before sampling it")
        if self._reader.done():
            # The reader only ends by a bug: surface it rather than report a silent feed.
            self._reader.result()
        if not self._sampled:
            self._sampled = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout):
                    await self._settled.wait()
        self._note_connection_error()
        ws = self._rws.connection
        ping_ms: float | None = None
        failure: ErrorInfo | None = None
        if ws is None:
            failure = self._last_error or ErrorInfo(
                phase=str(Phase.WS_UPGRADE), kind="not_connected", message="not connected yet"
            )
        elif self.spec.ping is not None:
            try:
                ping_ms = await self._ping(ws)
            except ProbeError as exc:
                # Closed under the ping: the feed was cut, as when the reader sees it.
                failure = self._remember(exc, dropped=exc.kind in ("closed", "reset"))
        phases = dict(self._phases)
        if ping_ms is not None:
            phases["ping_rtt"] = ping_ms
        messages = self._data_messages - self._sampled_messages
        self._sampled_messages = self._data_messages
        lags, self._lags = tuple(self._lags), []
        clock, self._clock_sample = self._clock_sample, None
        feed = FeedSample(
            connected=ws is not None,
            reconnects=self._rws.reconnects,
            gaps=self._rws.gap_count,
            longest_gap_ms=self._longest_gap_ms(connected=ws is not None),
            messages=messages,
            ping_ms=ping_ms,
            last_error=self._last_error,
            last_error_dropped=self._last_error_dropped,
            lags_ms=lags,
            lag_note=self._lag_note(),
            clock=clock,
        )
        attempt = Attempt(
            ok=failure is None,
            phases=phases,
            error=failure,
            tls=ws.peer.tls if ws is not None else None,
            address=ws.peer.address if ws is not None else None,
        )
        return attempt, feed

    def _lag_note(self) -> str | None:
        event_time = self.spec.event_time
        if event_time is None:
            return "no event time in the profile"
        if not event_time.is_event:
            return f"{event_time.path} is a trade's time: no lag claimed"
        return None

    def _longest_gap_ms(self, *, connected: bool) -> float | None:
        if self._last_data_at is None:
            return None
        longest = self._longest_gap
        if not connected:
            longest = max(longest, self._clock() - self._last_data_at)
        elif not self._gap_measured:
            return None
        return longest * 1000

    # -- the connection -----------------------------------------------------------------------

    async def _connect(self) -> WebSocketWrapper:
        """Open one connection: bootstrap (if any), dial, upgrade, wait for the welcome."""
        from mpnet.net.dial import PhaseTimings
        from mpnet.net.ws import WebSocketWrapper

        # A pong can only come back on the connection the ping went out on.
        if self._pong is not None and not self._pong.done():
            self._pong.set_result(None)
        if self._gate is not None:
            # Before the timings start: waiting for the exchange's turn is not a network phase.
            await self._gate.wait_turn(self.target)
        timings = PhaseTimings()
        phases: dict[str, float] = {}
        gate = self._gate
        observing = gate.observing(self.target) if gate is not None else contextlib.nullcontext()
        with observing, forced_family(self.target):
            try:
                url = self.target.url
                if self.spec.bootstrap is not None:
                    started = time.perf_counter_ns()
                    try:
                        answer = await run_bootstrap(self.target, self.timeout)
                    finally:
                        phases["bootstrap"] = (time.perf_counter_ns() - started) / 1e6
                    url = answer.url
                ws = await WebSocketWrapper.connect(
                    url,
                    proxy=self.target.proxy,
                    tls=self.target.tls,
                    timeout=self.timeout,
                    headers=self.spec.headers,
                    timings=timings,
                )
                self._opened = ws
                if self.spec.welcome is not None:
                    await self._wait_for_welcome(ws)
            except ProbeError as exc:
                self._phases = phases | _measured(timings)
                self._connect_error = exc
                self._settled.set()
                raise
        self._phases = phases | _measured(timings)
        self._connected_at_ns = time.perf_counter_ns()
        return ws

    async def _wait_for_welcome(self, ws: WebSocketWrapper) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                while not matches(
                    self.spec.welcome,
                    decode_message(await ws.recv(), compression=self.spec.compression),
                ):
                    pass
        except TimeoutError as exc:
            await ws.close()
            raise ProbeTimeout(
                f"no welcome message within {self.timeout:g} s", phase=Phase.FIRST_MESSAGE
            ) from exc
        except ProbeError:
            await ws.close()
            raise

    def _keepalive(self, raw: str | bytes) -> Outgoing | None:
        try:
            return server_ping_reply(
                self.spec, decode_message(raw, compression=self.spec.compression)
            )
        except ProtocolError:
            # Not a keepalive; the reader decides what an undecodable frame is.
            return None

    async def _read(self) -> None:
        pong = self.spec.ping.expect if self.spec.ping is not None else None
        event_time = self.spec.event_time
        if event_time is not None and not event_time.is_event:
            event_time = None  # a trade's time says nothing about how late the message is
        async for raw in self._rws:
            received_at = time.time()
            try:
                message: Any = decode_message(raw, compression=self.spec.compression)
            except ProtocolError as exc:
                self._remember(exc)
                continue
            waiter = self._pong
            if waiter is not None and not waiter.done() and matches(pong, message):
                waiter.set_result((time.perf_counter_ns(), received_at, message))
                continue
            if matches(self.spec.data_match, message):
                self._on_data()
                if event_time is not None and len(self._lags) < MAX_LAGS:
                    stamp = event_time.read(message)
                    if isinstance(stamp, tuple):
                        self._lags.append((received_at - stamp[0]) * 1000)

    def _on_data(self) -> None:
        now = self._clock()
        if self._last_data_at is not None:
            self._longest_gap = max(self._longest_gap, now - self._last_data_at)
            self._gap_measured = True
        self._last_data_at = now
        if self._connected_at_ns is not None:
            # Subscriptions go out as the connection opens: this is subscribe -> first data.
            self._phases["first_message"] = (time.perf_counter_ns() - self._connected_at_ns) / 1e6
            self._connected_at_ns = None
        self._data_messages += 1
        self._settled.set()
        self._data_arrived.set()

    async def _ping(self, ws: WebSocketWrapper) -> float:
        ping = self.spec.ping
        assert ping is not None
        if ping.frame:
            return await ws.ping(timeout=self.timeout)
        waiter: asyncio.Future[tuple[int, float, Any] | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._pong = waiter
        try:
            started = time.perf_counter_ns()
            sent_at = time.time()
            await ws.send(fill_placeholders(ping.send))
            try:
                async with asyncio.timeout(self.timeout):
                    answered = await waiter
            except TimeoutError as exc:
                raise ProbeTimeout(
                    f"no pong within {self.timeout:g} s", phase=Phase.PING_RTT
                ) from exc
        finally:
            self._pong = None
        if answered is None:
            raise ProtocolError(
                "the connection closed before the pong", phase=Phase.PING_RTT, kind="closed"
            )
        answered_ns, received_at, message = answered
        if ping.server_time is not None:
            self._clock_sample = sample_clock(
                message,
                ping.server_time,
                source=SOURCE_PONG,
                sent_at=sent_at,
                received_at=received_at,
            )
        return (answered_ns - started) / 1e6

    # -- errors -------------------------------------------------------------------------------

    def _note_connection_error(self) -> None:
        """Take in the error that ended (or failed to open) a connection, once."""
        error = self._rws.last_error
        if error is not None and error is not self._seen_connection_error:
            self._seen_connection_error = error
            self._remember(error, dropped=error is not self._connect_error)

    def _remember(self, error: ProbeError, *, dropped: bool = False) -> ErrorInfo:
        self._last_error = ErrorInfo.from_error(error)
        self._last_error_dropped = dropped
        return self._last_error


def _measured(timings: PhaseTimings) -> dict[str, float]:
    """The connection phases (the feed measures first_message and ping_rtt itself)."""
    return {k: v for k, v in timings.to_dict().items() if k not in ("first_message", "ping_rtt")}
