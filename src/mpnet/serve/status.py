"""The human side of ``mpnet serve``: the status page at ``/``, a kept probe at ``/recent``,
and a probe answered as HTML (``/probe?...&format=html``).

Kept apart from :mod:`mpnet.serve.app` (the Prometheus side): the exporter records each
probe in a :class:`~mpnet.probe.recent.RecentProbes` and calls :func:`add_status_routes` and
:func:`report_html_response`; everything else about the pages lives here and in
:mod:`mpnet.render.status_page`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from aiohttp import web

from mpnet import __version__
from mpnet.core.result import ProbeReport
from mpnet.probe.recent import RecentProbes

#: Seconds between reloads of the status page unless ``?refresh=N`` says otherwise.
DEFAULT_REFRESH_S = 10
HTML = "text/html"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def report_html_response(report: ProbeReport) -> web.Response:
    """One probe's report as a self-contained HTML page (``format=html``)."""
    from mpnet.render.html import render_report_html

    page = render_report_html(report.to_dict(), host=socket.gethostname(), generated_at=_now())
    return web.Response(text=page, content_type=HTML)


def add_status_routes(
    app: web.Application, recent: RecentProbes, names: Callable[[], Sequence[str]]
) -> None:
    """``GET /`` (the status page) and ``GET /recent?exchange=X&target=T`` (a kept probe)."""

    async def status(request: web.Request) -> web.Response:
        from mpnet.render.status_page import status_page_html

        text = request.query.get("refresh", "")
        refresh = int(text) if text.isdigit() else DEFAULT_REFRESH_S
        page = status_page_html(
            exchanges=names(),
            recent=recent,
            version=__version__,
            host=socket.gethostname(),
            now=_now(),
            refresh_s=min(refresh, 3600),
        )
        return web.Response(text=page, content_type=HTML)

    async def kept(request: web.Request) -> web.Response:
        from mpnet.render.html import render_report_html

        exchange = request.query.get("exchange", "")
        target = request.query.get("target", "")
        probe = recent.latest(exchange, target)
        if probe is None:
            kept_ones = ", ".join(f"{e} {t}" for e, t in recent.targets()) or "none yet"
            return web.Response(
                status=404,
                text=f"no kept probe of {exchange!r} {target!r}; kept: {kept_ones}\n",
            )
        page = render_report_html(probe.report(), host=socket.gethostname(), generated_at=_now())
        return web.Response(text=page, content_type=HTML)

    app.router.add_get("/", status)
    app.router.add_get("/recent", kept)
