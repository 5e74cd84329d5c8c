"""The ``aiohttp`` backend: ``ClientSession.ws_connect`` over a connection :func:`dial` made.

aiohttp is handed the dialled (proxied, TLS-wrapped) transport through a one-shot connector,
so proxies and TLS follow mpnet's decisions exactly, as with the websockets backend, and the
same phases are measured: ``dns``, ``tcp``, ``proxy``, ``tls`` by :func:`dial`; ``ws_upgrade``
here is ``ws_connect`` from request to 101, which includes aiohttp's own request setup (a
fraction of a millisecond more than the websockets backend shows).

Limits of this backend: a refused upgrade carries status and headers but no body (aiohttp does
not read it), and :meth:`AiohttpBackend.ping` reads frames itself, so it must not run
concurrently with :meth:`AiohttpBackend.recv` (aiohttp allows one reader at a time).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import os
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler

from mpnet.errors import Phase, ProtocolError, WebSocketHandshakeError
from mpnet.net.dial import DialedConnection, PhaseTimings
from mpnet.net.ws import hand_over

CLOSE_TIMEOUT = 2.0


class _DialedConnector(aiohttp.TCPConnector):
    """Hands aiohttp the one connection :func:`dial` already opened, instead of opening one.

    Overrides aiohttp's connection factory (``_create_connection``), the same seam that
    aiohttp-socks uses for its proxy connectors.
    """

    def __init__(self, dialed: DialedConnection) -> None:
        super().__init__(force_close=True, limit=1)
        self._dialed: DialedConnection | None = dialed

    async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> ResponseHandler:
        dialed, self._dialed = self._dialed, None
        if dialed is None:
            raise aiohttp.ClientConnectionError("the dialled connection was already used")
        protocol = ResponseHandler(asyncio.get_running_loop())
        transport = dialed.writer.transport
        hand_over(transport, protocol)
        protocol.connection_made(transport)
        return protocol


class AiohttpBackend:
    """One open WebSocket through aiohttp (see :class:`mpnet.net.ws.WebSocketWrapper`)."""

    name = "aiohttp"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        ws: aiohttp.ClientWebSocketResponse,
        dialed: DialedConnection,
    ) -> None:
        self._session = session
        self._ws = ws
        # Keeps dial()'s stream writer alive while aiohttp owns its transport (see websockets).
        self._dialed = dialed
        #: The headers of the server's 101 answer (which CDN edge answered, say).
        self.upgrade_headers: dict[str, str] = {}
        # Data frames read while ping() waited for its pong.
        self._pending: collections.deque[str | bytes] = collections.deque()
        self._close_code: int | None = None
        self._close_reason: str | None = None

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
    ) -> AiohttpBackend:
        """Run ``ws_connect`` over ``dialed``.

        Raises:
            WebSocketHandshakeError: the server answered with another status than 101.
            ProtocolError: the answer was not a valid upgrade, or the connection closed.
        """
        answered: dict[str, str] = {}

        async def keep_headers(_session: object, _context: object, params: Any) -> None:
            # aiohttp keeps the 101 answer private; its trace hook hands it over publicly.
            answered.update(params.response.headers)

        tracing = aiohttp.TraceConfig()
        tracing.on_request_end.append(keep_headers)
        session = aiohttp.ClientSession(
            connector=_DialedConnector(dialed),
            # mpnet has decided proxies and TLS already: nothing from the environment.
            trust_env=False,
            trace_configs=[tracing],
        )
        # aiohttp retries an idempotent request whose connection dropped on a new connection;
        # there is no other one here, and the retry would hide why the first one failed.
        # (Private attribute; aiohttp's own test client turns the retry off the same way.)
        session._retry_connection = False
        try:
            with timings.measure(Phase.WS_UPGRADE):
                ws = await session.ws_connect(
                    url,
                    headers=dict(headers or {}),
                    max_msg_size=max_size or 0,
                    compress=15 if compression == "deflate" else 0,
                    # Pongs are needed to time ping(); server pings are answered in recv().
                    autoping=False,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT),
                )
        except aiohttp.WSServerHandshakeError as exc:
            await _abandon(session, dialed)
            raise WebSocketHandshakeError(
                # aiohttp's message for a 2xx is "Invalid response status": the standard
                # phrase says more.
                WebSocketHandshakeError.describe(
                    url, exc.status, "" if 200 <= exc.status < 300 else exc.message
                ),
                status=exc.status,
                headers=dict(exc.headers or {}),
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            await _abandon(session, dialed)
            cut = _cut_kind(exc)
            if cut is not None:
                raise ProtocolError(
                    f"the connection was {cut} during the WebSocket upgrade of {url}, before "
                    "any answer",
                    phase=Phase.WS_UPGRADE,
                    kind=cut,
                ) from exc
            raise ProtocolError(
                f"WebSocket upgrade of {url} failed: {_one_line(exc)}",
                phase=Phase.WS_UPGRADE,
                kind="invalid_handshake",
            ) from exc
        except BaseException:
            await _abandon(session, dialed)
            raise
        backend = cls(session, ws, dialed)
        backend.upgrade_headers = answered
        return backend

    @property
    def closed(self) -> bool:
        return self._ws.closed

    @property
    def close_code(self) -> int | None:
        return self._close_code if self._close_code is not None else self._ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self._close_reason

    async def send(self, data: str | bytes) -> None:
        if self._ws.closed:
            raise self._closed_error()
        try:
            if isinstance(data, str):
                await self._ws.send_str(data)
            else:
                await self._ws.send_bytes(data)
        except (aiohttp.ClientError, OSError) as exc:
            raise self._closed_error() from exc

    async def recv(self) -> str | bytes:
        if self._pending:
            return self._pending.popleft()
        while True:
            message = await self._next_frame(Phase.FIRST_MESSAGE)
            if isinstance(message, str | bytes):
                return message

    async def ping(self) -> float:
        payload = os.urandom(4)
        started = time.perf_counter_ns()
        try:
            await self._ws.ping(payload)
        except (aiohttp.ClientError, OSError) as exc:
            raise self._closed_error(Phase.PING_RTT) from exc
        while True:
            message = await self._next_frame(Phase.PING_RTT, pong=payload)
            if message is None:
                continue
            if isinstance(message, _Pong):
                return (time.perf_counter_ns() - started) / 1e6
            self._pending.append(message)

    async def _next_frame(self, phase: Phase, pong: bytes | None = None) -> Any:
        """One frame: data as str/bytes, ``_Pong`` for the awaited pong, None for control."""
        msg = await self._ws.receive()
        kind = msg.type
        if kind is aiohttp.WSMsgType.TEXT or kind is aiohttp.WSMsgType.BINARY:
            return msg.data
        if kind is aiohttp.WSMsgType.PING:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                await self._ws.pong(msg.data)
            return None
        if kind is aiohttp.WSMsgType.PONG:
            return _Pong() if pong is not None and msg.data == pong else None
        if kind is aiohttp.WSMsgType.CLOSE:
            # Remembered from the frame: aiohttp's close() may overwrite ws.close_code.
            self._close_code = msg.data if isinstance(msg.data, int) else None
            self._close_reason = msg.extra or None
            with contextlib.suppress(aiohttp.ClientError, OSError):
                await self._ws.close()
        if kind is aiohttp.WSMsgType.ERROR:
            raise ProtocolError(
                f"WebSocket protocol error: {msg.data}", phase=phase, kind="protocol"
            ) from (msg.data if isinstance(msg.data, BaseException) else None)
        raise self._closed_error(phase)

    def _closed_error(self, phase: Phase = Phase.FIRST_MESSAGE) -> ProtocolError:
        code = self.close_code
        if code is None or code == 1006:
            text = "the connection was lost without a WebSocket close frame"
        else:
            reason = f" ({self._close_reason})" if self._close_reason else ""
            text = f"the server closed the WebSocket: code {code}{reason}"
        return ProtocolError(text, phase=phase, kind="closed")

    async def close(self) -> None:
        try:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                await self._ws.close()
        finally:
            await self._session.close()


def _cut_kind(exc: BaseException) -> str | None:
    """``reset`` or ``closed`` when ``exc`` means the peer ended the connection, else None."""
    if isinstance(exc, ConnectionResetError) or getattr(exc, "errno", None) == errno.ECONNRESET:
        return "reset"
    if isinstance(exc, (aiohttp.ServerDisconnectedError, ConnectionError)):
        return "closed"
    return None


class _Pong:
    """Marks the pong that answers ping()."""


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line: aiohttp's parser errors quote the whole bad answer."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def _abandon(session: aiohttp.ClientSession, dialed: DialedConnection) -> None:
    dialed.writer.transport.abort()
    await session.close()
