"""One probe per scrape of ``mpnet serve``: its plan (budget, routes, pacing) and its run.

The web side (routes, admission of scrapes, the exporter's own metrics) is :mod:`mpnet.serve.app`;
this module plans and runs the probes it asks for, and shares the exporter's
:class:`~mpnet.probe.pacing.RateGate` across scrapes: after an exchange answered 429 or 418 (or
its weight header neared the limit), a scrape inside the wait sends nothing. A probe never
outlives the scrape: a run that overstays its budget is cut off and reported as failed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence

from mpnet.config import layers
from mpnet.config.layers import NetworkOptions
from mpnet.config.model import ConfigFile, Profile
from mpnet.core.result import ProbeReport, ProbeResult
from mpnet.core.route import DIRECT_ROUTE, Route, check_distinct, unknown_route_message
from mpnet.errors import UnknownExchange, UsageError
from mpnet.probe.pacing import RateGate
from mpnet.probe.plan import TARGETS, ProbePlan, build_plan
from mpnet.probe.recent import RecentProbes

#: The least budget a probe gets, however short the scrape timeout.
MIN_PROBE_TIMEOUT = 0.1
#: Extra time the whole probe run may take over its budget before it is cut off from outside
#: (each attempt already stops itself at its budget plus the engine's own grace).
CUTOFF_GRACE = 0.5


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
