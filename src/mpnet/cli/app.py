"""The ``mpnet`` command: parse options, call the library, render, exit with the mapped code.

Each command lives in its own module under ``mpnet.cli`` and registers itself on :data:`app`
(or a sub-app) when imported below. Heavy libraries (aiohttp, websockets) are imported inside
the commands that touch the network, never at module level here.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mpnet import __version__
from mpnet.cli.console import state

app = typer.Typer(
    name="mpnet",
    help="Connectivity diagnostics for exchange REST and WebSocket paths, direct or via proxies.",
    no_args_is_help=True,
    add_completion=False,
    # Locals may hold proxy passwords.
    pretty_exceptions_show_locals=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mpnet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for errors (passwords stay masked).")
    ] = False,
) -> None:
    state.debug = debug


def get_app() -> typer.Typer:
    """The app with every command registered (tests use this with Typer's runner)."""
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"mpnet.cli.{name}")
    return app


#: Modules that add commands to :data:`app`; each one imports only what its commands need.
COMMAND_MODULES: tuple[str, ...] = (
    "profiles_cmd",
    "ssl_cmd",
    "probe_cmd",
    "lab_cmd",
    "proxy_cmd",
    "serve_cmd",
    "watch_cmd",
    "ws_cmd",
    "report_cmd",
)
