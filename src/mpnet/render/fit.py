"""Fitting a view to the width it is printed at (pure): the fullest layout that fits, and lines
without trailing spaces.

The width itself is decided once, by the console that prints (``mpnet.cli.console``); the views
here only read it from the render options, so a file, a pipe and an 80-column terminal each get
the layout that fits them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

#: Wide enough for any table mpnet makes: the width a layout would take if nothing limited it.
_UNLIMITED = 10_000

L = TypeVar("L")


def natural_width(console: Console, options: ConsoleOptions, renderable: RenderableType) -> int:
    """The columns ``renderable`` takes when nothing is folded or cut."""
    return Measurement.get(console, options.update_width(_UNLIMITED), renderable).maximum


class Fitted(Generic[L]):
    """The first of ``layouts`` (fullest first) whose table fits the width it is rendered at.

    ``build(layout)`` returns the table and what goes under it; only the table is measured, the
    lines under it wrap. When none fits, the last (leanest) one is used: its text columns fold,
    its figures do not.
    """

    def __init__(
        self,
        layouts: Sequence[L],
        build: Callable[[L], tuple[RenderableType, Sequence[RenderableType]]],
        *,
        width: int | None = None,
    ) -> None:
        self.layouts = layouts
        self.build = build
        self.width = width

    def chosen(self, console: Console, options: ConsoleOptions) -> L:
        """The layout used at ``options``' width."""
        width = options.max_width if self.width is None else min(self.width, options.max_width)
        for layout in self.layouts[:-1]:
            table, _ = self.build(layout)
            if natural_width(console, options, table) <= width:
                return layout
        return self.layouts[-1]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table, under = self.build(self.chosen(console, options))
        yield table
        yield from under


class Trimmed:
    """``renderable`` with the spaces at the end of each line removed (Rich pads table cells
    and justified lines to their width), and its text wrapped at the width."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # Text wraps between words even when the console prints "soft-wrapped".
        wrapped = options.update(no_wrap=False, overflow="fold")
        for line in console.render_lines(self.renderable, wrapped, pad=False):
            yield from rstrip_segments(line)
            yield Segment.line()


def rstrip_segments(line: Iterable[Segment]) -> list[Segment]:
    """One rendered line without its trailing spaces (control segments kept)."""
    segments = list(line)
    while segments:
        last = segments[-1]
        if last.control:
            break
        text = last.text.rstrip(" ")
        if text:
            segments[-1] = Segment(text, last.style, last.control)
            break
        segments.pop()
    return segments


def hanging(head: Text, body: Text) -> Table:
    """``head`` then ``body`` on one line; what ``body`` wraps onto lines up under its start
    (``  okx: a verdict ...`` continues under ``a``), so a long line stays readable narrow."""
    grid = Table.grid()
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row(head, body)
    return grid


def indented(line: Text) -> RenderableType:
    """A note such as ``  ! loop lag: ...``: what it wraps onto lines up under its text, past
    the indent and the mark, so the notes under a heading stay indented."""
    plain = line.plain
    start = len(plain) - len(plain.lstrip(" "))
    if plain[start:].startswith("! "):
        start += 2
    if start == 0:
        return line
    return hanging(line[:start], line[start:])
