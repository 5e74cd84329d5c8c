"""Rate limits (pure): when an exchange has asked us to wait, and how far apart requests go.

An exchange that answers ``429 Too Many Requests`` or ``418`` (Binance: "this IP is banned for
repeating 429s") says how long to stay away in ``Retry-After`` (RFC 9110 §10.2.3: seconds, or
an HTTP-date; :func:`mpnet.core.backoff.parse_retry_after` reads it). A Binance-style weight
header (``X-MBX-USED-WEIGHT-1M: 5512``) says how much of the per-minute budget this IP has
used; near the limit (:data:`WEIGHT_NEAR`) mpnet stops until the window resets rather than
earn a 429. :func:`wait_for` turns one answer into a :class:`Wait`; :class:`ExchangeBudget` is
one exchange's state (when the wait ends, when the last request went out) driven by explicit
clock readings, so the asyncio gate in :mod:`mpnet.probe.pacing` only sleeps and the decisions
are tested without a loop.

Without ``Retry-After`` the wait is :data:`DEFAULT_WAIT_S` for the status: 60 s for 429 (the
exchanges' limits count per minute), 120 s for 418 (Binance's shortest ban is 2 minutes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from mpnet.core.backoff import parse_retry_after

#: Seconds to wait after a refusal that carries no usable Retry-After, by status.
DEFAULT_WAIT_S: Mapping[int, float] = {429: 60.0, 418: 120.0}
#: Statuses that mean "too many requests from you": they always start a wait.
RATE_LIMIT_STATUSES = frozenset(DEFAULT_WAIT_S)
#: Share of a weight limit at which mpnet stops sending until the window resets (Binance bans
#: IPs that keep going past the limit; 90 % leaves room for the other programs on this IP).
WEIGHT_NEAR = 0.9
#: Added to a weight window's reset, for the difference between our clock and the exchange's.
WEIGHT_RESET_MARGIN_S = 1.0
#: The longest wait mpnet takes from one answer (Binance's longest ban is 3 days); a larger
#: Retry-After is cut to it, so a broken header cannot silence an exporter for years.
MAX_WAIT_S = 3 * 86_400.0


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A profile's ``rate_limit:`` block.

    Attributes:
        requests_per_s: the public limit mpnet keeps each exchange under: attempts (a REST
            request; a WebSocket connection, with KuCoin's bootstrap request just before it)
            start at least ``1 / requests_per_s`` apart.
        weight_header: a response header that reports the weight used in the current window
            (Binance ``X-MBX-USED-WEIGHT-1M``), or None.
        weight_limit: the weight allowed per window (Binance spot: 6000 per minute).
        weight_window_s: the window's length; windows start on multiples of it (Binance's minute
            windows start on the minute).
    """

    requests_per_s: float
    weight_header: str | None = None
    weight_limit: int | None = None
    weight_window_s: float = 60.0

    @property
    def spacing_s(self) -> float:
        """Least seconds between the starts of two requests to the exchange."""
        return 1.0 / self.requests_per_s


@dataclass(frozen=True, slots=True)
class Wait:
    """An exchange asked us to stay away for ``seconds`` (from when its answer arrived).

    ``cause`` is a fixed word for labels and machines (``http_429``, ``http_418``, ``weight``);
    ``reason`` says it for a person: ``HTTP 429 with Retry-After: 7``.
    """

    seconds: float
    cause: str
    reason: str


@dataclass(frozen=True, slots=True)
class Skip:
    """Why an attempt was not sent: the exchange's wait had not ended.

    ``remaining_s`` is what was left of the wait when the attempt's turn came.
    """

    exchange: str
    cause: str
    reason: str
    remaining_s: float

    @property
    def message(self) -> str:
        """``not sent: binance asked to wait (HTTP 429 with Retry-After: 7); 6.9 s left``."""
        asked = "is near its rate limit" if self.cause == "weight" else "asked to wait"
        return (
            f"not sent: {self.exchange} {asked} ({self.reason}); {_seconds(self.remaining_s)} left"
        )

    def to_dict(self) -> dict[str, str | float]:
        return {
            "cause": self.cause,
            "reason": self.reason,
            "remaining_s": round(self.remaining_s, 3),
            "message": self.message,
        }


def wait_for(
    status: int | None,
    headers: Mapping[str, str],
    *,
    now: float,
    limit: RateLimit | None = None,
) -> Wait | None:
    """The wait one HTTP answer asks for, or None when it asks for none.

    Args:
        status: the answer's status (None when there was no answer).
        headers: its headers (any case).
        now: the Unix time at which it arrived.
        limit: the exchange's profile ``rate_limit`` (for the weight header), if any.
    """
    if status in RATE_LIMIT_STATUSES:
        default = DEFAULT_WAIT_S[status]
        raw = _header(headers, "retry-after")
        seconds = parse_retry_after(raw, now=now) if raw is not None else None
        if seconds is not None:
            return Wait(
                min(seconds, MAX_WAIT_S), f"http_{status}", f"HTTP {status} with Retry-After: {raw}"
            )
        if raw is None:
            reason = f"HTTP {status} without Retry-After: mpnet waits {_seconds(default)}"
        else:
            reason = f"HTTP {status} with an unreadable Retry-After {raw[:40]!r}: mpnet waits "
            reason += _seconds(default)
        return Wait(default, f"http_{status}", reason)
    if limit is not None and limit.weight_header and limit.weight_limit:
        raw = _header(headers, limit.weight_header)
        used = _number(raw)
        if used is not None and used >= WEIGHT_NEAR * limit.weight_limit:
            window = limit.weight_window_s
            seconds = window - math.fmod(now, window) + WEIGHT_RESET_MARGIN_S
            return Wait(
                seconds,
                "weight",
                f"{limit.weight_header}: {raw} of {limit.weight_limit} used, "
                f"{WEIGHT_NEAR:.0%} or more: until the window resets",
            )
    return None


class ExchangeBudget:
    """One exchange's rate-limit state, read and moved with explicit monotonic clock readings.

    Args:
        exchange: the profile name (shown in skip reasons).
        limit: the profile's ``rate_limit`` (None: no pacing, waits are still obeyed).
    """

    __slots__ = ("_last_sent", "_wait", "_wait_ends", "exchange", "limit")

    def __init__(self, exchange: str, limit: RateLimit | None) -> None:
        self.exchange = exchange
        self.limit = limit
        self._wait: Wait | None = None
        self._wait_ends = -math.inf
        self._last_sent = -math.inf

    def note(self, wait: Wait, *, at: float) -> None:
        """The exchange asked for ``wait`` at monotonic time ``at``; the longest wait wins."""
        ends = at + wait.seconds
        if ends > self._wait_ends:
            self._wait_ends = ends
            self._wait = wait

    def skip(self, *, now: float) -> Skip | None:
        """The reason not to send now (a wait is running), or None."""
        if self._wait is None or now >= self._wait_ends:
            return None
        wait = self._wait
        return Skip(self.exchange, wait.cause, wait.reason, self._wait_ends - now)

    def wait_ends(self) -> float:
        """Monotonic time at which the current wait ends (-inf without one)."""
        return self._wait_ends

    def next_send(self, *, now: float) -> float:
        """The earliest monotonic time the next request may start (``now`` or later)."""
        if self.limit is None:
            return now
        return max(now, self._last_sent + self.limit.spacing_s)

    def sent(self, *, now: float) -> float:
        """A request to the exchange starts now; returns the start it succeeds, for
        :meth:`unsent`."""
        previous = self._last_sent
        self._last_sent = max(self._last_sent, now)
        return previous

    def unsent(self, *, at: float, previous: float) -> None:
        """The request started ``at`` never reached the exchange (no address, no connection,
        the proxy refused): it does not count, unless another has started since."""
        if self._last_sent == at:
            self._last_sent = previous


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return str(value)
    return None


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"
