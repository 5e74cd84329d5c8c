"""Probe planning: which exchange x target pairs to probe, with the decisions made up front.

Decisions are made before any I/O, so a bad proxy URL in any layer stops the run with exit 2
before a single packet is sent.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mpnet.config import layers
from mpnet.config.layers import NetworkOptions, decide
from mpnet.config.model import ConfigFile, Profile
from mpnet.core.clock import ClockTolerances
from mpnet.core.proxy import ProxyDecision
from mpnet.core.route import Route, route_name_of
from mpnet.core.tls import TLSDecision
from mpnet.errors import UsageError

TARGETS = ("rest", "ws")
#: ``-4`` / ``-6``: the address family mpnet resolves and connects with (None: both).
FAMILIES = ("ipv4", "ipv6")
#: Attempts in flight at once (of which at most engine.CONNECTING_AT_ONCE set up their
#: connection at the same time: docs/timing.md).
DEFAULT_CONCURRENCY = 32


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One exchange x target, ready to dial."""

    profile: Profile
    target: str  # "rest" | "ws"
    url: str
    proxy: ProxyDecision
    tls: TLSDecision
    #: The route asked for (``--via``, or the exchange's default routes); None: the usual layers.
    route: Route | None = None
    #: ``ipv4`` or ``ipv6`` to force one address family (``-4`` / ``-6``); None: either.
    family: str | None = None

    @property
    def route_name(self) -> str:
        """The route's name, or the way out the usual layers chose (``direct`` or the URL)."""
        return self.route.name if self.route is not None else route_name_of(self.proxy.proxy)

    @property
    def label(self) -> str:
        via = f" via {self.route.name}" if self.route is not None else ""
        return f"{self.profile.name} {self.target}{via}"


@dataclass(frozen=True, slots=True)
class ProbePlan:
    targets: tuple[ProbeTarget, ...]
    count: int = 1
    timeout: float = 10.0
    concurrency: int = DEFAULT_CONCURRENCY
    #: Least seconds between the starts of two attempts at one target (``--interval``); None
    #: leaves only the profiles' ``rate_limit`` pacing.
    interval: float | None = None
    #: Seconds a WebSocket attempt keeps reading after its first data message, for the feed's
    #: rate and lag (``--feed-window``; 0: only the first message).
    feed_window: float = 0.0
    #: When CLOCK_SKEW and FEED_LAGGING fire.
    tolerances: ClockTolerances = field(default_factory=ClockTolerances)


def build_plan(
    profiles: Sequence[Profile],
    *,
    config: ConfigFile,
    options: NetworkOptions,
    env: Mapping[str, str],
    rest: bool = True,
    ws: bool = True,
    count: int = 1,
    timeout: float = 10.0,
    concurrency: int = DEFAULT_CONCURRENCY,
    system_store: bool | None = None,
    interval: float | None = None,
    routes: Sequence[Route] = (),
    family: str | None = None,
    feed_window: float = 0.0,
    clock_tolerance_ms: float | None = None,
) -> ProbePlan:
    """Plan probes of every profile's REST and/or WebSocket target.

    With ``routes``, every target is planned once per route (each route overriding the proxy
    layers). Without them, an exchange whose config entry lists ``routes`` is planned over
    those, unless ``--proxy`` or ``--no-proxy`` names the way out; any other exchange follows
    the usual layers. Targets come grouped by exchange, then target, then route.
    ``system_store`` is whether this machine has a system trust store; None (the default) asks
    :func:`~mpnet.config.layers.system_trust_store_available`, once for the whole plan.

    Raises:
        UsageError: nothing to probe, or count/timeout/interval out of range.
        InvalidProxyURL: a proxy URL in any layer is malformed.
    """
    if count < 1:
        raise UsageError(f"-n/--count must be at least 1, not {count}")
    if not timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds, not {timeout}")
    if interval is not None and not (math.isfinite(interval) and interval > 0):
        raise UsageError(f"--interval must be a positive number of seconds, not {interval}")
    if not (math.isfinite(feed_window) and feed_window >= 0):
        raise UsageError(f"--feed-window must be 0 or a number of seconds, not {feed_window}")
    tolerances = config.clock or ClockTolerances()
    if clock_tolerance_ms is not None:
        if not (math.isfinite(clock_tolerance_ms) and clock_tolerance_ms > 0):
            raise UsageError(
                f"--clock-tolerance must be a positive number of ms, not {clock_tolerance_ms}"
            )
        # The flag wins over the config file's clock.tolerance_ms.
        tolerances = dataclasses.replace(tolerances, offset_ms=clock_tolerance_ms)
    if not (rest or ws):
        raise UsageError("--no-rest and --no-ws together leave nothing to probe")
    if family is not None and family not in FAMILIES:
        raise UsageError(f"unknown address family {family!r}; expected one of {FAMILIES}")
    wanted = tuple(t for t, on in (("rest", rest), ("ws", ws)) if on)
    if system_store is None:
        system_store = layers.system_trust_store_available()
    layers_named = options.proxy is not None or options.no_proxy
    targets: list[ProbeTarget] = []
    for profile in profiles:
        chosen: Sequence[Route | None] = routes or (
            () if layers_named else config.default_routes(profile)
        )
        for target in wanted:
            url = profile.url_for(target)
            if url is None:
                continue
            for route in chosen or (None,):
                proxy, tls = decide(
                    url,
                    target,
                    profile=profile,
                    config=config,
                    options=options,
                    env=env,
                    system_store=system_store,
                    route=route,
                )
                targets.append(
                    ProbeTarget(
                        profile=profile,
                        target=target,
                        url=url,
                        proxy=proxy,
                        tls=tls,
                        route=route,
                        family=family,
                    )
                )
    if not targets:
        raise UsageError("the chosen profiles have no target left to probe")
    return ProbePlan(
        targets=tuple(targets),
        count=count,
        timeout=timeout,
        concurrency=concurrency,
        interval=interval,
        feed_window=feed_window,
        tolerances=tolerances,
    )
