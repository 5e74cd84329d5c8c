"""``mpnet watch``: probe targets every few seconds and keep a live table, like mtr."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from mpnet.cli.app import app
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
    NoProxyOption,
    ProfilesOption,
    ProxyOption,
    load_context,
)
from mpnet.config.layers import NetworkOptions
from mpnet.config.model import ConfigFile, Profile
from mpnet.errors import UsageError
from mpnet.probe.plan import ProbePlan, build_plan
from mpnet.probe.watch import WatchState

if TYPE_CHECKING:
    from mpnet.core.result import Attempt
    from mpnet.lab.faults import Fault
    from mpnet.probe.plan import ProbeTarget

PlanFor = Callable[[Sequence[Profile], NetworkOptions], ProbePlan]

#: Width of the final summary when stdout is a file or a pipe (no terminal to measure).
SUMMARY_WIDTH = 160


@app.command()
def watch(
    exchanges: Annotated[
        list[str] | None,
        typer.Argument(help="Exchanges to watch (see `mpnet profiles list`; all with --lab)."),
    ] = None,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between the starts of two cycles.")
    ] = 2.0,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds allowed for one attempt.")
    ] = 5.0,
    count: Annotated[
        int | None,
        typer.Option("--count", "-c", help="Stop after N cycles (default: run until Ctrl-C)."),
    ] = None,
    rest: Annotated[bool, typer.Option("--rest/--no-rest", help="Watch the REST API.")] = True,
    ws: Annotated[bool, typer.Option("--ws/--no-ws", help="Watch the WebSocket feed.")] = True,
    proxy: ProxyOption = None,
    no_proxy: NoProxyOption = False,
    config: ConfigOption = None,
    profiles: ProfilesOption = None,
    ca_bundle: CABundleOption = None,
    insecure: InsecureOption = False,
    lab: Annotated[
        bool, typer.Option("--lab", help="Watch local simulators instead (offline demo).")
    ] = False,
    fault: FaultOption = None,
) -> None:
    """Probe each target once per interval and show a live table: last result and phases,
    rolling p50/p95, loss, last error, consecutive failures and drops (ok -> fail transitions).

    Each cycle opens fresh connections, so a WebSocket "drop" is a cycle that failed after one
    that worked, not a reconnect of one long-lived socket. With --count, exits 0 when the last
    cycle was all ok, else 1; Ctrl-C prints a summary and exits 130.
    """
    with guarded():
        names = list(exchanges or [])
        if not names and not lab:
            raise UsageError("name at least one exchange to watch (see `mpnet profiles list`)")
        if not interval > 0:
            raise UsageError(f"--interval must be a positive number of seconds, not {interval}")
        if count is not None and count < 1:
            raise UsageError(f"--count must be at least 1, not {count}")
        faults = parse_fault_assignments(fault, lab=lab)
        options = NetworkOptions(
            proxy=proxy, no_proxy=no_proxy, ca_bundle=ca_bundle, insecure=insecure
        )
        cfg, found = load_context(config, profiles)
        chosen = [found.get(n) for n in names] if names else list(found)

        def plan_for(targets: Sequence[Profile], network: NetworkOptions) -> ProbePlan:
            from mpnet.net.tls import system_trust_store_available

            return build_plan(
                targets,
                config=cfg,
                options=network,
                env=os.environ,
                rest=rest,
                ws=ws,
                count=1,
                timeout=timeout,
                system_store=system_trust_store_available(),
            )

        # Plan (and so validate every proxy URL) before any I/O.
        plan = plan_for(chosen, options)
        state = WatchState([(t.profile.name, t.target) for t in plan.targets])
        session = _Session(state, interval=interval, count=count)
        try:
            run_interruptibly(
                lambda: session.run(plan, chosen, cfg, options, lab, faults, plan_for)
            )
        except KeyboardInterrupt:
            session.summary()
            raise
        session.summary()
        raise typer.Exit(ExitCode.OK if state.last_cycle_ok else ExitCode.PROBE_FAILED)


class _Session:
    """One run of ``mpnet watch``: the cycles, the live view and the summary."""

    def __init__(self, state: WatchState, *, interval: float, count: int | None) -> None:
        self.state = state
        self.interval = interval
        self.count = count

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
        import asyncio
        import time

        from mpnet.render.watch import watch_line, watch_table

        planned = [(t.profile.name, t.target) for t in plan.targets]
        assert planned == [(w.exchange, w.target) for w in self.state.targets], planned
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
        try:
            while self.count is None or self.state.cycles < self.count:
                started = time.monotonic()
                attempts = await asyncio.gather(*(_attempt(t, plan.timeout) for t in plan.targets))
                codes = [_finding_code(t, a) for t, a in zip(plan.targets, attempts, strict=True)]
                self.state.record_cycle(attempts, codes)
                if live is not None:
                    table = watch_table(
                        self.state.rows(), cycles=self.state.cycles, interval=self.interval
                    )
                    live.update(table, refresh=True)
                else:
                    for row in self.state.rows():
                        out.print(watch_line(row, cycle=self.state.cycles), highlight=False)
                    # A pipe is block-buffered: `| tee` and log shippers see each cycle now.
                    out.file.flush()
                if self.count is not None and self.state.cycles >= self.count:
                    break
                await asyncio.sleep(max(0.0, started + self.interval - time.monotonic()))
        finally:
            if live is not None:
                # The last live table is replaced by the summary, not left above it.
                live.transient = True
                live.stop()

    def summary(self) -> None:
        from mpnet.render.watch import watch_table

        table = watch_table(
            self.state.rows(), cycles=self.state.cycles, interval=self.interval, final=True
        )
        if out.is_terminal:
            out.print(table)
            return
        import sys

        from rich.console import Console

        # A pipe or file has no width to measure; rich would assume 80 and fold every cell.
        Console(file=sys.stdout, width=SUMMARY_WIDTH, highlight=False).print(table)


async def _attempt(target: ProbeTarget, timeout: float) -> Attempt:
    from mpnet.probe.engine import run_attempt

    return await run_attempt(target, timeout)


def _finding_code(target: ProbeTarget, attempt: Attempt) -> str | None:
    """The diagnosis code that explains a failed attempt (GEO_BLOCKED, ...), if any."""
    if attempt.ok:
        return None
    from mpnet.core.diagnose import diagnose_one
    from mpnet.core.result import ProbeResult

    result = ProbeResult(
        exchange=target.profile.name,
        target=target.target,
        url=target.url,
        attempts=(attempt,),
        proxy=target.proxy,
        ssl=target.tls,
    )
    for finding in diagnose_one(result):
        if finding.severity == "error":
            return finding.code
    return None
