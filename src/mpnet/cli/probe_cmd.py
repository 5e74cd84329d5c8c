"""``mpnet probe``: probe exchanges' REST and WebSocket paths, phase by phase."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from mpnet.cli.app import app
from mpnet.cli.completion import complete_exchange
from mpnet.cli.console import err, guarded, out, show, write_output
from mpnet.cli.exit_codes import ExitCode
from mpnet.cli.live import (
    FaultOption,
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
    plan_probes,
    routes_from,
)
from mpnet.cli.outfile import check_output
from mpnet.config.layers import NetworkOptions
from mpnet.config.model import Profile
from mpnet.core.result import Attempt, ProbeReport
from mpnet.errors import UsageError
from mpnet.probe.plan import DEFAULT_CONCURRENCY, ProbePlan, ProbeTarget

#: Seconds ``mpnet probe`` reads each feed after its first data message by default.
DEFAULT_FEED_WINDOW = 2.0

if TYPE_CHECKING:
    from mpnet.lab.faults import Fault


class ProbeFormat(StrEnum):
    table = "table"
    json = "json"
    junit = "junit"
    prometheus = "prometheus"
    html = "html"


@app.command()
def probe(
    exchanges: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="EXCHANGE",
            autocompletion=complete_exchange,
            help="Exchanges to probe (see `mpnet profiles list`).",
        ),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Probe every known exchange.")] = False,
    rest: Annotated[bool, typer.Option("--rest/--no-rest", help="Probe the REST API.")] = True,
    ws: Annotated[bool, typer.Option("--ws/--no-ws", help="Probe the WebSocket feed.")] = True,
    count: Annotated[int, typer.Option("-n", "--count", help="Attempts per target.")] = 1,
    interval: Annotated[
        float | None,
        typer.Option(
            "--interval",
            metavar="S",
            help="Seconds between the starts of two attempts at a target (default: as fast as "
            "each exchange's rate_limit allows).",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds allowed for one attempt.")
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
    format: Annotated[
        ProbeFormat,
        typer.Option(
            "--format", metavar="FORMAT", help="Output format: table, json, junit or prometheus."
        ),
    ] = ProbeFormat.table,
    output: Annotated[
        str | None, typer.Option("--output", "-o", metavar="FILE", help="Write output to FILE.")
    ] = None,
    lab: Annotated[
        bool, typer.Option("--lab", help="Probe local simulators instead (offline demo).")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Add a phase waterfall per target.")
    ] = False,
    fault: FaultOption = None,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            help="Attempts in flight at once (one of them setting up its connection at a time "
            "per route, so that no handshake stalls another's clocks: docs/timing.md).",
        ),
    ] = DEFAULT_CONCURRENCY,
    feed_window: Annotated[
        float,
        typer.Option(
            "--feed-window",
            metavar="S",
            help="Seconds each WebSocket probe keeps reading after its first data message, for "
            "the feed's rate and lag (0: only the first message).",
        ),
    ] = DEFAULT_FEED_WINDOW,
    clock_tolerance: Annotated[
        float | None,
        typer.Option(
            "--clock-tolerance",
            metavar="MS",
            help="Warn (CLOCK_SKEW) when the clock offset, less its error, exceeds MS "
            "milliseconds (default: config clock.tolerance_ms, else 500).",
        ),
    ] = None,
) -> None:
    """Probe each exchange: DNS, TCP, proxy, TLS, HTTP or WebSocket upgrade, first message.

    Requests to an exchange are paced to the public limit in its profile (rate_limit). After a
    429 or 418 (Retry-After, else 60 s / 120 s) nothing more is sent to that exchange during the
    wait: the remaining attempts are reported as skipped, with the reason, not as failures.

    With --via ROUTE (repeatable), every target is probed over each route at once, and the
    output compares them: the fastest per exchange and target, by how much, and which CDN edge
    each route reached.
    """
    with guarded():
        names = list(exchanges or [])
        if names and all_:
            raise UsageError("name exchanges or use --all, not both")
        if not names and not all_ and not lab:
            raise UsageError("name at least one exchange (see `mpnet profiles list`) or use --all")
        if concurrency < 1:
            raise UsageError(f"--concurrency must be at least 1, not {concurrency}")
        # Before any work: a report with nowhere to go is found now, not after the probes.
        check_output(output)
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
        cfg, found = load_context(config, profiles)
        routes = routes_from(via, cfg, proxy=proxy, no_proxy=no_proxy)
        chosen = found.select(names) if names else list(found)

        plan_for = functools.partial(
            plan_probes,
            config=cfg,
            rest=rest,
            ws=ws,
            count=count,
            timeout=timeout,
            concurrency=concurrency,
            interval=interval,
            routes=routes,
            family=family,
            feed_window=feed_window,
            clock_tolerance_ms=clock_tolerance,
        )

        # Plan (and so validate every proxy URL) before any I/O, lab or not.
        plan = plan_for(chosen, options)
        report = run_interruptibly(
            lambda: _probe(plan, chosen, options, lab=lab, faults=faults, plan_for=plan_for)
        )
        if report.interrupted and output:
            # A partial report does not replace the previous file: show it here instead.
            err.print(f"mpnet: interrupted: {output} not written (left as it was)", highlight=False)
            _emit(report, ProbeFormat.table, None, verbose)
        else:
            _emit(report, format, output, verbose, timeout=timeout)
        if report.interrupted:
            raise typer.Exit(ExitCode.INTERRUPTED)
        raise typer.Exit(ExitCode.OK if report.ok else ExitCode.PROBE_FAILED)


async def _probe(
    plan: ProbePlan,
    chosen: Sequence[Profile],
    options: NetworkOptions,
    *,
    lab: bool,
    faults: Mapping[str, Fault],
    plan_for: Callable[[Sequence[Profile], NetworkOptions], ProbePlan],
) -> ProbeReport:
    from mpnet.probe.engine import run_probes

    if not lab:
        with _progress(plan) as on_attempt:
            return await run_probes(plan, on_attempt=on_attempt)
    from mpnet.lab import Lab

    async with Lab(chosen, tls=True, faults=faults) as running:
        shown = ", ".join(f"{name}={mode}" for name, mode in faults.items())
        err.print(
            f"mpnet: lab: {len(chosen)} simulated exchange(s) on 127.0.0.1"
            + (f" (faults: {shown})" if shown else ""),
            highlight=False,
        )
        lab_plan = plan_for(running.profiles(), lab_network_options(options, running.ca_file))
        with _progress(lab_plan) as on_attempt:
            return await run_probes(lab_plan, on_attempt=on_attempt)


#: Width of a route comparison table on a pipe (the phases and a route name side by side).
ROUTED_PIPE_WIDTH = 160

#: Seconds between two redraws of the progress bar, at most.
PROGRESS_REDRAW_INTERVAL = 0.1


def _progress(
    plan: ProbePlan,
) -> AbstractContextManager[Callable[[ProbeTarget, Attempt], None] | None]:
    """A transient progress bar on stderr while probes run (only on a terminal).

    Redrawn when an attempt completes (at most every :data:`PROGRESS_REDRAW_INTERVAL`), on the
    loop's thread, never by Rich's refresh thread: that thread would take the GIL from the loop
    ten times a second (about 1 ms per redraw here) while other attempts' clocks run. A redraw
    on the loop is as costly, but rarer, and the loop-lag monitor sees it like any other stall.
    """
    if not err.is_terminal:
        return nullcontext(None)
    import time
    from contextlib import contextmanager

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    @contextmanager
    def bar() -> Iterator[Callable[[ProbeTarget, Attempt], None]]:
        with Progress(
            SpinnerColumn(),
            TextColumn("probing {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            transient=True,
            auto_refresh=False,
        ) as progress:
            total = len(plan.targets) * plan.count
            task = progress.add_task(f"{len(plan.targets)} target(s)", total=total)
            progress.refresh()
            done = 0
            drawn_at = time.monotonic()

            def advance(target: ProbeTarget, attempt: Attempt) -> None:
                nonlocal done, drawn_at
                done += 1
                progress.update(task, advance=1, description=target.label)
                now = time.monotonic()
                if done == total or now - drawn_at >= PROGRESS_REDRAW_INTERVAL:
                    drawn_at = now
                    progress.refresh()

            yield advance

    return bar()


def _emit(
    report: ProbeReport,
    format: ProbeFormat,
    output: str | None,
    verbose: bool,
    *,
    timeout: float | None = None,
) -> None:
    if format is ProbeFormat.json:
        import json

        write_output(json.dumps(report.to_dict(), indent=2), output)
    elif format is ProbeFormat.junit:
        from mpnet.render.junit import junit_xml

        write_output(junit_xml(report), output)
    elif format is ProbeFormat.prometheus:
        from mpnet.render.prometheus import prometheus_text

        write_output(prometheus_text(report, timeout_s=timeout), output)
    elif format is ProbeFormat.html:
        from mpnet.cli.html_output import write_report_html

        write_report_html(report.to_dict(), output)
    else:
        from mpnet.render.probe_table import probe_view
        from mpnet.render.routes import routed

        if output:
            from rich.console import Console

            from mpnet.cli.console import FILE_WIDTH
            from mpnet.cli.outfile import open_output_file

            with open_output_file(output) as fh:
                show(
                    probe_view(report, verbose=verbose),
                    Console(file=fh, width=FILE_WIDTH, highlight=False),
                )
        elif not out.is_terminal and "COLUMNS" not in os.environ and routed(report):
            # Piped: the route column needs room beside the phases (a file gets 160 too).
            import sys

            from rich.console import Console

            wide = Console(
                file=sys.stdout, width=ROUTED_PIPE_WIDTH, highlight=False, soft_wrap=True
            )
            show(probe_view(report, verbose=verbose), wide)
        else:
            show(probe_view(report, verbose=verbose))
    # TLS verification off is never silent, whatever the format.
    seen: set[str] = set()
    for result in report.results:
        for warning in result.ssl.warnings:
            if warning not in seen:
                seen.add(warning)
                err.print(f"mpnet: warning: {warning}", highlight=False)
