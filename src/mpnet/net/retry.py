"""Requests on a pooled aiohttp session, retried: :func:`request_with_retry`.

Connection errors, timeouts, 429 and 5xx are retried with full-jitter backoff (or the answer's
``Retry-After``); :func:`is_retryable_error` and :func:`is_retryable_status` say what is worth
another try. Every attempt's timings (from the session's trace hooks,
:class:`~mpnet.net.sessions.AttemptClock`) come back in :class:`RetryResponse.history`, and every
exception aiohttp raises leaves as an :mod:`mpnet.errors` class
(:func:`~mpnet.net.translate.translate_client_error`).
"""

from __future__ import annotations

import asyncio
import random as _random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from mpnet.core.backoff import backoff_delay, parse_retry_after
from mpnet.core.proxy_url import redact_url_text
from mpnet.errors import (
    ConnectError,
    DNSError,
    MpnetError,
    Phase,
    ProbeError,
    ProbeTimeout,
    ProtocolError,
    ProxyAuthError,
    ProxyDenied,
    ProxyError,
    ProxyUnreachable,
    TLSError,
    UsageError,
)
from mpnet.net.dial import release_frames
from mpnet.net.exchange import header_lookup, parse_json
from mpnet.net.sessions import AttemptClock, HTTPSessionManager, session_info
from mpnet.net.translate import is_network_error, translate_client_error
from mpnet.net.tunnel import proxy_auth_error

if TYPE_CHECKING:
    import aiohttp


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt of :func:`request_with_retry`.

    ``phases`` holds milliseconds: ``connect`` (TCP + proxy + TLS together; 0.0 on a reused
    connection), ``http`` (request sent to response headers), ``total`` (start to body read),
    and ``dns`` when aiohttp resolved a name. Sessions not made by :class:`HTTPSessionManager`
    have no trace hooks and report ``total`` only. ``delay`` is the pause that followed it.
    """

    number: int
    phases: Mapping[str, float]
    status: int | None = None
    error: ProbeError | None = None
    reused_connection: bool = False
    delay: float | None = None
    retry_after: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "status": self.status,
            "error": self.error.to_dict() if self.error else None,
            "reused_connection": self.reused_connection,
            "delay": self.delay,
        }


@dataclass(frozen=True, slots=True)
class RetryResponse:
    """The last answer of :func:`request_with_retry` and every attempt that led to it.

    ``headers`` has lower-case names; use :meth:`header` for a case-insensitive lookup.
    """

    url: str
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    history: tuple[AttemptRecord, ...] = field(default=())

    @property
    def attempts(self) -> int:
        return len(self.history)

    @property
    def elapsed_ms(self) -> tuple[Mapping[str, float], ...]:
        """Per-attempt phase timings, in attempt order."""
        return tuple(record.phases for record in self.history)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400

    def header(self, name: str, default: str | None = None) -> str | None:
        return header_lookup(self.headers, name, default)

    def json(self) -> Any:
        """The body parsed as JSON. Raises ProtocolError (kind ``invalid_json``)."""
        return parse_json(self.body, url=self.url)


def is_retryable_status(status: int) -> bool:
    """429 and 5xx are worth another try; every other answer is final."""
    return status == 429 or 500 <= status <= 599


def is_retryable_error(error: MpnetError) -> bool:
    """Connection failures and timeouts are worth another try. Certificate problems, proxy
    refusals, names that do not exist and bad input give the same answer every time."""
    if isinstance(error, ProxyAuthError | ProxyDenied | TLSError):
        return False
    if isinstance(error, DNSError):
        return error.kind == "no_resolver"
    if isinstance(error, ProxyUnreachable) and error.phase is Phase.DNS:
        return error.kind == "no_resolver"
    if isinstance(error, ProtocolError):
        return error.kind == "closed"
    return isinstance(error, ConnectError | ProbeTimeout | ProxyError)


_REFUSED_KWARGS = ("proxy", "proxy_auth", "proxy_headers", "ssl", "verify_ssl", "trace_request_ctx")


async def request_with_retry(
    method: str,
    url: str,
    *,
    session: aiohttp.ClientSession | None = None,
    session_name: str = "default",
    manager: HTTPSessionManager | None = None,
    max_attempts: int = 3,
    base_delay: float = 0.5,
    max_delay: float = 10.0,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    random: Callable[[], float] = _random.random,
    **kwargs: Any,
) -> RetryResponse:
    """Send a request, retrying connection errors, timeouts, 429 and 5xx.

    The pause before retry ``n`` (0-based) is ``Retry-After`` when the answer carries one
    (seconds or HTTP-date, at most ``max_delay``), else full jitter
    ``uniform(0, min(max_delay, base_delay * 2**n))``. 4xx answers other than 429 are final. A
    407 answer (a proxy in front of a plain-http target) raises ProxyAuthError, as it does for
    https targets. Note that a POST is retried too: pass ``max_attempts=1`` when the request is
    not safe to repeat.

    Args:
        session: the session to use; else ``manager``'s open session ``session_name``.
        max_attempts: 1 means no retry.
        sleep, random: injectable for tests (``sleep(seconds)``, ``random() -> [0, 1)``).
        kwargs: passed to :meth:`aiohttp.ClientSession.request` (``json``, ``headers``,
            ``params``, ``data``, ``timeout`` ...). Proxy and TLS arguments are refused: the
            session's decisions apply.

    Returns:
        The last answer (which may be a 429 or 5xx when every attempt got one).

    Raises:
        UsageError: no session to use, a refused keyword, or ``max_attempts < 1``.
        DNSError, ConnectError, ProxyError, TLSError, ProbeTimeout, ProtocolError: the last
            attempt's failure, translated from aiohttp's exception.
    """
    if max_attempts < 1:
        raise UsageError(f"max_attempts must be at least 1, not {max_attempts}")
    refused = sorted(k for k in kwargs if k in _REFUSED_KWARGS)
    if refused:
        raise UsageError(
            f"request_with_retry does not take {', '.join(refused)}: the session's proxy and "
            "TLS decisions apply"
        )
    if session is None:
        session = manager.existing(session_name) if manager is not None else None
        if session is None:
            raise UsageError(
                f"no open HTTP session {session_name!r}: pass session= or create it with "
                "HTTPSessionManager.get_session() first"
            )
    info = session_info(session)
    proxy = info.proxy.proxy if info else None
    history: list[AttemptRecord] = []
    for attempt in range(max_attempts):
        last = attempt == max_attempts - 1
        clock = AttemptClock(started=time.perf_counter_ns())
        try:
            response = await _attempt(session, method, url, clock, kwargs)
        except MpnetError as error:
            # Kept in the history or raised to a caller that keeps it: the finished frames in
            # its traceback (aiohttp's connection, transport, SSL objects) need not be.
            release_frames(error)
            record = AttemptRecord(
                number=attempt + 1,
                phases=clock.phases(),
                error=error if isinstance(error, ProbeError) else None,
                reused_connection=clock.reused_at is not None,
            )
            if last or not is_retryable_error(error):
                raise
            delay = backoff_delay(attempt, initial=base_delay, maximum=max_delay, random=random)
            history.append(_with_delay(record, delay))
            await sleep(delay)
            continue
        status, reason, headers, body = response
        record = AttemptRecord(
            number=attempt + 1,
            phases=clock.phases(),
            status=status,
            reused_connection=clock.reused_at is not None,
        )
        if status == 407:
            history.append(record)
            shown = f"{status} {reason}".strip()
            if proxy is None:
                shown_url = redact_url_text(url)
                raise ProxyAuthError(f"a proxy wants credentials for {shown_url}: {shown}")
            # The same error, worded the same, as a CONNECT or an absolute-form request gets.
            raise proxy_auth_error(
                proxy,
                redact_url_text(url),
                shown,
                status=status,
                headers=headers,
                body=body,
                phase=Phase.HTTP,
            )
        if last or not is_retryable_status(status):
            history.append(record)
            return RetryResponse(
                url=url,
                status=status,
                reason=reason,
                headers=headers,
                body=body,
                history=tuple(history),
            )
        retry_after = _retry_after(headers, max_delay)
        if retry_after is not None:
            delay = retry_after
        else:
            delay = backoff_delay(attempt, initial=base_delay, maximum=max_delay, random=random)
        history.append(_with_delay(record, delay, retry_after=retry_after))
        await sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _with_delay(
    record: AttemptRecord, delay: float, *, retry_after: float | None = None
) -> AttemptRecord:
    return replace(record, delay=delay, retry_after=retry_after)


def _retry_after(headers: Mapping[str, str], max_delay: float) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = parse_retry_after(value, now=time.time())
    return None if seconds is None else min(seconds, max_delay)


async def _attempt(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    clock: AttemptClock,
    kwargs: Mapping[str, Any],
) -> tuple[int, str, dict[str, str], bytes]:
    info = session_info(session)
    proxy = info.proxy.proxy if info else None
    try:
        async with session.request(method, url, trace_request_ctx=clock, **kwargs) as response:
            if clock.headers_at is None:
                clock.headers_at = time.perf_counter_ns()
            body = await response.read()
            clock.finished = time.perf_counter_ns()
            headers: dict[str, str] = {}
            for name, value in response.headers.items():
                key = name.lower()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
            return response.status, response.reason or "", headers, body
    except Exception as exc:
        clock.finished = time.perf_counter_ns()
        if isinstance(exc, MpnetError):
            raise
        if not is_network_error(exc):
            raise
        # aiohttp times TCP, proxy and TLS as one step; a proxy that hangs is the common case.
        connecting = Phase.PROXY if proxy is not None else Phase.TCP
        phase = Phase.HTTP if clock.connected else connecting
        raise translate_client_error(exc, url=url, proxy=proxy, phase=phase) from exc


__all__ = [
    "AttemptRecord",
    "RetryResponse",
    "is_retryable_error",
    "is_retryable_status",
    "request_with_retry",
]
