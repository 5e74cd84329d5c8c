"""A phase waterfall (pure), like httpstat: one row per phase, each bar starting where the
previous phase ended, scaled to the whole connection.

``ping_rtt`` is not part of the connection's timeline (it is measured on the open connection),
so it is drawn from its own origin below the total.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from rich.table import Table
from rich.text import Text

from mpnet.core.result import PHASE_ORDER

#: Phases measured apart from the connection timeline.
DETACHED_PHASES = ("ping_rtt",)
PHASE_LABELS = {
    "bootstrap": "bootstrap",
    "dns": "DNS lookup",
    "tcp": "TCP connect",
    "proxy": "proxy handshake",
    "tls": "TLS handshake",
    "http": "HTTP first byte",
    "ws_upgrade": "WebSocket upgrade",
    "first_message": "first message",
    "ping_rtt": "ping round trip",
}
PHASE_STYLES = {
    "bootstrap": "magenta",
    "dns": "cyan",
    "tcp": "green",
    "proxy": "yellow",
    "tls": "blue",
    "http": "bright_magenta",
    "ws_upgrade": "bright_magenta",
    "first_message": "bright_cyan",
    "ping_rtt": "white",
}


def format_ms(value: float) -> str:
    """``0.42 ms``, ``12.3 ms``, ``1234 ms``: three significant figures at most."""
    if value < 10:
        return f"{value:.2f} ms"
    if value < 100:
        return f"{value:.1f} ms"
    return f"{value:.0f} ms"


def _ordered(phases: Mapping[str, float]) -> list[tuple[str, float]]:
    known = [(name, phases[name]) for name in PHASE_ORDER if name in phases]
    unknown = [(name, value) for name, value in phases.items() if name not in PHASE_ORDER]
    return known + unknown


def _bar(start: float, length: float, scale: float, width: int, style: str) -> Text:
    offset = round(start * scale) if scale else 0
    cells = round(length * scale) if scale else 0
    offset = min(offset, width - 1)
    bar = Text(" " * offset)
    if cells >= 1:
        bar.append("█" * min(cells, width - offset), style=style)
    else:
        # Too short to fill a cell at this scale, but it happened: show a sliver.
        bar.append("▏", style=style)
    return bar


#: Put before a figure that may include event-loop lag (as in the probe table).
UNCERTAIN_MARK = "~"


def render_waterfall(
    phases: Mapping[str, float],
    *,
    width: int = 40,
    uncertain: Collection[str] = (),
    tcp_rtt_kernel_ms: float | None = None,
    notes: Mapping[str, str] | None = None,
) -> Table:
    """A Rich table: phase, milliseconds, and a bar placed on the connection's timeline.

    Args:
        phases: ``{phase: ms}`` as in :meth:`mpnet.net.dial.PhaseTimings.to_dict` or a probe
            result; phases are shown in connection order, unknown names last.
        width: cells available to the bars.
        uncertain: phases whose figure may include event-loop lag; marked with ``~``.
        tcp_rtt_kernel_ms: the kernel's RTT of the TCP connection, shown beside ``tcp``.
        notes: a short note to show beside a phase (``{"http": "edge CloudFront NRT57"}``).
    """
    ordered = _ordered(phases)
    timeline = [(n, v) for n, v in ordered if n not in DETACHED_PHASES]
    detached = [(n, v) for n, v in ordered if n in DETACHED_PHASES]
    total = sum(v for _, v in timeline)
    longest = max([total, *(v for _, v in detached)], default=0.0)
    scale = width / longest if longest > 0 else 0.0

    table = Table(show_header=False, box=None, pad_edge=False, padding=(0, 1))
    table.add_column("phase", no_wrap=True)
    table.add_column("ms", justify="right", no_wrap=True)
    table.add_column("bar", no_wrap=True, min_width=width)
    kernel = tcp_rtt_kernel_ms is not None and "tcp" in phases
    side = {name: text for name, text in (notes or {}).items() if name in phases}
    if kernel:
        side["tcp"] = "; ".join(
            filter(None, (f"kernel RTT {format_ms(tcp_rtt_kernel_ms or 0.0)}", side.get("tcp")))
        )
    if side:
        table.add_column("note", no_wrap=True)

    def row(name: str, value: float, bar: Text) -> None:
        style = PHASE_STYLES.get(name, "white")
        figure = format_ms(value)
        cells: list[Text | str] = [
            Text(PHASE_LABELS.get(name, name), style=style),
            UNCERTAIN_MARK + figure if name in uncertain else figure,
            bar,
        ]
        if side:
            cells.append(Text(side.get(name, ""), style="dim"))
        table.add_row(*cells)

    start = 0.0
    for name, value in timeline:
        row(name, value, _bar(start, value, scale, width, PHASE_STYLES.get(name, "white")))
        start += value
    if timeline:
        shaky = any(name in uncertain for name, _ in timeline)
        figure = (UNCERTAIN_MARK if shaky else "") + format_ms(total)
        table.add_row(Text("total", style="bold"), Text(figure, style="bold"), "")
    for name, value in detached:
        row(name, value, _bar(0.0, value, scale, width, PHASE_STYLES.get(name, "white")))
    return table
