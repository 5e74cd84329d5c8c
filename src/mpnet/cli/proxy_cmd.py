"""``mpnet proxy explain``: the proxy layer chain of each connection, the winner, the no_proxy
verdict, and what five other tools would do with the same environment."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from mpnet.cli.app import app
from mpnet.cli.completion import complete_exchange
from mpnet.cli.console import guarded, out, show
from mpnet.cli.options import (
    ConfigOption,
    Format,
    FormatOption,
    NoProxyOption,
    ProfilesOption,
    ProxyCABundleOption,
    ProxyOption,
    ViaOption,
    check_via_alone,
    load_context,
    routes_from,
)
from mpnet.errors import UsageError

proxy_app = typer.Typer(help="Explain proxy decisions.", no_args_is_help=True)
app.add_typer(proxy_app, name="proxy")


def _target_kind(url: str) -> str:
    return "ws" if url.strip().lower().startswith(("ws://", "wss://")) else "rest"


@proxy_app.command("explain")
def explain(
    exchange: Annotated[
        str | None,
        typer.Argument(metavar="EXCHANGE", autocompletion=complete_exchange, help="Exchange name."),
    ] = None,
    url: Annotated[
        str | None, typer.Option("--url", metavar="URL", help="Explain one URL instead.")
    ] = None,
    proxy: ProxyOption = None,
    no_proxy: NoProxyOption = False,
    via: ViaOption = None,
    proxy_ca_bundle: ProxyCABundleOption = None,
    config: ConfigOption = None,
    profiles: ProfilesOption = None,
    format: FormatOption = Format.table,
) -> None:
    """Show every proxy layer consulted, the winner, and what urllib, aiohttp, websockets, httpx
    and curl would do with the same URL and environment. With --via ROUTE, once per route (the
    route layer above the others)."""
    with guarded():
        from mpnet.config.layers import NetworkOptions, decide
        from mpnet.core.libraries import case_conflicts, library_verdicts
        from mpnet.core.proxy import parse_target
        from mpnet.render.explain import ProxyExplanation, explain_dict, explain_table

        if (exchange is None) == (url is None):
            raise UsageError("give an EXCHANGE or --url URL (one of them)")
        check_via_alone(via, proxy=proxy, no_proxy=no_proxy)
        options = NetworkOptions(proxy=proxy, no_proxy=no_proxy, proxy_ca_bundle=proxy_ca_bundle)
        if url is not None:
            # Refuse a bad URL before reading any file.
            parse_target(url)
        cfg, found = load_context(config, profiles)
        routes = routes_from(via, cfg, proxy=proxy, no_proxy=no_proxy)
        profile = found.get(exchange) if exchange else None
        if profile is not None:
            pairs = [(t, profile.url_for(t) or "") for t in profile.targets]
        else:
            assert url is not None
            pairs = [(_target_kind(url), url)]
        env = dict(os.environ)
        explanations = []
        for target, target_url in pairs:
            for route in routes or (None,):
                decision, tls = decide(
                    target_url,
                    target,
                    profile=profile,
                    config=cfg,
                    options=options,
                    env=env,
                    route=route,
                )
                explanations.append(
                    ProxyExplanation(
                        target=target if route is None else f"{target} via {route.name}",
                        url=target_url,
                        decision=decision,
                        libraries=library_verdicts(target_url, env),
                        conflicts=case_conflicts(target_url, env),
                        tls=tls,
                    )
                )
        # A proxy CA bundle that is missing or not PEM is bad input (exit 2), as in `probe`.
        from mpnet.net.tls import build_ssl_context

        for ca_decision in {e.tls.for_proxy() for e in explanations if e.tls and e.tls.proxy_ca}:
            build_ssl_context(ca_decision)
        name = profile.name if profile else None
        if format is Format.json:
            out.print_json(json.dumps(explain_dict(name, explanations)))
        else:
            show(explain_table(name, explanations))
