"""render_waterfall: order, labels, bar placement (pure)."""

from __future__ import annotations

import pytest
from rich.console import Console

from mpnet.render.waterfall import format_ms, render_waterfall


def _lines(phases: dict[str, float], width: int = 20) -> list[str]:
    console = Console(width=120, record=True, color_system=None)
    console.print(render_waterfall(phases, width=width))
    return [line.rstrip() for line in console.export_text().splitlines() if line.strip()]


def test_phases_in_connection_order_with_total() -> None:
    lines = _lines({"ws_upgrade": 4.0, "dns": 1.0, "tls": 10.0, "tcp": 5.0})
    labels = [line.split("  ")[0].strip() for line in lines]
    assert labels == ["DNS lookup", "TCP connect", "TLS handshake", "WebSocket upgrade", "total"]
    assert "20.0 ms" in lines[-1]


def test_each_bar_starts_where_the_previous_ended() -> None:
    # 20 cells for 20 ms: one cell per millisecond.
    lines = _lines({"dns": 5.0, "tcp": 5.0, "tls": 10.0}, width=20)
    bars = [line[line.index("ms") + 2 :] for line in lines[:3]]
    starts = [len(bar) - len(bar.lstrip()) for bar in bars]
    lengths = [bar.count("█") for bar in bars]
    assert lengths == [5, 5, 10]
    assert starts[1] - starts[0] == 5 and starts[2] - starts[1] == 5


def test_tiny_phase_still_shows() -> None:
    lines = _lines({"dns": 0.001, "tcp": 100.0})
    assert "▏" in lines[0]


def test_ping_is_drawn_apart_from_the_timeline() -> None:
    lines = _lines({"dns": 1.0, "ping_rtt": 3.0})
    assert lines[-1].startswith("ping round trip")
    assert "1.00 ms" in lines[-2]  # the total excludes the ping


def test_empty_phases_render_nothing() -> None:
    assert _lines({}) == []


@pytest.mark.parametrize(
    ("value", "text"), [(0.4236, "0.42 ms"), (12.345, "12.3 ms"), (1234.5, "1234 ms")]
)
def test_format_ms(value: float, text: str) -> None:
    assert format_ms(value) == text
