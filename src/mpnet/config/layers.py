"""Feed every configuration layer into the pure resolvers: one call per connection.

``decide`` is what the probe, ``mpnet ws``, the explain commands, the exporter and the library's
:class:`~mpnet.client.NetworkConnectionManager` all use, so what mpnet explains is exactly what it
does. It is also the one place that asks whether this machine has a system trust store
(:func:`system_trust_store_available`): without one, the default TLS layer verifies with certifi.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, replace

from mpnet.config.model import ConfigFile, Profile
from mpnet.core.proxy import ProxyDecision, TraceEntry, resolve_proxy
from mpnet.core.proxy_url import DIRECT, ProxyChoice, parse_proxy_url
from mpnet.core.route import Route
from mpnet.core.tls import TLSDecision, TLSSetting, resolve_tls, with_proxy_ca
from mpnet.errors import UsageError


@dataclass(frozen=True, slots=True)
class NetworkOptions:
    """The command-line layer: ``--proxy URL`` / ``--no-proxy``, ``--ca-bundle``, ``--insecure``,
    ``--proxy-ca-bundle``.

    ``ca_origin`` names where a CA bundle came from when it is not the flag (``--lab``);
    ``proxy_ca_origin`` likewise for the proxy's CA bundle (``proxy_ca_bundle=``).
    """

    proxy: str | None = None
    no_proxy: bool = False
    ca_bundle: str | None = None
    insecure: bool = False
    ca_origin: str = "--ca-bundle"
    proxy_ca_bundle: str | None = None
    proxy_ca_origin: str = "--proxy-ca-bundle"

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


def system_trust_store_available() -> bool:
    """True when OpenSSL's default verify paths hold a CA file or a non-empty CA directory.

    The one place mpnet asks; :func:`decide` does when its caller does not say.
    """
    paths = ssl.get_default_verify_paths()
    if paths.cafile and os.path.isfile(paths.cafile):
        return True
    capath = paths.capath
    if not (capath and os.path.isdir(capath)):
        return False
    with os.scandir(capath) as entries:
        return any(True for _ in entries)


def decide(
    url: str,
    target: str,
    *,
    profile: Profile | None,
    config: ConfigFile,
    options: NetworkOptions,
    env: Mapping[str, str],
    system_store: bool | None = None,
    route: Route | None = None,
    unconfigured_exchange: str | None = None,
) -> tuple[ProxyDecision, TLSDecision]:
    """The proxy and TLS decisions for one connection to ``url`` (``target`` is rest or ws).

    A ``route`` overrides every proxy layer (the ``route`` layer of the trace); TLS is decided
    by the usual layers whatever the route.

    Args:
        system_store: whether this machine has a system trust store; None (the default) asks
            :func:`system_trust_store_available`. Callers that decide many connections at once
            may ask once and pass the answer.
        unconfigured_exchange: an exchange name the caller was given that has no profile and
            no config entry: there is no exchange layer, and both traces say so.
    """
    if system_store is None:
        system_store = system_trust_store_available()
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
    # The https:// proxy's own CA (curl's --proxy-cacert), apart from the exchange's.
    exchange_ca = network.proxy_ssl if network is not None else None
    tls = with_proxy_ca(
        tls,
        [
            ("cli", options.proxy_ca_bundle, options.proxy_ca_origin),
            (
                "exchange",
                exchange_ca.ca_bundle if exchange_ca else None,
                exchange_ca.origin if exchange_ca else "",
            ),
            (
                "service",
                config.proxy_ssl.ca_bundle if config.proxy_ssl else None,
                config.proxy_ssl.origin if config.proxy_ssl else "",
            ),
        ],
    )
    if unconfigured_exchange is not None:
        note = (
            f"no exchange layer: {unconfigured_exchange!r} has no profile and no exchanges: "
            "entry in the config file"
        )
        proxy = replace(proxy, trace=tuple(_noted(entry, note) for entry in proxy.trace))
        tls = replace(tls, trace=tuple(_noted(entry, note) for entry in tls.trace))
    return proxy, tls


def _noted(entry: TraceEntry, note: str) -> TraceEntry:
    """``entry`` with ``note`` as its detail when it is the exchange layer's."""
    return replace(entry, detail=note) if entry.layer == "exchange" else entry
