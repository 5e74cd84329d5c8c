"""Writing an HTML page from the command line: the machine's name and the time go in here,
so the renderer (:mod:`mpnet.render.html`) stays pure."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from mpnet.cli.console import write_output


def host_and_time() -> tuple[str, str]:
    """This machine's host name and the current UTC time (ISO 8601, seconds)."""
    return socket.gethostname(), datetime.now(UTC).isoformat(timespec="seconds")


def write_report_html(report: Mapping[str, Any], output: str | None) -> None:
    """``mpnet probe --format html``: the report as one self-contained page."""
    from mpnet.render.html import render_report_html

    host, now = host_and_time()
    write_output(render_report_html(report, host=host, generated_at=now), output)
