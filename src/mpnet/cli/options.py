"""Options shared by several commands, spelled once."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mpnet.cli.completion import complete_route
from mpnet.config.file import load_config
from mpnet.config.layers import NetworkOptions
from mpnet.config.model import ConfigFile, Profile
from mpnet.config.profiles import ProfileSet, load_profiles
from mpnet.core.route import Route, parse_routes
from mpnet.errors import UsageError
from mpnet.probe.plan import ProbePlan, build_plan


class Format(StrEnum):
    table = "table"
    json = "json"


ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        metavar="PATH",
        help="Config file (default: $MPNET_CONFIG, else ./mpnet.yaml, else config.yaml in "
        "$XDG_CONFIG_HOME/mpnet).",
    ),
]
ProfilesOption = Annotated[
    list[str] | None,
    typer.Option("--profiles", metavar="DIR", help="Extra profiles directory (overrides by name)."),
]
ProxyOption = Annotated[
    str | None,
    typer.Option("--proxy", metavar="URL", help="Proxy for every connection (highest layer)."),
]
NoProxyOption = Annotated[
    bool, typer.Option("--no-proxy", help="Connect directly, whatever the other layers say.")
]
CABundleOption = Annotated[
    str | None,
    typer.Option("--ca-bundle", metavar="PATH", help="Verify servers against this PEM bundle."),
]
ProxyCABundleOption = Annotated[
    str | None,
    typer.Option(
        "--proxy-ca-bundle",
        metavar="PATH",
        help="Verify an https:// proxy's own certificate against this PEM bundle, apart from "
        "the exchanges' (curl's --proxy-cacert).",
    ),
]
InsecureOption = Annotated[
    bool, typer.Option("--insecure", help="Do not verify certificates (always warned about).")
]
FormatOption = Annotated[Format, typer.Option("--format", help="Output format.")]
ViaOption = Annotated[
    list[str] | None,
    typer.Option(
        "--via",
        metavar="ROUTE",
        autocompletion=complete_route,
        help="Probe over this route: direct, a proxy URL, or a name from the config file's "
        "routes:. Repeat to compare routes side by side (each overrides the proxy layers).",
    ),
]
IPv4Option = Annotated[
    bool, typer.Option("-4", "--ipv4", help="Resolve and connect over IPv4 only (as curl -4).")
]
IPv6Option = Annotated[
    bool, typer.Option("-6", "--ipv6", help="Resolve and connect over IPv6 only (as curl -6).")
]


def check_via_alone(via: Sequence[str] | None, *, proxy: str | None, no_proxy: bool) -> None:
    """Refuse ``--via`` with ``--proxy`` / ``--no-proxy`` (before anything is loaded).

    Raises:
        UsageError: both name the way out.
    """
    if via and (proxy is not None or no_proxy):
        flag = "--proxy" if proxy is not None else "--no-proxy"
        raise UsageError(
            f"--via and {flag} contradict each other: each route names its own way out "
            "(use --via direct for no proxy)"
        )


def routes_from(
    via: Sequence[str] | None, config: ConfigFile, *, proxy: str | None, no_proxy: bool
) -> tuple[Route, ...]:
    """The ``--via`` routes, parsed against the config file's ``routes:``.

    Raises:
        UsageError: with --proxy/--no-proxy, an unknown name (listing the known ones), a route
            given twice.
        InvalidProxyURL: a route URL that does not parse (never showing its password).
    """
    check_via_alone(via, proxy=proxy, no_proxy=no_proxy)
    return parse_routes(list(via or ()), config.routes)


def family_from(ipv4: bool, ipv6: bool) -> str | None:
    """``ipv4`` (-4), ``ipv6`` (-6) or None. Raises UsageError for both."""
    if ipv4 and ipv6:
        raise UsageError("-4 and -6 contradict each other; use one")
    return "ipv4" if ipv4 else "ipv6" if ipv6 else None


def load_context(config: str | None, profiles: list[str] | None) -> tuple[ConfigFile, ProfileSet]:
    """Load the config file and the profiles the way every command does."""
    env = os.environ
    cfg = load_config(config, env=env, cwd=Path.cwd())
    warn_about_no_proxy(cfg, env)
    return cfg, load_profiles(profiles or (), env=env)


def warn_about_no_proxy(config: ConfigFile, env: Mapping[str, str]) -> None:
    """Warn on stderr about no_proxy entries that can never match (``10.0.0.0/33``): a typo
    there silently sends traffic through the proxy."""
    from mpnet.cli.console import err
    from mpnet.core.noproxy import no_proxy_warnings
    from mpnet.core.proxy import env_no_proxy

    found: list[str] = []
    variable, value = env_no_proxy(env)
    if variable is not None:
        found += no_proxy_warnings(value, variable)
    service = config.proxy
    if service is not None and service.no_proxy:
        found += no_proxy_warnings(service.no_proxy, f"{service.origin}.no_proxy")
    for warning in found:
        err.print(f"mpnet: warning: {warning}", highlight=False, markup=False)


def plan_probes(
    profiles: Sequence[Profile],
    options: NetworkOptions,
    *,
    config: ConfigFile,
    rest: bool,
    ws: bool,
    count: int,
    timeout: float,
    concurrency: int = 32,
    interval: float | None = None,
    routes: Sequence[Route] = (),
    family: str | None = None,
    feed_window: float = 0.0,
    clock_tolerance_ms: float | None = None,
) -> ProbePlan:
    """``build_plan`` with this process's environment and trust store, as every command plans."""
    return build_plan(
        profiles,
        config=config,
        options=options,
        env=os.environ,
        rest=rest,
        ws=ws,
        count=count,
        timeout=timeout,
        concurrency=concurrency,
        interval=interval,
        routes=routes,
        family=family,
        feed_window=feed_window,
        clock_tolerance_ms=clock_tolerance_ms,
    )
