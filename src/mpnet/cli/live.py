"""What the long-running commands (``serve``, ``watch``) share: Ctrl-C handling and lab set-up."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from mpnet.cli.completion import complete_fault
from mpnet.config.layers import NetworkOptions
from mpnet.errors import UsageError
from mpnet.probe.looplag import new_event_loop

if TYPE_CHECKING:
    from mpnet.lab.faults import Fault

T = TypeVar("T")

FaultOption = Annotated[
    list[str] | None,
    typer.Option(
        "--fault",
        metavar="EXCHANGE=MODE",
        autocompletion=complete_fault,
        help="With --lab: make one simulated exchange misbehave (geo_block, waf, rate_limit, "
        "slow[:S], refuse_upgrade, no_data, invalid_json, drop_after:N, clock_skew:S, feed_lag:MS, "
        "subscribe_error, maintenance, no_pong).",
    ),
]


#: Signals that end any run the way Ctrl-C does (cleaned up, exit 130) unless the caller makes
#: them a normal stop; SIGHUP does not exist on Windows.
INTERRUPT_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def run_interruptibly(
    factory: Callable[[], Awaitable[T]], *, stop_signals: Sequence[signal.Signals] = ()
) -> T:
    """Run a coroutine on a fresh loop until it ends.

    SIGINT (Ctrl-C) cancels it and raises KeyboardInterrupt here once it has cleaned up, so the
    caller can print what it has and exit 130; so do SIGTERM and SIGHUP (``kill``, a closed
    terminal), so that a lab's temporary directory is removed whatever ends the run. Each of
    ``stop_signals`` (SIGTERM for a service) raises :class:`Stopped` instead: a requested,
    normal end.
    """
    # Its selector shows the loop-lag monitor when the loop was busy (probe/looplag.py).
    loop = new_event_loop()
    stopped_by: list[signal.Signals] = []
    try:
        task = loop.create_task(_as_coroutine(factory))

        def cancel(signum: signal.Signals) -> None:
            stopped_by.append(signum)
            task.cancel()

        handled = dict.fromkeys((signal.SIGINT, *INTERRUPT_SIGNALS, *stop_signals))
        for signum in handled:
            # Not the main thread (tests) or no signal support: Ctrl-C stays KeyboardInterrupt.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, cancel, signum)
        try:
            return loop.run_until_complete(task)
        except asyncio.CancelledError:
            if stopped_by and stopped_by[0] in stop_signals:
                raise Stopped(stopped_by[0]) from None
            raise KeyboardInterrupt from None
    finally:
        try:
            # As asyncio.run does: tasks a library left behind (a server's request handlers)
            # are cancelled and awaited, so none is destroyed while pending.
            pending = asyncio.all_tasks(loop)
            for leftover in pending:
                leftover.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


class Stopped(Exception):
    """The run was stopped by a signal asking for a normal end (SIGTERM)."""

    def __init__(self, signum: signal.Signals) -> None:
        super().__init__(signum.name)
        self.signum = signum


async def _as_coroutine(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


def parse_fault_assignments(values: Sequence[str] | None, *, lab: bool) -> dict[str, Fault]:
    """``["binance=geo_block", "okx=slow:3"]`` -> exchange name -> fault, as ``mpnet lab`` reads
    them. Unknown exchange names are refused by the lab when it starts.

    Raises:
        UsageError: ``--fault`` without ``--lab``, or an item that is not EXCHANGE=MODE.
    """
    if not values:
        return {}
    if not lab:
        raise UsageError("--fault only applies to the simulators: add --lab")
    from mpnet.lab.faults import parse_fault_assignment

    return dict(parse_fault_assignment(value) for value in values)


def lab_network_options(options: NetworkOptions, ca_file: str | None) -> NetworkOptions:
    """The command line's options, trusting the lab's CA unless the user chose a TLS policy."""
    if options.ca_bundle or options.insecure or not ca_file:
        return options
    return dataclasses.replace(options, ca_bundle=ca_file, ca_origin="--lab (the lab's own CA)")
