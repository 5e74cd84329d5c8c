"""WebSocket sessions over a phase-timed connection, and reconnection with resubscription.

:class:`WebSocketWrapper` is one interface over two backends, ``websockets`` (default) and
``aiohttp``. Both run over the connection :func:`mpnet.net.dial.dial` opened, so proxies and TLS
follow mpnet's decisions (never a library's reading of the environment) and both report the
same phases: ``dns``, ``tcp``, ``proxy``, ``tls``, ``ws_upgrade``, then ``first_message`` (first
:meth:`~WebSocketWrapper.send` to the first message received) and ``ping_rtt``.

:class:`ReconnectingWebSocket` keeps a feed going across disconnects: exponential backoff with
full jitter, subscriptions replayed after every reconnect, application keepalives answered,
reconnects and gaps counted. It starts no background task: all work happens inside the caller's
``recv()`` / ``async for``, so nothing can fail unobserved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random as random_module
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from mpnet.core.backoff import backoff_delay
from mpnet.core.proxy import ProxyDecision
from mpnet.core.proxy_url import redact_url_text
from mpnet.core.result import ErrorInfo
from mpnet.core.tls import TLSDecision
from mpnet.core.ws_session import WebSocketSessionResult
from mpnet.errors import Phase, ProbeError, ProbeTimeout, ProtocolError, UsageError
from mpnet.net.dial import PeerInfo, PhaseTimings, dial

BACKENDS = ("websockets", "aiohttp")
DEFAULT_MAX_SIZE = 16 * 2**20
#: Gaps a ReconnectingWebSocket keeps (the latest); older ones are only counted, so a feed
#: that reconnects for months does not grow.
GAP_HISTORY = 100

#: What send() accepts: text, bytes, or a dict/list sent as JSON text.
Outgoing = str | bytes | dict[str, Any] | list[Any]


class _Backend(Protocol):
    name: str

    @property
    def closed(self) -> bool: ...

    @property
    def close_code(self) -> int | None: ...

    @property
    def close_reason(self) -> str | None: ...

    async def send(self, data: str | bytes) -> None: ...

    async def recv(self) -> str | bytes: ...

    async def ping(self) -> float: ...

    async def close(self) -> None: ...


def hand_over(transport: asyncio.BaseTransport, protocol: asyncio.BaseProtocol) -> None:
    """Give the transport :func:`~mpnet.net.dial.dial` opened to a WebSocket library's protocol.

    The stream protocol dial() attached will not hear from this transport again, so it is told
    at once that its stream has ended. Otherwise asyncio's StreamReaderProtocol and StreamWriter,
    which point at each other, keep the transport's TLS state (a 256 KiB read buffer, the SSL
    object) as cyclic garbage that only a full collection frees: a long-lived process that
    opens WebSockets over and over (serve, watch's reconnecting feeds) would grow between
    collections. The stream writer itself stays usable for closing the transport.
    """
    streams = transport.get_protocol()
    transport.set_protocol(protocol)
    if streams is not protocol:
        streams.connection_lost(None)


def encode_message(data: Outgoing) -> str | bytes:
    """dict/list -> compact JSON text; str and bytes unchanged."""
    if isinstance(data, (dict, list)):
        return json.dumps(data, separators=(",", ":"))
    return data


class WebSocketWrapper:
    """One WebSocket session with phase timings; create it with :meth:`connect`.

    Attributes:
        url: the WebSocket URL.
        backend: ``"websockets"`` or ``"aiohttp"``.
        timings: the phases measured so far (``first_message`` and ``ping_rtt`` fill in later).
        peer: addresses, proxy and TLS facts from the dial.
    """

    def __init__(self, url: str, backend: _Backend, timings: PhaseTimings, peer: PeerInfo) -> None:
        self.url = url
        self.backend = backend.name
        self.timings = timings
        self.peer = peer
        self._backend = backend
        self._first_send_ns: int | None = None
        self._first_message_seen = False

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        proxy: ProxyDecision,
        tls: TLSDecision,
        timeout: float,
        backend: str = "websockets",
        headers: Mapping[str, str] | None = None,
        max_size: int | None = DEFAULT_MAX_SIZE,
        compression: str | None = None,
        timings: PhaseTimings | None = None,
    ) -> WebSocketWrapper:
        """Dial ``url`` as ``proxy`` and ``tls`` decide, then upgrade to WebSocket.

        Args:
            url: a ``ws://`` or ``wss://`` URL.
            proxy, tls: mpnet's decisions for this connection.
            timeout: one budget in seconds for dial and upgrade together.
            backend: ``"websockets"`` (default) or ``"aiohttp"``.
            headers: extra request headers for the upgrade.
            max_size: largest incoming message in bytes (None: no limit).
            compression: ``"deflate"`` to offer permessage-deflate, None (default) not to.
            timings: filled in as phases complete (pass one to keep phases of a failure).

        Raises:
            UsageError: not a ws/wss URL, or an unknown backend.
            DNSError, ConnectError, ProxyError, TLSError: from :func:`~mpnet.net.dial.dial`.
            WebSocketHandshakeError: the server answered the upgrade with another status.
            ProtocolError: the answer was not a WebSocket upgrade.
            ProbeTimeout: the budget ran out; ``phase`` says where.
        """
        if not url.lower().startswith(("ws://", "wss://")):
            raise UsageError(f"invalid WebSocket URL {url!r}: the scheme must be ws or wss")
        if backend not in BACKENDS:
            raise UsageError(f"unknown WebSocket backend {backend!r}; use one of {BACKENDS}")
        if compression not in (None, "deflate"):
            raise UsageError(f"unknown compression {compression!r}; use 'deflate' or None")
        timings = timings if timings is not None else PhaseTimings()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        dialed = await dial(url, proxy=proxy, tls=tls, timeout=timeout, timings=timings)
        upgrade = _backend_class(backend).upgrade
        try:
            async with asyncio.timeout_at(deadline):
                opened = await upgrade(
                    url,
                    dialed,
                    headers=headers,
                    max_size=max_size,
                    compression=compression,
                    timings=timings,
                )
        except TimeoutError as exc:
            dialed.writer.transport.abort()
            timeout_error = ProbeTimeout(
                f"timed out after {timeout:g} s waiting for the WebSocket upgrade of {url}",
                phase=Phase.WS_UPGRADE,
            )
            timeout_error.tls = dialed.peer.tls
            raise timeout_error from exc
        except ProbeError as exc:
            # A refused upgrade (geo-block, WAF) still shows the certificate it came through.
            exc.tls = dialed.peer.tls
            raise
        return cls(url, opened, timings, dialed.peer)

    @property
    def upgrade_headers(self) -> Mapping[str, str]:
        """The headers of the server's 101 answer to the upgrade (names as sent)."""
        headers: Mapping[str, str] = getattr(self._backend, "upgrade_headers", {})
        return headers

    @property
    def closed(self) -> bool:
        return self._backend.closed

    @property
    def close_code(self) -> int | None:
        return self._backend.close_code

    @property
    def close_reason(self) -> str | None:
        return self._backend.close_reason

    async def send(self, data: Outgoing) -> None:
        """Send text or bytes; a dict or list goes as JSON text.

        Raises:
            ProtocolError: ``kind="closed"`` when the connection is closed.
        """
        if self._first_send_ns is None:
            self._first_send_ns = time.perf_counter_ns()
        await self._backend.send(encode_message(data))

    async def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message. The first one after the first send sets ``first_message``.

        Raises:
            ProtocolError: ``phase=first_message, kind="closed"`` with the close code and reason
                when the peer closed the connection.
            ProbeTimeout: no message within ``timeout`` seconds.
        """
        if timeout is None:
            # The hot path of a feed: a timeout scope per message costs about a third of the
            # receive throughput (bench/ws_throughput.py).
            message = await self._backend.recv()
        else:
            try:
                async with asyncio.timeout(timeout):
                    message = await self._backend.recv()
            except TimeoutError as exc:
                raise ProbeTimeout(
                    f"no WebSocket message from {self.url} within {timeout:g} s",
                    phase=Phase.FIRST_MESSAGE,
                ) from exc
        if not self._first_message_seen:
            self._first_message_seen = True
            if self._first_send_ns is not None:
                self.timings.first_message = (time.perf_counter_ns() - self._first_send_ns) / 1e6
        return message

    async def ping(self, timeout: float | None = None) -> float:
        """Send a protocol-level ping frame and wait for its pong; returns (and records as
        ``ping_rtt``) the round trip in milliseconds.

        Raises:
            ProtocolError: the connection closed first.
            ProbeTimeout: no pong within ``timeout`` seconds.
        """
        try:
            async with asyncio.timeout(timeout):
                rtt = await self._backend.ping()
        except TimeoutError as exc:
            raise ProbeTimeout(
                f"no pong from {self.url} within {timeout:g} s", phase=Phase.PING_RTT
            ) from exc
        self.timings.ping_rtt = rtt
        return rtt

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[str | bytes]:
        while True:
            try:
                yield await self.recv()
            except ProtocolError as exc:
                if exc.kind == "closed":
                    return
                raise

    async def close(self) -> None:
        """Close the connection (close handshake, bounded in time); never raises."""
        # Best effort: a backend that fails to close has aborted its transport already.
        with contextlib.suppress(OSError, ProbeError):
            await self._backend.close()

    async def __aenter__(self) -> WebSocketWrapper:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        via = f" via {self.peer.via_proxy}" if self.peer.via_proxy else ""
        state = "closed" if self.closed else "open"
        return f"<WebSocketWrapper {self.url}{via} backend={self.backend} {state}>"


def _backend_class(name: str) -> Any:
    # Imported on demand: each library costs a few hundred milliseconds to import.
    if name == "aiohttp":
        from mpnet.net.ws_aiohttp import AiohttpBackend

        return AiohttpBackend
    from mpnet.net.ws_websockets import WebsocketsBackend

    return WebsocketsBackend


# -- reconnecting -------------------------------------------------------------------------------


@dataclass(slots=True)
class Gap:
    """A period without data: from a disconnect (``start``) until the subscriptions were sent
    again on a new connection (``end``; None while still disconnected). Monotonic seconds."""

    start: float
    end: float | None = None

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start


ConnectFactory = Callable[[], Awaitable[WebSocketWrapper]]
Keepalive = Callable[[str | bytes], Outgoing | None]


class ReconnectingWebSocket:
    """A WebSocket feed that survives disconnects.

    ``connect`` opens one connection (e.g. a ``functools.partial`` of
    :meth:`WebSocketWrapper.connect`). Failed attempts wait ``uniform(0, min(max_delay,
    initial_delay * 2**n))`` seconds before attempt ``n + 1`` (full jitter); after
    ``max_attempts`` consecutive failures (None: never) the last error is raised from
    :meth:`recv`. Messages recorded with :meth:`subscribe` are sent on every new connection.
    ``keepalive(message)`` may return a reply for an application-level ping (e.g. HTX's
    ``{"ping": n}`` -> ``{"pong": n}``); such messages are answered and not yielded.

    Attributes:
        reconnects: successful connections after the first.
        gap_count: disconnects so far.
        gaps: the latest :data:`GAP_HISTORY` disconnects, oldest first, with when data resumed.
        last_error: the error that ended the previous connection or attempt.
    """

    def __init__(
        self,
        connect: ConnectFactory,
        *,
        initial_delay: float = 0.5,
        max_delay: float = 30.0,
        max_attempts: int | None = None,
        keepalive: Keepalive | None = None,
        random: Callable[[], float] = random_module.random,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_attempts is not None and max_attempts < 1:
            raise UsageError(f"max_attempts must be at least 1, not {max_attempts}")
        self._connect = connect
        self._initial_delay = initial_delay
        self._max_delay = max_delay
        self._max_attempts = max_attempts
        self._keepalive = keepalive
        self._random = random
        self._sleep = sleep
        self._clock = clock
        self._ws: WebSocketWrapper | None = None
        self._subscriptions: list[Outgoing] = []
        self._closed = False
        self._connected_once = False
        self.reconnects = 0
        self.gap_count = 0
        self.gaps: deque[Gap] = deque(maxlen=GAP_HISTORY)
        self.last_error: ProbeError | None = None

    @property
    def connection(self) -> WebSocketWrapper | None:
        """The current connection, if any."""
        return self._ws

    @property
    def closed(self) -> bool:
        return self._closed

    async def connect(self) -> None:
        """Open the first connection now (otherwise the first :meth:`recv` does)."""
        await self._ensure_connected()

    async def subscribe(self, *messages: Outgoing) -> None:
        """Record ``messages`` and send them now (if connected) and after every reconnect."""
        self._subscriptions.extend(messages)
        if self._ws is not None:
            try:
                for message in messages:
                    await self._ws.send(message)
            except ProbeError as exc:
                # The next recv() reconnects and replays every subscription.
                await self._drop(exc)

    async def send(self, data: Outgoing) -> None:
        """Send once on the current connection (not replayed after a reconnect)."""
        await self._ensure_connected()
        assert self._ws is not None
        await self._ws.send(data)

    async def recv(self) -> str | bytes:
        """The next data message, reconnecting and resubscribing as needed.

        Raises:
            ProtocolError: ``kind="closed"`` after :meth:`close`.
            ProbeError: the last connection error, once ``max_attempts`` attempts failed.
        """
        while True:
            await self._ensure_connected()
            assert self._ws is not None
            try:
                message = await self._ws.recv()
            except ProbeError as exc:
                if self._closed:
                    raise
                await self._drop(exc)
                continue
            if self._keepalive is not None:
                reply = self._keepalive(message)
                if reply is not None:
                    try:
                        await self._ws.send(reply)
                    except ProbeError as exc:
                        await self._drop(exc)
                    continue
            return message

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[str | bytes]:
        while not self._closed:
            try:
                yield await self.recv()
            except ProtocolError as exc:
                if self._closed and exc.kind == "closed":
                    return
                raise

    async def close(self) -> None:
        """Close the connection and stop reconnecting."""
        self._closed = True
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    async def __aenter__(self) -> ReconnectingWebSocket:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _drop(self, error: ProbeError) -> None:
        self.last_error = error
        ws, self._ws = self._ws, None
        if ws is not None:
            self.gaps.append(Gap(start=self._clock()))
            self.gap_count += 1
            await ws.close()

    async def _ensure_connected(self) -> None:
        if self._closed:
            raise ProtocolError(
                "the reconnecting WebSocket was closed", phase=Phase.FIRST_MESSAGE, kind="closed"
            )
        if self._ws is not None:
            return
        failures = 0
        while True:
            if self._connected_once or failures:
                # Full jitter even before the first retry, so that clients cut off together
                # do not come back together.
                await self._sleep(
                    backoff_delay(
                        failures,
                        initial=self._initial_delay,
                        maximum=self._max_delay,
                        random=self._random,
                    )
                )
            if self._closed:
                raise ProtocolError(
                    "the reconnecting WebSocket was closed",
                    phase=Phase.FIRST_MESSAGE,
                    kind="closed",
                )
            ws: WebSocketWrapper | None = None
            try:
                ws = await self._connect()
                for message in self._subscriptions:
                    await ws.send(message)
            except ProbeError as exc:
                if ws is not None:
                    await ws.close()
                self.last_error = exc
                failures += 1
                if self._max_attempts is not None and failures >= self._max_attempts:
                    raise
                continue
            break
        self._ws = ws
        if self._connected_once:
            self.reconnects += 1
            if self.gaps and self.gaps[-1].end is None:
                self.gaps[-1].end = self._clock()
        self._connected_once = True


# -- one session --------------------------------------------------------------------------------


def _later_message_error(exc: ProbeError, received: int, count: int, timeout: float) -> ProbeError:
    """A failure while waiting for message ``received + 1``: phase ``receive``, not
    ``first_message``, since the first one did arrive."""
    if isinstance(exc, ProbeTimeout):
        return ProbeTimeout(
            f"message {received + 1} of {count} did not arrive within {timeout:g} s "
            f"({received} received)",
            phase=Phase.RECEIVE,
        )
    exc.phase = Phase.RECEIVE
    exc.message = f"{exc.message} (after {received} of {count} messages)"
    return exc


async def run_session(
    url: str,
    *,
    proxy: ProxyDecision,
    tls: TLSDecision,
    timeout: float,
    backend: str = "websockets",
    send: Sequence[Outgoing] = (),
    count: int = 1,
    headers: Mapping[str, str] | None = None,
) -> WebSocketSessionResult:
    """Connect, send each of ``send``, receive ``count`` messages (each within ``timeout``), close.

    Network failures come back in the result (``error``, with the phases that completed);
    only input errors raise.

    Raises:
        UsageError, ConfigError: bad URL, backend or CA bundle; nothing was sent.
    """
    if count < 0:
        raise UsageError(f"--count must be 0 or more, not {count}")
    timings = PhaseTimings()
    messages: list[str | bytes] = []
    sent = 0
    ws: WebSocketWrapper | None = None
    error: ProbeError | None = None
    try:
        ws = await WebSocketWrapper.connect(
            url,
            proxy=proxy,
            tls=tls,
            timeout=timeout,
            backend=backend,
            headers=headers,
            timings=timings,
        )
        for data in send:
            await ws.send(data)
            sent += 1
        while len(messages) < count:
            try:
                messages.append(await ws.recv(timeout=timeout))
            except ProbeError as exc:
                if not messages:
                    raise
                error = _later_message_error(exc, len(messages), count, timeout)
                break
    except ProbeError as exc:
        error = exc
    finally:
        if ws is not None:
            await ws.close()
    return WebSocketSessionResult(
        url=redact_url_text(url),
        backend=backend,
        proxy=proxy,
        ssl=tls,
        phases=timings.to_dict(),
        messages=tuple(messages),
        sent=sent,
        tls=ws.peer.tls if ws is not None else None,
        address=ws.peer.address if ws is not None else None,
        error=ErrorInfo.from_error(error) if error is not None else None,
    )
