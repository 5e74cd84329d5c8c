"""Feed every configuration layer into the pure resolvers: one call per connection.

``decide`` is what the probe, ``mpnet ws``, the explain commands and the network manager all
use, so what mpnet explains is exactly what it does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mpnet.config.model import ConfigFile, Profile
from mpnet.core.proxy import ProxyDecision, resolve_proxy
from mpnet.core.proxy_url import DIRECT, ProxyChoice, parse_proxy_url
from mpnet.core.route import Route
from mpnet.core.tls import TLSDecision, TLSSetting, resolve_tls
from mpnet.errors import UsageError


@dataclass(frozen=True, slots=True)
class NetworkOptions:
    """The command-line layer: ``--proxy URL`` / ``--no-proxy``, ``--ca-bundle``, ``--insecure``.

    ``ca_origin`` names where a CA bundle came from when it is not the flag (``--lab``).
    """

    proxy: str | None = None
    no_proxy: bool = False
    ca_bundle: str | None = None
    insecure: bool = False
    ca_origin: str = "--ca-bundle"

    def __post_init__(self) -> None:
        # Contradictions are refused before any I/O.
        if self.proxy is not None and self.no_proxy:
            raise UsageError("--proxy and --no-proxy contradict each other; use one")
        if self.insecure and self.ca_bundle:
            raise UsageError("--insecure and --ca-bundle contradict each other; use one")


def cli_proxy_choice(proxy: str | None, no_proxy: bool) -> ProxyChoice:
    """The cli layer's proxy choice. Raises UsageError / InvalidProxyURL naming the flag."""
    if proxy is not None and no_proxy:
        raise UsageError("--proxy and --no-proxy contradict each other; use one")
    if no_proxy:
        return DIRECT
    if proxy is None:
        return None
    return parse_proxy_url(proxy, where="--proxy")


def cli_tls_setting(options: NetworkOptions) -> TLSSetting | None:
    if options.insecure:
        return TLSSetting(verify=False, reason="--insecure", origin="--insecure")
    if options.ca_bundle:
        return TLSSetting(ca_bundle=options.ca_bundle, origin=options.ca_origin)
    return None


def decide(
    url: str,
    target: str,
    *,
    profile: Profile | None,
    config: ConfigFile,
    options: NetworkOptions,
    env: Mapping[str, str],
    system_store: bool = True,
    route: Route | None = None,
) -> tuple[ProxyDecision, TLSDecision]:
    """The proxy and TLS decisions for one connection to ``url`` (``target`` is rest or ws).

    A ``route`` overrides every proxy layer (the ``route`` layer of the trace); TLS is decided
    by the usual layers whatever the route."""
    network = config.exchange_network(profile)
    exchange_origin = ""
    if network is not None and profile is not None:
        exchange_origin = f"{network.origin}.proxy" + (
            f".{target}" if network.proxy_rest != network.proxy_ws else ""
        )
    proxy = resolve_proxy(
        url,
        route=route.choice if route is not None else None,
        route_source=route.source if route is not None else "",
        cli=cli_proxy_choice(options.proxy, options.no_proxy),
        exchange=network.proxy_for(target) if network else None,
        exchange_origin=exchange_origin,
        service=config.proxy,
        env=env,
    )
    tls = resolve_tls(
        cli=cli_tls_setting(options),
        exchange=network.ssl if network else None,
        service=config.ssl,
        env=env,
        system_store=system_store,
    )
    return proxy, tls
