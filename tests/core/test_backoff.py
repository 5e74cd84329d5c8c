"""Backoff windows, full jitter and Retry-After parsing (pure, table-driven)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from mpnet.core.backoff import backoff_ceiling, backoff_delay, parse_retry_after

NOW = datetime(2026, 11, 3, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("attempt", "initial", "maximum", "ceiling"),
    [
        (0, 0.5, 10.0, 0.5),
        (1, 0.5, 10.0, 1.0),
        (3, 0.5, 10.0, 4.0),
        (5, 0.5, 10.0, 10.0),  # 16 capped
        (0, 2.0, 1.0, 1.0),  # maximum below initial
        (10_000, 0.5, 30.0, 30.0),  # no overflow for absurd attempts
        (4, 0.0, 10.0, 0.0),
    ],
)
def test_ceiling_doubles_until_the_maximum(
    attempt: int, initial: float, maximum: float, ceiling: float
) -> None:
    assert backoff_ceiling(attempt, initial=initial, maximum=maximum) == ceiling


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.999])
@pytest.mark.parametrize("attempt", [0, 2, 7])
def test_delay_is_the_draw_scaled_to_the_window(draw: float, attempt: int) -> None:
    ceiling = backoff_ceiling(attempt, initial=0.5, maximum=10.0)
    delay = backoff_delay(attempt, initial=0.5, maximum=10.0, random=lambda: draw)
    assert delay == pytest.approx(draw * ceiling)
    assert 0.0 <= delay < ceiling or ceiling == 0.0


@pytest.mark.parametrize(
    ("attempt", "initial", "maximum"), [(-1, 0.5, 1.0), (0, -0.5, 1.0), (0, 0.5, -1.0)]
)
def test_negative_inputs_are_refused(attempt: int, initial: float, maximum: float) -> None:
    with pytest.raises(ValueError):
        backoff_delay(attempt, initial=initial, maximum=maximum, random=lambda: 0.5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("7", 7.0),
        (" 120 ", 120.0),
        (format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True), 30.0),
        ("Tue, 03 Nov 2026 12:01:00 -0000", 60.0),  # zone-less form is GMT too
        ("Tuesday, 03-Nov-26 12:00:05 GMT", 5.0),  # obsolete RFC 850 form
        ("Tue, 03 Nov 2026 11:00:00 GMT", 0.0),  # in the past: retry now
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("١٢", None),  # non-ASCII digits are not delta-seconds
    ],
)
def test_retry_after(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected
