"""``mpnet ssl explain``: the TLS policy chain of each connection and the CA bundle used."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from mpnet.cli.app import app
from mpnet.cli.completion import complete_exchange
from mpnet.cli.console import err, guarded, out
from mpnet.cli.options import (
    CABundleOption,
    ConfigOption,
    Format,
    FormatOption,
    InsecureOption,
    ProfilesOption,
    ProxyCABundleOption,
    load_context,
)
from mpnet.config.layers import NetworkOptions, decide
from mpnet.errors import UsageError
from mpnet.net.tls import build_ssl_context
from mpnet.render.tls_explain import tls_explain_dict, tls_explain_table

ssl_app = typer.Typer(
    help="Explain TLS policy decisions (which CA, and why), without connecting.",
    no_args_is_help=True,
)
app.add_typer(ssl_app, name="ssl")


@ssl_app.command("explain")
def explain(
    exchange: Annotated[
        str | None,
        typer.Argument(metavar="EXCHANGE", autocompletion=complete_exchange, help="Exchange name."),
    ] = None,
    url: Annotated[
        str | None, typer.Option("--url", metavar="URL", help="Explain one URL instead.")
    ] = None,
    ca_bundle: CABundleOption = None,
    proxy_ca_bundle: ProxyCABundleOption = None,
    insecure: InsecureOption = False,
    config: ConfigOption = None,
    profiles: ProfilesOption = None,
    format: FormatOption = Format.table,
) -> None:
    """Show every layer consulted for the TLS policy, the winner, and the CA bundle it verifies
    against. Nothing is sent: the CA bundle is loaded, no server is contacted (`mpnet probe`
    shows the server's certificate)."""
    with guarded():
        if (exchange is None) == (url is None):
            raise UsageError("give an EXCHANGE or --url URL (one of them)")
        cfg, found = load_context(config, profiles)
        options = NetworkOptions(
            ca_bundle=ca_bundle, insecure=insecure, proxy_ca_bundle=proxy_ca_bundle
        )
        profile = found.get(exchange) if exchange else None
        if profile is not None:
            pairs = [(t, profile.url_for(t) or "") for t in profile.targets]
        else:
            assert url is not None
            pairs = [("ws" if url.startswith("ws") else "rest", url)]
        rows = []
        for target, target_url in pairs:
            _, tls = decide(
                target_url,
                target,
                profile=profile,
                config=cfg,
                options=options,
                env=os.environ,
            )
            rows.append((target, target_url, tls))
        # As `probe` does before dialling: a CA bundle that is missing or not PEM is an input
        # error (exit 2), not a policy to explain.
        loaded = {(t.ca_kind, t.ca): t for _, _, t in rows if t.ca_kind in ("file", "dir")}
        for decision in loaded.values():
            build_ssl_context(decision)
        for proxy_ca in {t.for_proxy() for _, _, t in rows if t.proxy_ca is not None}:
            build_ssl_context(proxy_ca)
        name = profile.name if profile else None
        if format is Format.json:
            out.print_json(json.dumps(tls_explain_dict(name, rows)))
        else:
            out.print(tls_explain_table(name, rows))
        for _, _, tls in rows:
            for warning in tls.warnings:
                err.print(f"mpnet: warning: {warning}")
