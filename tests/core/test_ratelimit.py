"""Rate-limit decisions (pure): which answers start a wait, how long, and the pacing state."""

from __future__ import annotations

import math
from email.utils import formatdate

import pytest

from mpnet.core.ratelimit import (
    DEFAULT_WAIT_S,
    ExchangeBudget,
    RateLimit,
    Wait,
    wait_for,
)

NOW = 1_800_000_030.0  # 30 s into a minute
BINANCE = RateLimit(requests_per_s=1, weight_header="X-MBX-USED-WEIGHT-1M", weight_limit=6000)


@pytest.mark.parametrize(
    ("status", "headers", "seconds", "cause", "reason"),
    [
        (429, {"Retry-After": "7"}, 7.0, "http_429", "HTTP 429 with Retry-After: 7"),
        (429, {"retry-after": " 0 "}, 0.0, "http_429", "Retry-After:  0 "),
        (418, {"Retry-After": "120"}, 120.0, "http_418", "HTTP 418 with Retry-After: 120"),
        (
            429,
            {"Retry-After": formatdate(NOW + 42, usegmt=True)},
            42.0,
            "http_429",
            "GMT",
        ),
        # A date in the past asks for no wait at all.
        (429, {"Retry-After": formatdate(NOW - 5, usegmt=True)}, 0.0, "http_429", "GMT"),
        (429, {}, DEFAULT_WAIT_S[429], "http_429", "without Retry-After: mpnet waits 60 s"),
        (418, {}, 120.0, "http_418", "HTTP 418 without Retry-After: mpnet waits 120 s"),
        (429, {"Retry-After": "soon"}, 60.0, "http_429", "unreadable Retry-After 'soon'"),
        (429, {"Retry-After": "-3"}, 60.0, "http_429", "unreadable"),
        # A wait longer than Binance's longest ban (3 days) is cut to it.
        (429, {"Retry-After": "9" * 30}, 3 * 86_400.0, "http_429", "Retry-After: 999"),
        # Near the weight limit (90 %): until the minute window resets, plus a 1 s margin.
        (200, {"x-mbx-used-weight-1m": "5400"}, 31.0, "weight", "5400 of 6000 used"),
        (200, {"X-MBX-USED-WEIGHT-1M": "5999"}, 31.0, "weight", "until the window resets"),
    ],
)
def test_answers_that_start_a_wait(
    status: int, headers: dict[str, str], seconds: float, cause: str, reason: str
) -> None:
    wait = wait_for(status, headers, now=NOW, limit=BINANCE)
    assert wait is not None
    assert wait.seconds == pytest.approx(seconds, abs=1e-6)
    assert wait.cause == cause
    assert reason in wait.reason


@pytest.mark.parametrize(
    ("status", "headers", "limit"),
    [
        (200, {}, BINANCE),
        (200, {"X-MBX-USED-WEIGHT-1M": "5399"}, BINANCE),  # under 90 %
        (200, {"X-MBX-USED-WEIGHT-1M": "lots"}, BINANCE),
        (200, {"X-MBX-USED-WEIGHT-1M": "nan"}, BINANCE),
        (200, {"X-MBX-USED-WEIGHT-1M": "5999"}, None),  # no profile limit: no weight rule
        (200, {"X-MBX-USED-WEIGHT-1M": "5999"}, RateLimit(requests_per_s=1)),
        (451, {"Retry-After": "7"}, BINANCE),  # only 429 and 418 are rate limits
        (503, {"Retry-After": "7"}, BINANCE),
        (None, {"Retry-After": "7"}, BINANCE),
    ],
)
def test_answers_that_start_no_wait(
    status: int | None, headers: dict[str, str], limit: RateLimit | None
) -> None:
    assert wait_for(status, headers, now=NOW, limit=limit) is None


def test_a_wait_skips_requests_until_it_ends_and_the_longest_wins() -> None:
    budget = ExchangeBudget("binance", None)
    assert budget.skip(now=100.0) is None
    budget.note(Wait(7.0, "http_429", "HTTP 429 with Retry-After: 7"), at=100.0)
    skip = budget.skip(now=101.0)
    assert skip is not None
    assert (skip.exchange, skip.cause, skip.remaining_s) == ("binance", "http_429", 6.0)
    assert skip.message == (
        "not sent: binance asked to wait (HTTP 429 with Retry-After: 7); 6.0 s left"
    )
    # A shorter wait noted later does not cut the running one short.
    budget.note(Wait(1.0, "http_429", "HTTP 429 with Retry-After: 1"), at=102.0)
    assert budget.wait_ends() == 107.0
    # A longer one extends it, and its reason is the one shown.
    budget.note(Wait(120.0, "http_418", "HTTP 418 with Retry-After: 120"), at=103.0)
    later = budget.skip(now=110.0)
    assert later is not None and later.cause == "http_418" and later.remaining_s == 113.0
    assert budget.skip(now=223.0) is None


def test_a_weight_skip_says_the_limit_is_near() -> None:
    budget = ExchangeBudget("binance", BINANCE)
    wait = wait_for(200, {"X-MBX-USED-WEIGHT-1M": "5500"}, now=NOW, limit=BINANCE)
    assert wait is not None
    budget.note(wait, at=0.0)
    skip = budget.skip(now=1.0)
    assert skip is not None
    assert skip.message.startswith("not sent: binance is near its rate limit (X-MBX-USED")
    assert skip.to_dict()["cause"] == "weight"


@pytest.mark.parametrize(
    ("per_second", "last_sent", "now", "expected"),
    [
        (2.0, None, 10.0, 10.0),  # nothing sent yet: now
        (2.0, 10.0, 10.1, 10.5),  # 0.5 s apart
        (2.0, 10.0, 11.0, 11.0),  # already long enough ago
        (0.25, 10.0, 10.0, 14.0),
        (None, 10.0, 10.0, 10.0),  # no rate_limit: no pacing
    ],
)
def test_requests_start_at_least_one_over_the_rate_apart(
    per_second: float | None, last_sent: float | None, now: float, expected: float
) -> None:
    limit = RateLimit(requests_per_s=per_second) if per_second is not None else None
    budget = ExchangeBudget("okx", limit)
    if last_sent is not None:
        budget.sent(now=last_sent)
    assert budget.next_send(now=now) == pytest.approx(expected)


def test_spacing_and_no_wait_at_start() -> None:
    assert RateLimit(requests_per_s=4).spacing_s == 0.25
    budget = ExchangeBudget("okx", RateLimit(requests_per_s=3))
    assert budget.wait_ends() == -math.inf
