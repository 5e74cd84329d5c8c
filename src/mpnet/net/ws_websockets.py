"""The ``websockets`` backend: the upgrade and the frames run over a connection :func:`dial` made.

websockets' own ``connect()`` would open the TCP connection (and read proxy settings from the
environment); instead its sans-I/O :class:`~websockets.client.ClientProtocol` is driven by a
:class:`~websockets.asyncio.client.ClientConnection` attached to the dialled transport, exactly
as websockets does itself after its proxy handshake. Every phase, including the proxy and TLS
legs, is therefore mpnet's and timed by mpnet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from websockets.asyncio.client import ClientConnection
from websockets.client import ClientProtocol
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
)
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.uri import parse_uri

from mpnet.errors import Phase, ProtocolError, WebSocketHandshakeError
from mpnet.net.dial import DialedConnection, PhaseTimings
from mpnet.net.ws import hand_over

#: Bounded so that closing never hangs on a silent peer.
CLOSE_TIMEOUT = 2.0


class WebsocketsBackend:
    """One open WebSocket over a dialled connection (see :class:`mpnet.net.ws.WebSocketWrapper`)."""

    name = "websockets"

    def __init__(self, connection: ClientConnection, dialed: DialedConnection) -> None:
        self._connection = connection
        # Held so that the stream writer dial() created is not collected (and does not warn)
        # while the transport it wrapped lives on under websockets.
        self._dialed = dialed
        response = connection.response
        #: The headers of the server's 101 answer (which CDN edge answered, say).
        self.upgrade_headers: dict[str, str] = (
            dict(response.headers.raw_items()) if response is not None else {}
        )

    @classmethod
    async def upgrade(
        cls,
        url: str,
        dialed: DialedConnection,
        *,
        headers: Mapping[str, str] | None,
        max_size: int | None,
        compression: str | None,
        timings: PhaseTimings,
    ) -> WebsocketsBackend:
        """Send the upgrade request over ``dialed`` and wait for ``101``.

        Raises:
            WebSocketHandshakeError: the server answered with another status.
            ProtocolError: the answer was not a valid upgrade, or the connection closed.
        """
        extensions = enable_client_permessage_deflate(None) if compression == "deflate" else None
        protocol = ClientProtocol(parse_uri(url), extensions=extensions, max_size=max_size)
        # mpnet sends its own pings; a server's pings are still answered by the library.
        connection = ClientConnection(
            protocol, ping_interval=None, ping_timeout=None, close_timeout=CLOSE_TIMEOUT
        )
        transport = dialed.writer.transport
        hand_over(transport, connection)
        connection.connection_made(transport)
        try:
            with timings.measure(Phase.WS_UPGRADE):
                await connection.handshake(additional_headers=dict(headers or {}))
        except InvalidStatus as exc:
            transport.abort()
            response = exc.response
            raise WebSocketHandshakeError(
                WebSocketHandshakeError.describe(url, response.status_code, response.reason_phrase),
                status=response.status_code,
                headers={k: v for k, v in response.headers.raw_items()},
                body=bytes(response.body or b""),
            ) from exc
        except InvalidMessage as exc:
            transport.abort()
            # A connection cut before the answer is a closed connection, not a bad answer.
            if isinstance(exc.__cause__, (EOFError, ConnectionError)):
                raise _upgrade_cut(url, exc.__cause__) from exc
            raise ProtocolError(
                f"no valid HTTP answer to the WebSocket upgrade of {url}: {exc}",
                phase=Phase.WS_UPGRADE,
                kind="invalid_response",
            ) from exc
        except (InvalidHandshake, OSError) as exc:
            transport.abort()
            if isinstance(exc, ConnectionError):
                raise _upgrade_cut(url, exc) from exc
            raise ProtocolError(
                f"WebSocket upgrade of {url} failed: {exc}",
                phase=Phase.WS_UPGRADE,
                kind="invalid_handshake",
            ) from exc
        except BaseException:
            transport.abort()
            raise
        return cls(connection, dialed)

    @property
    def closed(self) -> bool:
        from websockets.protocol import State

        return self._connection.state is State.CLOSED

    @property
    def close_code(self) -> int | None:
        return self._connection.close_code

    @property
    def close_reason(self) -> str | None:
        return self._connection.close_reason

    async def send(self, data: str | bytes) -> None:
        try:
            await self._connection.send(data)
        except ConnectionClosed as exc:
            raise _closed_error(exc) from exc

    async def recv(self) -> str | bytes:
        try:
            return await self._connection.recv()
        except ConnectionClosed as exc:
            raise _closed_error(exc) from exc

    async def ping(self) -> float:
        try:
            started = time.perf_counter_ns()
            pong = await self._connection.ping()
            await pong
            return (time.perf_counter_ns() - started) / 1e6
        except ConnectionClosed as exc:
            raise _closed_error(exc, phase=Phase.PING_RTT) from exc

    async def close(self) -> None:
        try:
            await self._connection.close()
        except (OSError, asyncio.CancelledError):
            self._connection.transport.abort()
            raise


def _upgrade_cut(url: str, cause: BaseException) -> ProtocolError:
    """The connection ended before the answer to the upgrade: ``reset`` or ``closed``."""
    how = "reset" if isinstance(cause, ConnectionResetError) else "closed"
    return ProtocolError(
        f"the connection was {how} during the WebSocket upgrade of {url}, before any answer",
        phase=Phase.WS_UPGRADE,
        kind=how,
    )


def _closed_error(exc: ConnectionClosed, *, phase: Phase = Phase.FIRST_MESSAGE) -> ProtocolError:
    received = exc.rcvd
    if received is not None:
        why = f"code {received.code}" + (f" ({received.reason})" if received.reason else "")
        text = f"the server closed the WebSocket: {why}"
    elif exc.sent is not None:
        # The reason says what the server did wrong (a frame over max_size, reserved bits set).
        why = f"code {exc.sent.code}" + (f": {exc.sent.reason}" if exc.sent.reason else "")
        text = f"the WebSocket was closed by mpnet ({why})"
    else:
        text = "the connection was lost without a WebSocket close frame"
    return ProtocolError(text, phase=phase, kind="closed")
