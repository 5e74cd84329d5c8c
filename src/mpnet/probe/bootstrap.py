"""The bootstrap request of a WebSocket target (KuCoin's token) before it connects.

:func:`run_bootstrap` is shared by the probe engine (one attempt) and the watch feed (each
reconnection).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit, urlunsplit

from mpnet.core.match import dig
from mpnet.errors import HTTPStatusError, Phase, ProbeError, ProtocolError
from mpnet.probe.plan import ProbeTarget

if TYPE_CHECKING:
    from mpnet.net.dial import PhaseTimings
    from mpnet.net.exchange import TimedResponse
    from mpnet.probe.engine import _Progress


async def _bootstrap(target: ProbeTarget, progress: _Progress) -> str:
    """The bootstrap of one attempt: its time and the answer's Date go into ``progress``."""

    def note(response: TimedResponse) -> None:
        progress.server_date = response.header("date")
        progress.local_time = response.received_at

    started = time.perf_counter_ns()
    try:
        answer = await run_bootstrap(
            target, progress.remaining(), on_response=note, timings=progress.side_timings()
        )
    except ProbeError:
        # A failed phase keeps the time spent until it failed, as PhaseTimings does.
        progress.phases["bootstrap"] = (time.perf_counter_ns() - started) / 1e6
        raise
    progress.timed("bootstrap", answer.elapsed_ms, started)
    return answer.url


@dataclass(frozen=True, slots=True)
class BootstrapAnswer:
    """The WebSocket URL (token included) a bootstrap request returned, and its time."""

    url: str
    elapsed_ms: float


async def run_bootstrap(
    target: ProbeTarget,
    timeout: float,
    *,
    on_response: Callable[[TimedResponse], None] | None = None,
    timings: PhaseTimings | None = None,
) -> BootstrapAnswer:
    """KuCoin-style token request (the profile's ``websocket.bootstrap``) before connecting.

    Args:
        target: a WebSocket target whose profile has a bootstrap.
        timeout: seconds for the request.
        on_response: sees the HTTP answer before it is checked (its Date header, say).
        timings: the request's phases, as they go (the probe engine's set-up slot follows them).

    Raises:
        ProbeError: phase ``bootstrap``: the request failed, was refused, or its answer holds
            no usable endpoint and token.
    """
    from mpnet.net.exchange import timed_request

    profile = target.profile
    spec = profile.websocket
    assert spec is not None and spec.bootstrap is not None and profile.rest is not None
    boot = spec.bootstrap
    url = profile.rest.base_url.rstrip("/") + boot.path
    started = time.perf_counter_ns()
    try:
        response = await timed_request(
            boot.method,
            url,
            proxy=target.proxy,
            tls=target.tls,
            timeout=timeout,
            headers=profile.rest.headers,
            timings=timings,
        )
    except ProbeError as exc:
        raise type(exc)(
            f"bootstrap {boot.method} {url}: {exc.message}", phase=Phase.BOOTSTRAP, kind=exc.kind
        ) from exc
    if on_response is not None:
        on_response(response)
    if not 200 <= response.status < 300:
        raise HTTPStatusError(
            f"bootstrap {boot.method} {boot.path}: HTTP {response.status} {response.reason}",
            status=response.status,
            headers=response.headers,
            body=response.body,
            phase=Phase.BOOTSTRAP,
        )
    try:
        document = response.json()
    except ProtocolError as exc:
        raise ProtocolError(exc.message, phase=Phase.BOOTSTRAP, kind=exc.kind) from exc
    endpoint, token = dig(document, boot.endpoint), dig(document, boot.token)
    if not isinstance(endpoint, str) or not isinstance(token, str):
        raise ProtocolError(
            f"bootstrap answer lacks {boot.endpoint} or {boot.token}: {_preview(response.body)}",
            phase=Phase.BOOTSTRAP,
            kind="unexpected_json",
        )
    elapsed_ms = (time.perf_counter_ns() - started) / 1e6
    values = {"token": token, "connect_id": f"mpnet{int(time.time() * 1000)}"}
    query = {key: template.format(**values) for key, template in boot.query.items()}
    # The endpoint comes from the server: a bad one is the server's fault, not a usage error.
    try:
        parts = urlsplit(endpoint)
        usable = parts.scheme.lower() in ("ws", "wss") and bool(parts.hostname)
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        usable = False
    if not usable:
        raise ProtocolError(
            f"bootstrap answer's endpoint {endpoint[:100]!r} is not a ws:// or wss:// URL",
            phase=Phase.BOOTSTRAP,
            kind="unexpected_json",
        )
    joined = "&".join(q for q in (parts.query, urlencode(query)) if q)
    ws_url = urlunsplit((parts.scheme, parts.netloc, parts.path, joined, parts.fragment))
    return BootstrapAnswer(url=ws_url, elapsed_ms=elapsed_ms)


def _preview(body: bytes, limit: int = 100) -> str:
    text = body[:limit].decode("utf-8", "replace")
    return text + ("..." if len(body) > limit else "")
