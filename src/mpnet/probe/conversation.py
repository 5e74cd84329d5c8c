"""The WebSocket conversation of one probe attempt, after the upgrade.

Subscribe and wait for the first data message (answering server keepalives on the way), one
application-level ping, then the feed window: every data message's arrival is stamped as it
comes and decoded after the window, for the lag series (:mod:`mpnet.core.clock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mpnet.core.clock import SOURCE_PONG, FeedRecorder, sample_clock
from mpnet.core.diagnose import CLOCK_CARRIED
from mpnet.core.match import fill_placeholders, matches
from mpnet.core.result import ErrorInfo
from mpnet.errors import Phase, ProbeError, ProbeTimeout, ProtocolError
from mpnet.probe.messages import decode_message, server_ping_reply
from mpnet.probe.plan import ProbeTarget

if TYPE_CHECKING:
    from mpnet.probe.engine import _Progress

#: Seconds of an attempt's budget the feed window leaves for closing the connection.
FEED_CLOSE_RESERVE = 0.5
#: Messages a feed window reads at most (it ends early past them): a firehose's lags are known
#: well before, and its raw messages are held until the window ends.
MAX_FEED_MESSAGES = 50_000
#: Nanoseconds of decoding between two yields to the loop after a feed window: an answer
#: for another attempt that arrives meanwhile waits about this long at most.
FEED_DECODE_SLICE_NS = 250_000


#: A pattern no message matches (:func:`mpnet.core.match.matches` compares it by equality).
_NOTHING = object()


class _Conversation:
    """Reads messages until one matches, answering server keepalives on the way; an answer
    matching the profile's ``error_match`` ends the wait at once."""

    def __init__(self, ws: Any, target: ProbeTarget, progress: _Progress) -> None:
        self.ws = ws
        self.spec = target.profile.websocket
        self.progress = progress
        self.seen = 0
        # The Unix time the subscription carried ("$now"), when it carried one (Gate).
        self.clock_sent: float | None = None
        # The local Unix time the last message was received at.
        self.received_at = 0.0
        # Notes every data message once the first one has arrived.
        self.recorder: FeedRecorder | None = None

    def start_feed(self, first: Any) -> _FeedStart:
        """Start noting data messages, the first one included."""
        assert self.spec is not None
        recorder = FeedRecorder(self.spec.event_time)
        recorder.observe(first, self.received_at)
        self.recorder = recorder
        return _FeedStart(recorder, time.perf_counter_ns(), time.monotonic())

    async def read_feed(self, feed: _FeedStart) -> None:
        """Keep reading for the feed window after the first data message (within the attempt's
        budget), then record what the feed showed in the attempt.

        The window's messages are only stamped with their arrival time as they come: decoding
        them in the receive loop would delay the stamps of the messages queued behind (adding
        mpnet's own parsing to the lag) and slow the reading (``bench/ws_throughput.py``). They
        are decoded after the window, a slice at a time so that no long stall holds up the
        other attempts' clocks. Profiles whose server pings must be answered (HTX) are decoded
        as they come, to answer them.
        """
        assert self.spec is not None
        progress = self.progress
        window = progress.feed_window
        pending: list[tuple[float, str | bytes]] = []
        if window > 0:
            until = min(feed.monotonic + window, progress.deadline - FEED_CLOSE_RESERVE)
            # A drop or an error answer during the window ends it: the attempt already
            # succeeded, and the messages so far are what the feed showed.
            with contextlib.suppress(TimeoutError, ProbeError):
                async with asyncio.timeout(max(0.0, until - time.monotonic())):
                    if self.spec.server_ping is not None:
                        await self.wait_for(_NOTHING, what="end of the feed window")
                    else:
                        recv, now = self.ws.recv, time.time
                        while len(pending) < MAX_FEED_MESSAGES:
                            raw = await recv()
                            pending.append((now(), raw))
        ended_ns = yielded_ns = time.perf_counter_ns()
        for index, (received_at, raw) in enumerate(pending):
            if time.perf_counter_ns() - yielded_ns >= FEED_DECODE_SLICE_NS:
                await asyncio.sleep(0)
                yielded_ns = time.perf_counter_ns()
                if time.monotonic() > progress.deadline:
                    # Never at the cost of the attempt: what is left is said, not guessed.
                    feed.recorder.skip(
                        "not decoded: the attempt's time ran out", len(pending) - index
                    )
                    break
            try:
                message = decode_message(raw, compression=self.spec.compression)
            except ProtocolError:
                continue
            if matches(self.spec.data_match, message):
                feed.recorder.observe(message, received_at)
        monitor = progress.monitor
        progress.feed = feed.recorder.record(
            duration_s=(ended_ns - feed.perf_ns) / 1e9 if window > 0 else None,
            loop_lag_ms=monitor.lag_between(feed.perf_ns, ended_ns) if monitor else None,
        )

    async def subscribe(self) -> None:
        """Send the profile's subscription messages, noting the local time they carry."""
        assert self.spec is not None
        now = time.time()
        for message in self.spec.subscribe:
            filled = fill_placeholders(message, now=now)
            if filled != message:
                self.clock_sent = now
            await self.ws.send(filled)

    async def ping(self, timeout: float) -> float:
        """One application ping (or ping frame); its round trip in milliseconds.

        Raises:
            ProbeError: phase ``ping_rtt``: no answer within ``timeout`` seconds (kind
                ``timeout``, ``frame_timeout`` for a ping frame), an error answer
                (``rejected``), or the connection closed.
        """
        assert self.spec is not None and self.spec.ping is not None
        ping = self.spec.ping
        if ping.frame:
            # Keep reading meanwhile: a backlog of unread data messages stops the websockets
            # client reading the socket, and the pong (and later the close handshake) would wait
            # behind it. The aiohttp backend reads (and keeps) data itself while it waits.
            reader = asyncio.create_task(
                self._read_meanwhile() if self.ws.backend == "websockets" else asyncio.sleep(0)
            )
            try:
                return float(await self.ws.ping(timeout=timeout))
            except ProbeTimeout as exc:
                raise ProbeTimeout(
                    f"no pong frame within {timeout:.3g} s",
                    phase=Phase.PING_RTT,
                    kind="frame_timeout",
                ) from exc
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        started = time.perf_counter_ns()
        sent_at = time.time()
        await self.ws.send(fill_placeholders(ping.send))
        try:
            async with asyncio.timeout(timeout):
                pong = await self.wait_for(ping.expect, what="pong")
        except TimeoutError as exc:
            raise ProbeTimeout(
                f"no answer to the ping within {timeout:.3g} s", phase=Phase.PING_RTT
            ) from exc
        elapsed = (time.perf_counter_ns() - started) / 1e6
        if ping.server_time is not None:
            self.progress.clock = sample_clock(
                pong,
                ping.server_time,
                source=SOURCE_PONG,
                sent_at=sent_at,
                received_at=self.received_at,
            )
        return elapsed

    async def _read_meanwhile(self) -> None:
        with contextlib.suppress(ProbeError):
            await self.wait_for(_NOTHING, what="pong")

    async def wait_for(self, pattern: Any, *, what: str) -> Any:
        assert self.spec is not None
        while True:
            try:
                raw = await self.ws.recv()
            except ProtocolError as exc:
                if exc.kind == "closed":
                    raise ProtocolError(
                        f"connection closed after {self.seen} message(s), before the {what}: "
                        f"{exc.message}",
                        phase=exc.phase,
                        kind="closed",
                    ) from exc
                raise
            self.received_at = received_at = time.time()
            self.seen += 1
            message = decode_message(raw, compression=self.spec.compression)
            reply = server_ping_reply(self.spec, message)
            if reply is not None:
                await self.ws.send(reply)
                continue
            recorder = self.recorder
            if recorder is not None and matches(self.spec.data_match, message):
                recorder.observe(message, received_at)
            if matches(pattern, message):
                return message
            shown = _shown(raw, message)
            if self.spec.error_match is not None and matches(self.spec.error_match, message):
                raise ProtocolError(
                    f"the server answered with an error while mpnet waited for the {what}: "
                    f"{shown}{self._clock_note(what)}",
                    phase=self.progress.phase,
                    kind="rejected",
                    body=shown.encode(),
                )
            self.progress.last_unmatched = shown

    def _clock_note(self, what: str) -> str:
        if self.clock_sent is None or what != "data message":
            return ""
        stamp = datetime.fromtimestamp(self.clock_sent, UTC).isoformat(timespec="seconds")
        return f" ({CLOCK_CARRIED}: {int(self.clock_sent)}, {stamp})"


@dataclass(frozen=True, slots=True)
class _FeedStart:
    """When the first data message arrived, and the recorder noting the feed since."""

    recorder: FeedRecorder
    perf_ns: int
    monotonic: float


def _ping_warning(error: ProbeError) -> ErrorInfo:
    """The warning an unanswered ping leaves on an attempt that did receive data."""

    return replace(ErrorInfo.from_error(error), phase=str(Phase.PING_RTT))


def _shown(raw: str | bytes, message: Any, limit: int = 500) -> str:
    """A message as text for an error report (decoded JSON re-serialised when it was binary)."""
    if isinstance(raw, str):
        text = raw
    elif isinstance(message, str):
        text = message
    else:
        text = json.dumps(message, separators=(",", ":"))
    return text[:limit]
