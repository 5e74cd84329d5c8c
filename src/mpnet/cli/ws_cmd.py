"""``mpnet ws URL``: one WebSocket session with phase timings, like websocat with a stopwatch."""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mpnet.cli.app import app
from mpnet.cli.console import err, error_line, guarded, out, write_output
from mpnet.cli.exit_codes import ExitCode
from mpnet.cli.options import (
    CABundleOption,
    ConfigOption,
    Format,
    FormatOption,
    InsecureOption,
    NoProxyOption,
    ProxyOption,
)
from mpnet.errors import UsageError


class Backend(StrEnum):
    websockets = "websockets"
    aiohttp = "aiohttp"


@app.command("ws")
def ws(
    url: Annotated[str, typer.Argument(help="WebSocket URL (ws:// or wss://).")],
    send: Annotated[
        list[str] | None,
        typer.Option("--send", metavar="TEXT", help="Text message to send after connecting."),
    ] = None,
    count: Annotated[
        int, typer.Option("--count", "-n", min=0, help="Messages to receive before closing.")
    ] = 1,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0.001, help="Seconds for connecting, and for each message."),
    ] = 10.0,
    proxy: ProxyOption = None,
    no_proxy: NoProxyOption = False,
    config: ConfigOption = None,
    ca_bundle: CABundleOption = None,
    insecure: InsecureOption = False,
    backend: Annotated[
        Backend, typer.Option("--backend", help="WebSocket library to use.")
    ] = Backend.websockets,
    format: FormatOption = Format.table,
) -> None:
    """Connect, send each --send, receive --count messages, close; show every phase's time."""
    with guarded():
        import asyncio

        from mpnet.config.file import load_config
        from mpnet.config.layers import NetworkOptions, decide
        from mpnet.net.tls import system_trust_store_available
        from mpnet.net.ws import run_session

        if not url.lower().startswith(("ws://", "wss://")):
            raise UsageError(f"URL must start with ws:// or wss://, not {url!r}")
        options = NetworkOptions(
            proxy=proxy, no_proxy=no_proxy, ca_bundle=ca_bundle, insecure=insecure
        )
        cfg = load_config(config, env=os.environ, cwd=Path.cwd())
        proxy_decision, tls_decision = decide(
            url,
            "ws",
            profile=None,
            config=cfg,
            options=options,
            env=os.environ,
            system_store=system_trust_store_available(),
        )
        result = asyncio.run(
            run_session(
                url,
                proxy=proxy_decision,
                tls=tls_decision,
                timeout=timeout,
                backend=backend.value,
                send=list(send or ()),
                count=count,
            )
        )
        if format is Format.json:
            write_output(json.dumps(result.to_dict(), indent=2), None)
        else:
            from mpnet.render.ws_session import render_ws_session

            out.print(render_ws_session(result))
        if url.lower().startswith("wss://"):
            for warning in tls_decision.warnings:
                err.print(f"mpnet: warning: {warning}", highlight=False)
        if result.error is not None:
            error_line(f"{result.error.phase}: {result.error.message}")
            raise typer.Exit(ExitCode.PROBE_FAILED)
