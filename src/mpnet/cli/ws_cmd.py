"""``mpnet ws URL``: one WebSocket session with phase timings, like websocat with a stopwatch."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TextIO

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
    ProxyCABundleOption,
    ProxyOption,
    warn_about_no_proxy,
)
from mpnet.errors import UsageError

#: Headers the WebSocket handshake sets itself; a second copy would break the upgrade.
HANDSHAKE_HEADERS = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
    }
)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 field-name


def parse_headers(values: Sequence[str]) -> dict[str, str]:
    """``["Origin: https://x", "X-Id:7"]`` -> headers; a name given twice keeps both values,
    comma-joined (RFC 9110 5.3). The values are never echoed: they may hold tokens.

    Raises:
        UsageError: no colon, a bad name, a line break, or a header the handshake sets.
    """
    headers: dict[str, str] = {}
    for text in values:
        name, colon, value = text.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not name:
            raise UsageError("--header: expected NAME:VALUE, e.g. 'Origin: https://example.com'")
        if not _TOKEN.fullmatch(name):
            raise UsageError(f"--header: {name!r} is not a valid header name")
        if any(ch in value for ch in "\r\n\0"):
            raise UsageError(f"--header {name}: the value has a line break; a header is one line")
        if name.lower() in HANDSHAKE_HEADERS:
            raise UsageError(f"--header {name}: set by the WebSocket handshake itself")
        known = next((k for k in headers if k.lower() == name.lower()), None)
        if known is None:
            headers[name] = value
        else:
            headers[known] = f"{headers[known]}, {value}"
    return headers


def expand_stdin(sends: Sequence[str], stdin: TextIO) -> list[str]:
    """Each ``--send``, with ``-`` replaced by the lines of stdin (one message per line, blank
    lines skipped), as websocat reads them.

    Raises:
        UsageError: ``--send -`` given twice (stdin can be read once).
    """
    if list(sends).count("-") > 1:
        raise UsageError("--send - reads stdin, which can be read once: give it once")
    messages: list[str] = []
    for text in sends:
        if text == "-":
            messages += [line for line in stdin.read().splitlines() if line.strip()]
        else:
            messages.append(text)
    return messages


class Backend(StrEnum):
    websockets = "websockets"
    aiohttp = "aiohttp"


@app.command("ws")
def ws(
    url: Annotated[str, typer.Argument(metavar="URL", help="WebSocket URL (ws:// or wss://).")],
    send: Annotated[
        list[str] | None,
        typer.Option(
            "--send",
            metavar="TEXT",
            help="Text message to send after connecting (repeatable); `-` sends each line of "
            "stdin as one message.",
        ),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option(
            "--header",
            "-H",
            metavar="NAME:VALUE",
            help="Extra header for the upgrade request (repeatable), e.g. 'Origin: https://x'.",
        ),
    ] = None,
    max_chars: Annotated[
        int,
        typer.Option(
            "--max-chars",
            min=0,
            metavar="N",
            help="Cut each message shown at this many characters; 0 writes every message in "
            "full as one JSON line on stdout (the report goes to stderr).",
        ),
    ] = 200,
    count: Annotated[
        int,
        typer.Option(
            "--count",
            "-n",
            min=0,
            metavar="N",
            help="Messages to receive before closing (0 or more).",
        ),
    ] = 1,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            min=0.001,
            metavar="S",
            help="Seconds for connecting, and for each message (at least 0.001).",
        ),
    ] = 10.0,
    proxy: ProxyOption = None,
    no_proxy: NoProxyOption = False,
    config: ConfigOption = None,
    ca_bundle: CABundleOption = None,
    proxy_ca_bundle: ProxyCABundleOption = None,
    insecure: InsecureOption = False,
    backend: Annotated[
        Backend, typer.Option("--backend", help="WebSocket library to use.")
    ] = Backend.websockets,
    format: FormatOption = Format.table,
) -> None:
    """Connect, send each --send, receive --count messages, close; show every phase's time."""
    with guarded():
        import asyncio
        import sys

        from mpnet.config.file import load_config
        from mpnet.config.layers import NetworkOptions, decide
        from mpnet.net.ws import run_session

        if not url.lower().startswith(("ws://", "wss://")):
            raise UsageError(f"URL must start with ws:// or wss://, not {url!r}")
        options = NetworkOptions(
            proxy=proxy,
            no_proxy=no_proxy,
            ca_bundle=ca_bundle,
            insecure=insecure,
            proxy_ca_bundle=proxy_ca_bundle,
        )
        headers = parse_headers(header or ())
        messages = expand_stdin(send or (), sys.stdin)
        cfg = load_config(config, env=os.environ, cwd=Path.cwd())
        warn_about_no_proxy(cfg, os.environ)
        proxy_decision, tls_decision = decide(
            url,
            "ws",
            profile=None,
            config=cfg,
            options=options,
            env=os.environ,
        )
        if tls_decision.proxy_ca is not None:
            from mpnet.net.tls import context_for

            # A proxy CA bundle that is missing or not PEM is bad input (exit 2), whichever
            # proxy the layers chose.
            context_for(tls_decision.for_proxy())
        result = asyncio.run(
            run_session(
                url,
                proxy=proxy_decision,
                tls=tls_decision,
                timeout=timeout,
                backend=backend.value,
                send=messages,
                count=count,
                headers=headers,
            )
        )
        if format is Format.json:
            write_output(json.dumps(result.to_dict(), indent=2), None)
        elif max_chars == 0:
            # websocat's habit: the messages alone on stdout, for `| jq`; the report on stderr.
            from mpnet.core.ws_session import message_line
            from mpnet.render.ws_session import render_ws_session

            for message in result.messages:
                sys.stdout.write(message_line(message) + "\n")
            sys.stdout.flush()
            err.print(render_ws_session(result, messages=False))
        else:
            from mpnet.render.ws_session import render_ws_session

            out.print(render_ws_session(result, max_chars=max_chars))
        if url.lower().startswith("wss://"):
            for warning in tls_decision.warnings:
                err.print(f"mpnet: warning: {warning}", highlight=False)
        if result.error is not None:
            error_line(f"{result.error.phase}: {result.error.message}")
            raise typer.Exit(ExitCode.PROBE_FAILED)
