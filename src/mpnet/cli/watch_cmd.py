"""``mpnet watch``: probe targets every few seconds and keep a live table, like mtr."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from mpnet.cli.app import app
from mpnet.cli.completion import complete_exchange
from mpnet.cli.console import err, guarded, out
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
from mpnet.config.layers import NetworkOptions
from mpnet.config.model import ConfigFile, Profile
from mpnet.core.watch import WatchState
from mpnet.errors import UsageError
from mpnet.probe.plan import ProbePlan
from mpnet.probe.timeline import LatencyTrend

if TYPE_CHECKING:
    from mpnet.cli.watch_record import Recorder
    from mpnet.lab.faults import Fault

PlanFor = Callable[[Sequence[Profile], NetworkOptions], ProbePlan]

#: Width of the final summary when stdout is a file or a pipe (no terminal to measure).
SUMMARY_WIDTH = 160


@app.command()
def watch(
    exchanges: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="EXCHANGE",
            autocompletion=complete_exchange,
            help="Exchanges to watch (see `mpnet profiles list`; all with --lab).",
        ),
    ] = None,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between the starts of two cycles.")
    ] = 2.0,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds allowed for one attempt.")
    ] = 5.0,
    count: Annotated[
        int | None,
        typer.Option(
            "--count",
            "-n",
            help="Stop after N cycles (default: run until Ctrl-C); exit 1 if any interval had "
            "a failure, a drop or a reconnect.",
        ),
    ] = None,
    count_c: Annotated[
        int | None,
        # `-c N`, as this option was spelled before it became -n/--count like probe's and ws's.
        typer.Option("-c", hidden=True, help="Same as --count."),
    ] = None,
    rest: Annotated[bool, typer.Option("--rest/--no-rest", help="Watch the REST API.")] = True,
    ws: Annotated[bool, typer.Option("--ws/--no-ws", help="Watch the WebSocket feed.")] = True,
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
        bool, typer.Option("--lab", help="Watch local simulators instead (offline demo).")
    ] = False,
    fault: FaultOption = None,
    record: Annotated[
        str | None,
        typer.Option(
            "--record",
            metavar="FILE.jsonl",
            help="Append every cycle's samples to FILE.jsonl (see `mpnet report FILE.jsonl`).",
        ),
    ] = None,
) -> None:
    """Watch each target once per interval in a live table: last result and phases, rolling
    p50/p95, loss, last error, consecutive failures and drops (ok -> not ok transitions).

    REST: one fresh request per cycle. WebSocket: one long-lived feed per exchange that
    reconnects (with backoff) and resubscribes, as a trading system's does; each cycle pings it
    (the ping time is its latency), and the table counts its reconnects, its gaps (longest
    silence between data messages) and the data messages of the last interval. A cycle in which
    the feed is disconnected or its ping fails counts as loss, and so does one in which it
    dropped or reconnected: shown as "flapping N" (N drops or reconnects in that interval), never
    as ok. REST requests and feed connections keep each exchange's rate_limit; after a 429 or
    418 the REST rows show SKIP (nothing sent) until the exchange's wait is over. With --count,
    exits 0 when every cycle was ok, and 1 when any interval had a failure, a drop or a
    reconnect; Ctrl-C prints a summary and exits 130. With --via ROUTE (repeatable), each
    target gets one row per route.
    """
    with guarded():
        names = list(exchanges or [])
        if not names and not lab:
            raise UsageError("name at least one exchange to watch (see `mpnet profiles list`)")
        if not interval > 0:
            raise UsageError(f"--interval must be a positive number of seconds, not {interval}")
        if count is not None and count_c is not None and count != count_c:
            raise UsageError(f"--count {count} and -c {count_c} disagree: give one of them")
        count = count if count is not None else count_c
        if count is not None and count < 1:
            raise UsageError(f"--count must be at least 1, not {count}")
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

        plan_for: PlanFor = functools.partial(
            plan_probes,
            config=cfg,
            rest=rest,
            ws=ws,
            count=1,
            timeout=timeout,
            routes=routes,
            family=family,
        )

        # Plan (and so validate every proxy URL) before any I/O.
        plan = plan_for(chosen, options)
        state = WatchState(
            [
                (t.profile.name, t.target, t.route.name if t.route is not None else None)
                for t in plan.targets
            ]
        )
        session = _Session(state, interval=interval, count=count)
        if record:
            from mpnet.cli.watch_record import open_recorder

            session.recorder = open_recorder(record)
        try:
            run_interruptibly(
                lambda: session.run(plan, chosen, cfg, options, lab, faults, plan_for)
            )
        except KeyboardInterrupt:
            session.summary()
            raise
        session.summary()
        # Any bad interval fails the run, not only the last one: a feed that flapped and
        # recovered is what this command is for.
        raise typer.Exit(ExitCode.PROBE_FAILED if state.troubled else ExitCode.OK)


class _Session:
    """One run of ``mpnet watch``: the cycles, the live view and the summary."""

    def __init__(self, state: WatchState, *, interval: float, count: int | None) -> None:
        self.state = state
        self.interval = interval
        self.count = count
        self.recorder: Recorder | None = None
        self.trend = LatencyTrend()

    async def run(
        self,
        plan: ProbePlan,
        chosen: Sequence[Profile],
        cfg: ConfigFile,
        options: NetworkOptions,
        lab: bool,
        faults: dict[str, Fault],
        plan_for: PlanFor,
    ) -> None:
        if not lab:
            await self._cycles(plan)
            return
        from mpnet.lab import Lab

        async with Lab(chosen, tls=True, faults=faults) as running:
            err.print(
                f"mpnet: lab: {len(running.names())} simulated exchange(s) on 127.0.0.1",
                highlight=False,
            )
            network = lab_network_options(options, running.ca_file)
            # The lab's profiles in the order chosen, so they line up with the state's rows.
            simulated = [running.profile(profile.name) for profile in chosen]
            await self._cycles(plan_for(simulated, network))

    async def _cycles(self, plan: ProbePlan) -> None:
        from mpnet.probe.watch_runner import WatchRunner
        from mpnet.render.watch import watch_line, watch_table

        # TLS verification off is never silent.
        for warning in dict.fromkeys(w for t in plan.targets for w in t.tls.warnings):
            err.print(f"mpnet: warning: {warning}", highlight=False)
        live = None
        if out.is_terminal:
            from rich.live import Live

            live = Live(
                watch_table(self.state.rows(), cycles=0, interval=self.interval),
                console=out,
                auto_refresh=False,
            )
            live.start()

        def show() -> None:
            if self.recorder is not None:
                self.recorder(self.state.rows(), self.state.cycles)
            self.trend.record(self.state.rows())
            if live is not None:
                table = watch_table(
                    self.state.rows(),
                    cycles=self.state.cycles,
                    interval=self.interval,
                    trends=self.trend.values(),
                )
                live.update(table, refresh=True)
                return
            for row in self.state.rows():
                out.print(watch_line(row, cycle=self.state.cycles), highlight=False)
            # A pipe is block-buffered: `| tee` and log shippers see each cycle now.
            out.file.flush()

        try:
            async with WatchRunner(plan, self.state) as runner:
                await runner.run(interval=self.interval, count=self.count, on_cycle=show)
        finally:
            if live is not None:
                # The last live table is replaced by the summary, not left above it.
                live.transient = True
                live.stop()

    def summary(self) -> None:
        from mpnet.render.watch import watch_table

        table = watch_table(
            self.state.rows(),
            cycles=self.state.cycles,
            interval=self.interval,
            final=True,
            trends=self.trend.values(),
        )
        if out.is_terminal:
            out.print(table)
            return
        import sys

        from rich.console import Console

        # A pipe or file has no width to measure; rich would assume 80 and fold every cell.
        Console(file=sys.stdout, width=SUMMARY_WIDTH, highlight=False).print(table)
