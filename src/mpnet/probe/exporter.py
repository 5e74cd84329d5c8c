"""The Prometheus exporter behind ``mpnet serve``, in the manner of blackbox_exporter.

``GET /probe?target=NAME[&kind=rest|ws]`` probes one exchange while Prometheus waits and
answers with the probe's metrics (:func:`mpnet.render.prometheus.prometheus_text`), or with the
JSON report (findings and hints) when ``debug=true`` is added;
``GET /metrics`` answers with the exporter's own process metrics; ``GET /`` is the status page
of the last probes (:mod:`mpnet.probe.status`; ``format=html`` answers a probe as a page).

Every scrape plans and runs its own probe; the only state scrapes share is the exporter's
:class:`~mpnet.probe.pacing.RateGate`: after an exchange answered 429 or 418 (or its weight
header neared the limit), a scrape inside the wait sends nothing and answers at once with the
skipped result (``mpnet_probe_success 0``, ``mpnet_probe_skipped 1`` and the wait's cause),
and requests to one exchange keep the profile's ``rate_limit`` spacing across scrapes. A probe
never outlives the scrape: its budget is ``min(--timeout, X-Prometheus-Scrape-Timeout-Seconds -
0.5)``, less the spacing between its REST and WebSocket requests, and a probe cut off by it
reports ``mpnet_probe_success 0``.

At most ``--max-probes`` probes run at once and ``--max-waiting`` more scrapes wait for a turn
(:mod:`mpnet.probe.admission`); a scrape beyond that, or one that waited half its budget, gets
``503`` with a one-line reason and is counted in ``mpnet_exporter_scrapes_shed_total``. A waiting
scrape's probe gets what is left of its budget. A scrape whose client goes away is cancelled
(aiohttp's ``handler_cancellation``, on in :func:`make_runner`): its probe stops and closes its
connections, counted in ``mpnet_exporter_scrapes_cancelled_total``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from ipaddress import ip_address

from aiohttp import web
from prometheus_client import REGISTRY, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge as PromGauge

from mpnet.config import layers
from mpnet.config.layers import NetworkOptions
from mpnet.config.model import ConfigFile, Profile
from mpnet.core.result import ProbeReport, ProbeResult
from mpnet.core.route import DIRECT_ROUTE, Route, check_distinct, unknown_route_message
from mpnet.errors import ConfigError, UnknownExchange, UsageError
from mpnet.probe.admission import ProbeSlots, Shed, default_max_probes
from mpnet.probe.pacing import RateGate
from mpnet.probe.plan import TARGETS, ProbePlan, build_plan
from mpnet.probe.recent import RecentProbes
from mpnet.probe.status import add_status_routes, report_html_response
from mpnet.render.prometheus import prometheus_text

#: Seconds kept back from Prometheus' scrape timeout for the answer to travel (blackbox's
#: default ``--timeout-offset``).
SCRAPE_TIMEOUT_OFFSET = 0.5
#: The least budget a probe gets, however short the scrape timeout.
MIN_PROBE_TIMEOUT = 0.1
#: Extra time the whole probe run may take over its budget before it is cut off from outside
#: (each attempt already stops itself at its budget plus the engine's own grace).
CUTOFF_GRACE = 0.5
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
#: The share of its budget a scrape may spend waiting for a probe slot; the probe gets the rest.
QUEUE_PATIENCE = 0.5
#: Seconds a shed scrape's client is asked to wait (``Retry-After``).
SHED_RETRY_AFTER = 1

Handler = Callable[[web.Request], Awaitable[web.Response]]


@dataclass(frozen=True, slots=True)
class Listen:
    """Where ``mpnet serve`` listens."""

    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ip_address(self.host).is_loopback
        except ValueError:
            return False

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}/"


def parse_listen(text: str) -> Listen:
    """Parse ``HOST:PORT`` (``[::1]:9879`` for IPv6; port 0 picks a free one).

    Raises:
        UsageError: not HOST:PORT, or the port is not 0..65535.
    """
    raw = text.strip()
    host, sep, port_text = raw.rpartition(":")
    if not sep or not host:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9879")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise UsageError(f"--listen {text!r}: write an IPv6 address in brackets, e.g. [::1]:9879")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"--listen {text!r}: port must be a number from 0 to 65535")
    if not host or any(ch.isspace() or ch in "/@[]" for ch in host):
        raise UsageError(f"--listen {text!r}: {host!r} is not a host name or address")
    return Listen(host=host, port=int(port_text))


def probe_budget(timeout: float, scrape_timeout_header: str | None) -> float:
    """Seconds a probe may take: ``--timeout``, cut to the scrape timeout minus the offset."""
    if scrape_timeout_header is None:
        return timeout
    try:
        scrape_timeout = float(scrape_timeout_header)
    except ValueError:
        return timeout
    if not math.isfinite(scrape_timeout) or scrape_timeout <= 0:
        return timeout
    return max(MIN_PROBE_TIMEOUT, min(timeout, scrape_timeout - SCRAPE_TIMEOUT_OFFSET))


@cache
def probes_served() -> PromCounter:
    """The exporter's own counter of probes, by exchange and result (one per process)."""
    return PromCounter(
        "mpnet_exporter_probes",
        "Probes served by this exporter, by exchange and result (success, failure, skipped).",
        ["exchange", "result"],
    )


@cache
def bad_requests() -> PromCounter:
    return PromCounter(
        "mpnet_exporter_bad_requests",
        "Probe requests refused with 400 (unknown exchange, bad target, missing parameter).",
    )


@cache
def scrapes_shed() -> PromCounter:
    """Scrapes answered 503 because the exporter was busy, by reason (one per process)."""
    counter = PromCounter(
        "mpnet_exporter_scrapes_shed",
        "Scrapes answered 503 without a probe because every probe slot was taken: queue_full "
        "(no room to wait) or queue_timeout (waited half the scrape's budget).",
        ["reason"],
    )
    for reason in Shed:
        counter.labels(reason=reason.value)
    return counter


@cache
def scrapes_cancelled() -> PromCounter:
    return PromCounter(
        "mpnet_exporter_scrapes_cancelled",
        "Scrapes whose client went away before the answer; their probe was stopped.",
    )


@cache
def probes_running() -> PromGauge:
    return PromGauge("mpnet_exporter_probes_running", "Probes running now.")


@cache
def scrapes_waiting() -> PromGauge:
    return PromGauge("mpnet_exporter_scrapes_waiting", "Scrapes waiting for a probe slot now.")


class ProbeExporter:
    """Plans and runs one probe per scrape.

    Args:
        profiles: the exchanges that may be probed (by name).
        config: the config file (proxy and TLS layers).
        options: the command-line network layer of ``mpnet serve``.
        env: the environment (proxy and CA variables).
        timeout: seconds allowed for one attempt, before any scrape-timeout cut.
        system_store: whether this machine has a system trust store (the TLS default layer);
            None (the default) asks
            :func:`~mpnet.config.layers.system_trust_store_available` once, now.
        routes: the routes every scrape compares (``--via``); a scrape's ``route=NAME``
            parameters pick among them and the config file's named routes instead.
        family: ``ipv4`` or ``ipv6`` to force one address family (``-4`` / ``-6``).
        feed_window: seconds a WebSocket probe reads its feed after the first data message,
            for the feed lag series (within the probe's budget).
    """

    def __init__(
        self,
        profiles: Sequence[Profile],
        *,
        config: ConfigFile,
        options: NetworkOptions,
        env: Mapping[str, str],
        timeout: float,
        system_store: bool | None = None,
        routes: Sequence[Route] = (),
        family: str | None = None,
        feed_window: float = 0.0,
    ) -> None:
        if not timeout > 0:
            raise UsageError(f"--timeout must be a positive number of seconds, not {timeout}")
        self.profiles = {p.name.lower(): p for p in profiles}
        self.config = config
        self.options = options
        self.env = dict(env)
        self.timeout = timeout
        self.system_store = (
            layers.system_trust_store_available() if system_store is None else system_store
        )
        self.routes = tuple(routes)
        self.family = family
        self.feed_window = feed_window
        # One gate for the process: a wait an exchange asked for holds across scrapes.
        self.gate = RateGate()
        self.recent = RecentProbes()

    def names(self) -> list[str]:
        return sorted(self.profiles)

    def known_routes(self) -> dict[str, Route]:
        """What ``route=NAME`` may name: the ``--via`` routes, the config file's, ``direct``."""
        known = {"direct": DIRECT_ROUTE.selected("route=")}
        known.update({name: r.selected("route=") for name, r in self.config.routes.items()})
        known.update({r.name: r for r in self.routes})
        return known

    def routes_for(self, names: Sequence[str]) -> tuple[Route, ...]:
        """The routes a scrape asked for by name (none: the ``--via`` routes, if any).

        Raises:
            UsageError: an unknown name (listing the known ones), or one asked twice. A proxy
                URL is refused: only whoever starts the exporter chooses proxies.
        """
        if not names:
            return self.routes
        known = self.known_routes()
        chosen = []
        for name in names:
            route = known.get(name.strip())
            if route is None:
                if "://" in name or "@" in name:
                    raise UsageError(
                        "route= takes a route name; give proxy URLs to `mpnet serve --via` or "
                        "name them under routes: in the config file"
                    )
                raise UsageError(unknown_route_message(name.strip(), known, where="route="))
            chosen.append(route)
        check_distinct(chosen, flag="route=")
        return tuple(chosen)

    def plan(
        self,
        exchange: str,
        target: str | None,
        timeout: float,
        routes: Sequence[str] = (),
    ) -> ProbePlan:
        """The plan of one scrape (``routes``: the names of its ``route=`` parameters).

        Raises:
            UnknownExchange: no profile has that name.
            UsageError: ``target`` (the ``kind`` of connection) is not rest or ws, or the
                exchange has no such target; an unknown or repeated route.
            InvalidProxyURL: a proxy layer holds a malformed URL.
            ConfigError: the plan's CA bundle cannot be loaded.
        """
        profile = self.profiles.get(exchange.strip().lower())
        if profile is None:
            raise UnknownExchange(exchange, self.names())
        if target is not None and target not in TARGETS:
            raise UsageError(f"unknown kind {target!r}; expected one of: {', '.join(TARGETS)}")
        if target is not None and profile.url_for(target) is None:
            raise UsageError(f"exchange {profile.name!r} has no {target} target")
        chosen = self.routes_for(routes)
        plan = build_plan(
            [profile],
            config=self.config,
            options=self.options,
            env=self.env,
            rest=target in (None, "rest"),
            ws=target in (None, "ws"),
            count=1,
            timeout=timeout,
            system_store=self.system_store,
            routes=chosen,
            family=self.family,
            feed_window=self.feed_window,
        )
        # The WebSocket request waits its turn after the REST one: the attempts get what is left.
        pacing = pacing_s(plan)
        if pacing > 0:
            plan = dataclasses.replace(plan, timeout=max(MIN_PROBE_TIMEOUT, timeout - pacing))
        # SSL contexts and imports at plan time, before this scrape's clocks (cached after).
        from mpnet.net.prepare import prepare_network

        prepare_network(t.tls for t in plan.targets)
        return plan

    async def probe(self, plan: ProbePlan) -> ProbeReport:
        """Run ``plan``; a run that overstays its budget is cut off and reported as failed."""
        from mpnet.probe.engine import run_probes

        try:
            async with asyncio.timeout(plan.timeout + pacing_s(plan) + CUTOFF_GRACE):
                return await run_probes(plan, gate=self.gate)
        except TimeoutError:
            return _cut_off_report(plan)


def pacing_s(plan: ProbePlan) -> float:
    """Seconds the profile's ``rate_limit`` spaces the requests of one scrape's plan (each
    route is paced apart: it leaves from its own address)."""
    spacing = 0.0
    per_route: dict[str | None, int] = {}
    for target in plan.targets:
        limit = target.profile.rate_limit
        if limit is not None:
            spacing = max(spacing, limit.spacing_s)
        key = target.route.name if target.route is not None else None
        per_route[key] = per_route.get(key, 0) + 1
    return spacing * max(0, max(per_route.values(), default=0) - 1)


def _outcome(report: ProbeReport) -> str:
    """``success``, ``skipped`` (nothing was sent: the exchange's wait was running) or
    ``failure``."""
    if report.ok:
        return "success"
    if report.results and all(r.all_skipped for r in report.results):
        return "skipped"
    return "failure"


def _cut_off_report(plan: ProbePlan) -> ProbeReport:
    from datetime import UTC, datetime

    from mpnet import __version__

    results = tuple(
        ProbeResult(
            exchange=t.profile.name,
            target=t.target,
            url=t.url,
            attempts=(),
            proxy=t.proxy,
            ssl=t.tls,
            route=t.route.name if t.route is not None else None,
        )
        for t in plan.targets
    )
    return ProbeReport(
        mpnet_version=__version__,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        results=results,
        interrupted=True,
    )


#: The probe slots of an application made by :func:`build_app`.
SLOTS_KEY = web.AppKey("mpnet_probe_slots", ProbeSlots)


def build_app(
    exporter: ProbeExporter, *, max_probes: int | None = None, max_waiting: int | None = None
) -> web.Application:
    """The aiohttp application: ``/``, ``/probe`` and ``/metrics``.

    Args:
        exporter: plans and runs the probes.
        max_probes: probes that may run at once (default: :func:`default_max_probes`).
        max_waiting: scrapes that may wait for a probe slot (default: ``max_probes``).

    Raises:
        UsageError: ``max_probes`` below 1 or ``max_waiting`` below 0.
    """
    limit = default_max_probes() if max_probes is None else max_probes
    if limit < 1:
        raise UsageError(f"--max-probes must be at least 1, not {limit}")
    queue = limit if max_waiting is None else max_waiting
    if queue < 0:
        raise UsageError(f"--max-waiting must be 0 or more, not {queue}")
    slots = ProbeSlots(limit, queue)
    app = web.Application()
    app[SLOTS_KEY] = slots
    add_status_routes(app, exporter.recent, exporter.names)
    app.router.add_get("/probe", _probe_handler(exporter, slots))
    app.router.add_get("/metrics", _metrics)
    # The counters exist (at 0) from the start, so /metrics shows them before any probe.
    probes_served()
    bad_requests()
    scrapes_shed()
    scrapes_cancelled()
    # Read when /metrics is scraped (the latest application's slots: one per process).
    probes_running().set_function(lambda: slots.running)
    scrapes_waiting().set_function(lambda: slots.waiting)
    return app


def make_runner(app: web.Application) -> web.AppRunner:
    """The runner ``mpnet serve`` serves ``app`` with.

    ``handler_cancellation`` is on (aiohttp turned it off by default in 3.9): when a scrape's
    client goes away, its handler is cancelled, and so is its probe, which closes its
    connections and gives its slot to the next scrape. Nobody is left to read that answer.
    """
    return web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)


def _bad_request(message: str) -> web.Response:
    bad_requests().inc()
    return web.Response(status=400, text=message + "\n")


def probe_parameters(query: Mapping[str, str]) -> tuple[str, str | None]:
    """(exchange, rest|ws|None) from a ``/probe`` query string.

    blackbox_exporter's habit, ``target=NAME`` (the exchange) with ``kind=rest|ws`` for the
    connection type, and mpnet's first spelling, ``exchange=NAME`` with ``target=rest|ws``, both
    work; with ``exchange=``, a ``target`` of ``rest`` or ``ws`` is the kind, as it was.

    Raises:
        UsageError: no exchange named, or two different kinds asked for.
    """
    exchange = query.get("exchange", "").strip()
    target = query.get("target", "").strip()
    kind = query.get("kind", "").strip() or None
    if not exchange:
        if not target:
            raise UsageError("missing ?target=EXCHANGE")
        return target, kind
    if target:
        if kind is not None and kind != target:
            raise UsageError(f"target={target} and kind={kind} disagree: give kind=rest|ws once")
        kind = target
    return exchange, kind


def _probe_handler(exporter: ProbeExporter, slots: ProbeSlots) -> Handler:
    async def probe(request: web.Request) -> web.Response:
        try:
            exchange, target = probe_parameters(request.query)
        except UsageError as exc:
            return _bad_request(f"{exc}; known exchanges: {', '.join(exporter.names())}")
        routes = [name for name in request.query.getall("route", []) if name.strip()]
        budget = probe_budget(exporter.timeout, request.headers.get(SCRAPE_TIMEOUT_HEADER))
        try:
            plan = exporter.plan(exchange, target, budget, routes)
        except ConfigError as exc:
            return _bad_request(str(exc))
        try:
            outcome = await _probe_in_turn(exporter, slots, plan, budget)
        except asyncio.CancelledError:
            scrapes_cancelled().inc()
            raise
        if isinstance(outcome, Shed):
            return _shed(outcome, slots, budget)
        report, budget = outcome
        probes_served().labels(exchange=plan.targets[0].profile.name, result=_outcome(report)).inc()
        exporter.recent.add(report)
        if request.query.get("format") == "html":
            return report_html_response(report)
        if request.query.get("debug", "").lower() in ("1", "true", "yes"):
            # Like blackbox's debug=true: why it failed, for a person, not for Prometheus.
            return web.json_response(report.to_dict(), dumps=_indented_json)
        body = prometheus_text(report, timeout_s=budget)
        return web.Response(body=body.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE})

    return probe


async def _probe_in_turn(
    exporter: ProbeExporter, slots: ProbeSlots, plan: ProbePlan, budget: float
) -> Shed | tuple[ProbeReport, float]:
    """Run ``plan`` once a probe slot is free; the report and the budget the probe was given,
    or why the scrape was shed.

    Raises:
        asyncio.CancelledError: the scrape was cancelled (its client went away).
    """
    loop = asyncio.get_running_loop()
    asked = loop.time() if not slots.free else None
    shed = await slots.acquire(budget * QUEUE_PATIENCE)
    if shed is not None:
        return shed
    try:
        if asked is not None:
            # The wait came out of the scrape's budget: the probe gets what is left.
            waited = loop.time() - asked
            budget = max(MIN_PROBE_TIMEOUT, budget - waited)
            plan = dataclasses.replace(plan, timeout=max(MIN_PROBE_TIMEOUT, plan.timeout - waited))
        report = await exporter.probe(plan)
    finally:
        slots.release()
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        # The engine turns a cancellation into an interrupted report; the client that would
        # read it is gone, so the cancellation goes on.
        raise asyncio.CancelledError
    return report, budget


def _shed(reason: Shed, slots: ProbeSlots, budget: float) -> web.Response:
    scrapes_shed().labels(reason=reason.value).inc()
    if reason is Shed.QUEUE_FULL:
        why = f"{slots.running} probes running and {slots.waiting} scrapes waiting"
    else:
        why = f"no probe slot came free within {budget * QUEUE_PATIENCE:g} s"
    message = (
        f"mpnet serve is overloaded: {why} (--max-probes {slots.limit}, --max-waiting "
        f"{slots.queue}); no probe was run"
    )
    return web.Response(
        status=503, text=message + "\n", headers={"Retry-After": str(SHED_RETRY_AFTER)}
    )


#: The classic text exposition format that ``generate_latest`` writes (prometheus-client's own
#: CONTENT_TYPE_LATEST now says version=1.0.0 for the same bytes; 0.0.4 is what every Prometheus
#: version understands).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE})


def _indented_json(document: object) -> str:
    import json

    return json.dumps(document, indent=2) + "\n"
