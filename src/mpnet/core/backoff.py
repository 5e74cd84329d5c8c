"""Retry delays (pure): exponential backoff with full jitter, and ``Retry-After`` parsing.

Shared by ``request_with_retry`` (HTTP) and the reconnecting WebSocket. No clock, no sleeping:
the caller passes the random source and the current time in.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime

# 2**64 times any sane initial delay is far beyond any sane maximum; stopping the exponent here
# keeps the arithmetic finite for absurd attempt numbers.
_MAX_EXPONENT = 64


def backoff_ceiling(attempt: int, *, initial: float, maximum: float) -> float:
    """The largest delay allowed before retry ``attempt``: ``min(maximum, initial * 2**attempt)``.

    Args:
        attempt: 0 for the delay after the first failure, 1 after the second, ...

    Raises:
        ValueError: a negative attempt, initial or maximum.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, not {attempt}")
    if initial < 0 or maximum < 0:
        raise ValueError(f"delays must be >= 0 (initial={initial}, maximum={maximum})")
    return min(maximum, initial * 2.0 ** min(attempt, _MAX_EXPONENT))


def backoff_delay(
    attempt: int, *, initial: float, maximum: float, random: Callable[[], float]
) -> float:
    """Seconds to wait before retry ``attempt``, with full jitter.

    Full jitter (``uniform(0, min(maximum, initial * 2**attempt))``) spreads clients that failed
    together over the whole window, so they do not come back in lockstep (AWS Architecture Blog,
    "Exponential Backoff And Jitter").

    Args:
        attempt: 0 for the delay after the first failure, 1 after the second, ...
        initial: the window for attempt 0, in seconds.
        maximum: the window never grows beyond this, in seconds.
        random: returns a float in [0, 1), e.g. :func:`random.random`.

    Raises:
        ValueError: a negative attempt, initial or maximum.
    """
    return random() * backoff_ceiling(attempt, initial=initial, maximum=maximum)


def parse_retry_after(value: str, *, now: float) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header (RFC 9110 section 10.2.3).

    The value is either a non-negative integer of seconds or an HTTP-date; a date in the past
    means "now" (0.0).

    Args:
        value: the header value as received.
        now: the current Unix time, to turn an HTTP-date into a delay.

    Returns:
        The delay in seconds, or None when the value is neither form.
    """
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # "-0000" parses without a zone; HTTP-dates are always GMT.
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
