"""``mpnet serve``: a Prometheus exporter that probes an exchange per scrape (like blackbox)."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from mpnet.cli.app import app
from mpnet.cli.console import err, guarded
from mpnet.cli.exit_codes import ExitCode
from mpnet.cli.live import (
    FaultOption,
    Stopped,
    lab_network_options,
    parse_fault_assignments,
    run_interruptibly,
)
from mpnet.cli.options import (
    CABundleOption,
    ConfigOption,
    InsecureOption,
    IPv4Option,
    IPv6Option,
    NoProxyOption,
    ProfilesOption,
    ProxyCABundleOption,
    ProxyOption,
    ViaOption,
    check_via_alone,
    family_from,
    load_context,
    routes_from,
)
from mpnet.config.layers import NetworkOptions, cli_proxy_choice
from mpnet.config.model import ConfigFile, Profile
from mpnet.core.route import Route
from mpnet.probe.admission import PROBES_PER_CPU, default_max_probes

if TYPE_CHECKING:
    from mpnet.lab.faults import Fault
    from mpnet.serve.listen import Listen

#: Not blackbox_exporter's 9115 (mpnet often runs beside it) nor any other well-known exporter's
#: port (docs/prometheus.md).
DEFAULT_LISTEN = "127.0.0.1:9879"


def serve_limits(
    cfg: ConfigFile, *, max_probes: int | None, max_waiting: int | None
) -> tuple[int, int]:
    """(probes at once, scrapes waiting): the command line, else the config file's ``serve:``,
    else :func:`default_max_probes` and as many waiting as may run."""
    probes = max_probes if max_probes is not None else cfg.serve.max_probes
    if probes is None:
        probes = default_max_probes()
    waiting = max_waiting if max_waiting is not None else cfg.serve.max_waiting
    return probes, probes if waiting is None else waiting


@app.command()
def serve(
    listen: Annotated[
        str,
        typer.Option(
            "--listen",
            metavar="HOST:PORT",
            help="Address to listen on (port 0 picks a free one). Loopback unless you say so.",
        ),
    ] = DEFAULT_LISTEN,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            help="Seconds allowed for one probe; cut to Prometheus' scrape timeout minus 0.5 s.",
        ),
    ] = 10.0,
    proxy: ProxyOption = None,
    no_proxy: NoProxyOption = False,
    via: ViaOption = None,
    ipv4: IPv4Option = False,
    ipv6: IPv6Option = False,
    config: ConfigOption = None,
    profiles: ProfilesOption = None,
    ca_bundle: CABundleOption = None,
    proxy_ca_bundle: ProxyCABundleOption = None,
    insecure: InsecureOption = False,
    lab: Annotated[
        bool,
        typer.Option("--lab", help="Serve probes of local simulators (try Prometheus offline)."),
    ] = False,
    fault: FaultOption = None,
    max_probes: Annotated[
        int | None,
        typer.Option(
            "--max-probes",
            metavar="N",
            min=1,
            help=(
                "Probes that may run at once (config: serve.max_probes; default: "
                f"{PROBES_PER_CPU} per CPU). Further scrapes wait their turn."
            ),
        ),
    ] = None,
    max_waiting: Annotated[
        int | None,
        typer.Option(
            "--max-waiting",
            metavar="N",
            min=0,
            help=(
                "Scrapes that may wait for a probe slot (config: serve.max_waiting; default: "
                "--max-probes); beyond that a scrape gets 503 at once."
            ),
        ),
    ] = None,
    feed_window: Annotated[
        float,
        typer.Option(
            "--feed-window",
            metavar="S",
            help="Seconds a WebSocket probe reads its feed after the first data message, for "
            "the feed lag series (within the probe's time; 0: only the first message).",
        ),
    ] = 1.0,
) -> None:
    """Prometheus exporter: GET /probe?target=EXCHANGE[&kind=rest|ws] probes while you wait.

    /metrics has the exporter's own process metrics; / lists the exchanges. At most
    --max-probes probes run at once and --max-waiting scrapes wait; a scrape beyond that is
    answered 503 (counted in mpnet_exporter_scrapes_shed_total), and a scrape whose client
    went away stops its probe. With --via ROUTE (repeatable) every scrape probes each route and
    every series gets a route label; &route=NAME (repeatable) picks routes by name per scrape.
    """
    with guarded():
        from mpnet.serve.listen import parse_listen

        address = parse_listen(listen)
        if not address.loopback:
            err.print(
                f"mpnet: warning: listening on {address.host}, not loopback: anyone who can reach "
                "this port can make mpnet probe exchanges (and see your proxy layers' schemes)",
                highlight=False,
            )
        faults = parse_fault_assignments(fault, lab=lab)
        check_via_alone(via, proxy=proxy, no_proxy=no_proxy)
        family = family_from(ipv4, ipv6)
        options = NetworkOptions(
            proxy=proxy,
            no_proxy=no_proxy,
            ca_bundle=ca_bundle,
            insecure=insecure,
            proxy_ca_bundle=proxy_ca_bundle,
        )
        # Refuse a malformed --proxy before binding anything.
        cli_proxy_choice(proxy, no_proxy)
        cfg, found = load_context(config, profiles)
        routes = routes_from(via, cfg, proxy=proxy, no_proxy=no_proxy)
        limits = serve_limits(cfg, max_probes=max_probes, max_waiting=max_waiting)
        try:
            run_interruptibly(
                lambda: _serve(
                    address,
                    list(found),
                    cfg,
                    options,
                    timeout,
                    lab,
                    faults,
                    limits,
                    feed_window,
                    routes,
                    family,
                ),
                stop_signals=(signal.SIGTERM,),
            )
        except Stopped:
            err.print("mpnet: stopped", highlight=False)
            raise typer.Exit(ExitCode.OK) from None


async def _serve(
    address: Listen,
    profiles: Sequence[Profile],
    cfg: ConfigFile,
    options: NetworkOptions,
    timeout: float,
    lab: bool,
    faults: dict[str, Fault],
    limits: tuple[int, int],
    feed_window: float = 0.0,
    routes: Sequence[Route] = (),
    family: str | None = None,
) -> None:
    import asyncio

    from aiohttp import web

    from mpnet.probe.exporter import ProbeExporter
    from mpnet.serve.app import build_app, make_runner

    async def run(served: Sequence[Profile], network: NetworkOptions) -> None:
        exporter = ProbeExporter(
            served,
            config=cfg,
            options=network,
            env=os.environ,
            timeout=timeout,
            routes=routes,
            family=family,
            feed_window=feed_window,
        )
        # Plan every exchange once now, so a malformed proxy URL in any layer stops the exporter
        # at start (exit 2) rather than failing every scrape.
        warnings: dict[str, None] = {}
        for name in exporter.names():
            for target in exporter.plan(name, None, timeout).targets:
                warnings.update(dict.fromkeys(target.tls.warnings))
        # TLS verification off is never silent: once here, and in every scrape's metrics.
        for warning in warnings:
            err.print(f"mpnet: warning: {warning}", highlight=False)
        max_probes, max_waiting = limits
        app = build_app(exporter, max_probes=max_probes, max_waiting=max_waiting)
        runner = make_runner(app)
        await runner.setup()
        try:
            site = web.TCPSite(runner, address.host, address.port)
            await site.start()
            port = _bound_port(runner.addresses, address.port)
            over = f" over {len(routes)} routes ({', '.join(r.name for r in routes)})"
            err.print(
                f"mpnet: serving probes of {len(served)} exchange(s)"
                + (over if routes else "")
                + f" on {address.url(port)} "
                f"(GET /probe?target=EXCHANGE, /metrics; at most {max_probes} probes at once, "
                f"{max_waiting} waiting); Ctrl-C stops",
                highlight=False,
            )
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    if not lab:
        await run(profiles, options)
        return
    from mpnet.lab import Lab

    async with Lab(profiles, tls=True, faults=faults) as running:
        shown = ", ".join(f"{name}={mode}" for name, mode in faults.items())
        err.print(
            f"mpnet: lab: {len(running.names())} simulated exchange(s) on 127.0.0.1"
            + (f" (faults: {shown})" if shown else ""),
            highlight=False,
        )
        await run(running.profiles(), lab_network_options(options, running.ca_file))


def _bound_port(addresses: Sequence[object], asked: int) -> int:
    for sockname in addresses:
        if isinstance(sockname, tuple) and len(sockname) >= 2:
            return int(sockname[1])
    return asked
