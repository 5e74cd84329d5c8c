"""Fault modes of the lab simulators, parsed once from ``MODE`` or ``MODE:VALUE`` text (pure).

===================  =========================================================================
``geo_block``        HTTP 451 with Binance's "restricted location" body, on REST and the upgrade
``waf``              HTTP 403 HTML page from CloudFront (``Server: CloudFront``), REST and upgrade
``rate_limit``       HTTP 429 with ``Retry-After: 7``, REST and upgrade
``slow[:S]``         answer REST and the upgrade after S seconds (the lab's ``slow_delay``)
``refuse_upgrade``   the WebSocket upgrade gets 403 with a body; REST answers normally
``no_data``          acknowledge subscriptions, never send data
``invalid_json``     REST body and WebSocket data are not JSON
``drop_after:N``     close the WebSocket (1001 going away) after N data messages
``clock_skew:S``     the simulator's clock runs S seconds off: the ``Date`` header, the server
                     times in REST answers and pongs, and the event times of data messages;
                     Gate then refuses subscriptions whose ``time`` is more than 60 s off it
``feed_lag:MS``      data messages carry event times MS milliseconds in the past (a feed that
                     arrives late); the server's clock itself stays right
``subscribe_error``  answer every subscription with the exchange's own error message
``maintenance``      the REST health answer is the exchange's maintenance answer: HTTP 200
                     from a status endpoint (Bitfinex ``[0]``, Kraken ``maintenance``, KuCoin
                     ``close``), HTTP 503 elsewhere
``no_pong``          answer neither application pings nor WebSocket ping frames
===================  =========================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mpnet.errors import UsageError, did_you_mean

#: Every fault mode, and whether its value is required (True), optional (None) or refused (False).
FAULT_MODES: dict[str, bool | None] = {
    "geo_block": False,
    "waf": False,
    "rate_limit": False,
    "slow": None,
    "refuse_upgrade": False,
    "no_data": False,
    "invalid_json": False,
    "drop_after": True,
    "clock_skew": True,
    "feed_lag": True,
    "subscribe_error": False,
    "maintenance": False,
    "no_pong": False,
}

#: Faults that answer the HTTP request (REST and WebSocket upgrade) instead of the exchange.
HTTP_REFUSALS = frozenset({"geo_block", "waf", "rate_limit"})


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault mode; ``value`` is seconds (slow, clock_skew), milliseconds (feed_lag) or a
    count (drop_after)."""

    mode: str
    value: float | None = None

    def __str__(self) -> str:
        if self.value is None:
            return self.mode
        shown = int(self.value) if self.value == int(self.value) else self.value
        return f"{self.mode}:{shown}"


def parse_fault(text: str) -> Fault:
    """Parse ``MODE`` or ``MODE:VALUE``.

    Raises:
        UsageError: unknown mode, or a missing, refused or malformed value.
    """
    mode, sep, raw = text.strip().partition(":")
    mode = mode.strip().lower().replace("-", "_")
    if mode not in FAULT_MODES:
        raise UsageError(f"unknown lab fault {text.strip()!r}; {did_you_mean(mode, FAULT_MODES)}")
    takes_value = FAULT_MODES[mode]
    if not sep:
        if takes_value:
            raise UsageError(f"lab fault {mode!r} needs a value: {mode}:{_value_hint(mode)}")
        return Fault(mode)
    if takes_value is False:
        raise UsageError(f"lab fault {mode!r} takes no value (got {text.strip()!r})")
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"lab fault {mode!r}: {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"lab fault {mode!r}: {raw!r} is not a finite number")
    if mode == "drop_after" and (value < 0 or value != int(value)):
        raise UsageError(f"lab fault 'drop_after': {raw!r} is not a whole number >= 0")
    if mode == "slow" and value < 0:
        raise UsageError(f"lab fault 'slow': {raw!r} seconds is negative")
    if mode == "feed_lag" and value < 0:
        raise UsageError(f"lab fault 'feed_lag': {raw!r} ms is negative (events in the future)")
    return Fault(mode, value)


def parse_fault_assignment(text: str) -> tuple[str, Fault]:
    """Parse the command line's ``EXCHANGE=MODE[:VALUE]``.

    Raises:
        UsageError: no ``=``, an empty exchange name, or a bad mode.
    """
    name, sep, mode = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"--fault {text!r}: expected EXCHANGE=MODE, e.g. binance=geo_block")
    return name.strip().lower(), parse_fault(mode)


def _value_hint(mode: str) -> str:
    return {"drop_after": "N", "feed_lag": "MS"}.get(mode, "SECONDS")
