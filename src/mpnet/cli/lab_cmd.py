"""``mpnet lab [EXCHANGE...]``: run the local exchange simulators in the foreground."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mpnet.cli.app import app
from mpnet.cli.completion import complete_exchange, complete_fault
from mpnet.cli.console import err, guarded, out
from mpnet.cli.options import ProfilesOption

if TYPE_CHECKING:
    from mpnet.config.model import Profile
    from mpnet.lab import Lab


@app.command("lab")
def lab_command(
    exchanges: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="EXCHANGE",
            autocompletion=complete_exchange,
            help="Exchanges to simulate (default: all).",
        ),
    ] = None,
    plain: Annotated[
        bool, typer.Option("--plain", help="Serve http:// and ws:// instead of TLS.")
    ] = False,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            metavar="EXCHANGE=MODE",
            autocompletion=complete_fault,
            help=(
                "Fault mode of one exchange (repeatable): geo_block, waf, rate_limit, "
                "slow[:S], refuse_upgrade, no_data, invalid_json, drop_after:N, clock_skew:S, "
                "feed_lag:MS, subscribe_error, maintenance, no_pong."
            ),
        ),
    ] = None,
    profiles_dir: Annotated[
        Path | None,
        typer.Option(
            "--profiles-dir",
            metavar="DIR",
            help="Write the lab profiles here (default: a temporary directory removed at exit).",
        ),
    ] = None,
    profiles: ProfilesOption = None,
) -> None:
    """Run exchange simulators on 127.0.0.1 until Ctrl-C, and print how to probe them.

    Ctrl-C exits 130; SIGTERM and SIGHUP stop the lab normally (exit 0). Either way the
    simulators stop and the temporary directory (CA, profiles) is removed.
    """
    import os
    import signal

    from mpnet.cli.live import INTERRUPT_SIGNALS, Stopped, run_interruptibly
    from mpnet.config.profiles import load_profiles
    from mpnet.lab import Lab
    from mpnet.lab.faults import parse_fault_assignment

    with guarded():
        faults = dict(parse_fault_assignment(text) for text in fault or ())
        known = load_profiles(profiles or (), env=os.environ)
        chosen = known.select(exchanges) if exchanges else list(known)
        lab = Lab(chosen, tls=not plain, faults=faults)
        try:
            run_interruptibly(
                lambda: _serve(lab, profiles_dir, selected=bool(exchanges)),
                stop_signals=INTERRUPT_SIGNALS,
            )
        except Stopped as stopped:
            err.print(f"mpnet lab: stopped ({signal.Signals(stopped.signum).name})")


async def _serve(lab: Lab, profiles_dir: Path | None, *, selected: bool) -> None:
    import asyncio

    async with lab:
        assert lab.workdir is not None
        written = lab.write_profiles_dir(profiles_dir or lab.workdir / "profiles")
        _print_summary(lab, lab.profiles(), written, selected=selected)
        await asyncio.Event().wait()


def _print_summary(lab: Lab, profiles: list[Profile], written: Path, *, selected: bool) -> None:
    transport = "TLS" if lab.ca_file else "plain"
    simulators = "exchange simulator" if len(profiles) == 1 else "exchange simulators"
    out.print(f"mpnet lab: {len(profiles)} {simulators} on {lab.host} ({transport})")
    width = max(len(p.name) for p in profiles)
    for profile in profiles:
        fault = lab.fault(profile.name)
        suffix = f"  [fault: {fault}]" if fault else ""
        rest = profile.url_for("rest") or "-"
        ws = profile.url_for("ws") or "-"
        out.print(f"  {profile.name:<{width}}  {rest}  {ws}{suffix}", markup=False)
    if lab.ca_file:
        out.print(f"CA file:      {lab.ca_file}", markup=False)
    out.print(f"profiles dir: {written}", markup=False)
    command = ["mpnet", "probe", "--profiles", str(written)]
    if lab.ca_file:
        command += ["--ca-bundle", lab.ca_file]
    command += [p.name for p in profiles] if selected else ["--all"]
    out.print("probe them with:", markup=False)
    out.print(f"  {shlex.join(command)}", markup=False)
    err.print("Ctrl-C stops the lab.")
