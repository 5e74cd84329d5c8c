"""The config file: service layer (top-level ``proxy:`` / ``ssl:``) and exchange layer.

Search order: ``--config PATH``, ``$MPNET_CONFIG``, ``./mpnet.yaml``,
``$XDG_CONFIG_HOME/mpnet/config.yaml`` (``~/.config`` when XDG_CONFIG_HOME is unset). A file
named explicitly (flag or variable) must exist; the other two are used when present.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mpnet.config.model import ConfigFile, ExchangeNetwork, ServeSettings
from mpnet.config.network import (
    read_exchange_network,
    read_proxy_ca,
    read_proxy_choice,
    read_service_proxy,
    read_tls_setting,
)
from mpnet.config.source import KeyPath, Reader, YamlDocument, load_yaml, parse_yaml
from mpnet.core.clock import ClockTolerances
from mpnet.core.proxy_url import DIRECT
from mpnet.core.route import DIRECT_NAME, Route, check_distinct, parse_route
from mpnet.errors import ConfigError, InvalidConfigFile

TOP_KEYS = ("proxy", "ssl", "exchanges", "serve", "clock", "routes", "proxy_ssl")
CLOCK_KEYS = ("tolerance_ms", "feed_lag_tolerance_ms")
#: A tolerance beyond a day is not a tolerance.
MAX_TOLERANCE_MS = 86_400_000
#: A route name: short, and never mistaken for a URL or a flag.
ROUTE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


def find_config(
    path: str | None, *, env: Mapping[str, str], cwd: Path | None = None
) -> Path | None:
    """The config file to use, or None. Raises InvalidConfigFile if a named file is missing."""
    for where, named in (("--config", path), ("$MPNET_CONFIG", env.get("MPNET_CONFIG"))):
        if not named:
            continue
        candidate = Path(named).expanduser()
        if candidate.is_dir():
            raise InvalidConfigFile(f"{where} {named}: is a directory, not a config file")
        if not candidate.is_file():
            raise InvalidConfigFile(f"{where} {named}: no such file")
        return candidate
    local = (cwd or Path.cwd()) / "mpnet.yaml"
    if local.is_file():
        return local
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME", "~"), ".config")
    user = Path(xdg).expanduser() / "mpnet" / "config.yaml"
    return user if user.is_file() else None


def load_config(
    path: str | None = None, *, env: Mapping[str, str], cwd: Path | None = None
) -> ConfigFile:
    """Find and load the config file; an empty ConfigFile when there is none.

    Raises:
        InvalidConfigFile: unreadable, not YAML, or a schema error (names file:line key).
    """
    found = find_config(path, env=env, cwd=cwd)
    if found is None:
        return ConfigFile()
    return config_from_document(load_yaml(found, InvalidConfigFile))


def parse_config_text(text: str, path: str = "<config>") -> ConfigFile:
    """Validate a config file given as YAML text (``path`` is only used in messages)."""
    return config_from_document(parse_yaml(text, path, InvalidConfigFile))


def config_from_document(doc: YamlDocument) -> ConfigFile:
    r = Reader(doc)
    if doc.data is None:
        return ConfigFile(path=doc.path)
    top = r.mapping(doc.data, (), allowed=TOP_KEYS)
    base_dir = str(Path(doc.path).parent)
    routes = read_routes(r, top.get("routes"), ("routes",))
    exchanges: dict[str, ExchangeNetwork] = {}
    raw_exchanges = top.get("exchanges")
    if raw_exchanges is not None:
        if not isinstance(raw_exchanges, dict):
            doc.fail(("exchanges",), "expected a mapping of exchange name to settings")
        for name, block in raw_exchanges.items():
            keys = ("exchanges", name)
            network = read_exchange_network(r, block, keys, base_dir=base_dir, extra=("routes",))
            if isinstance(block, dict) and block.get("routes") is not None:
                network = dataclasses.replace(
                    network,
                    routes=read_exchange_routes(r, block["routes"], (*keys, "routes"), routes),
                    routes_origin=doc.where((*keys, "routes")),
                )
            exchanges[name.lower()] = network
    return ConfigFile(
        path=doc.path,
        proxy=read_service_proxy(r, top.get("proxy"), ("proxy",)),
        ssl=read_tls_setting(r, top.get("ssl"), ("ssl",), base_dir=base_dir),
        proxy_ssl=read_proxy_ca(r, top.get("proxy_ssl"), ("proxy_ssl",), base_dir=base_dir),
        exchanges=exchanges,
        routes=routes,
        serve=read_serve_settings(r, top.get("serve"), ("serve",)),
        clock=read_clock(r, top.get("clock"), ("clock",)),
    )


def read_clock(r: Reader, value: object, keys: KeyPath) -> ClockTolerances | None:
    """``clock: {tolerance_ms, feed_lag_tolerance_ms}``: when CLOCK_SKEW and FEED_LAGGING fire."""
    if value is None:
        return None
    block = r.mapping(value, keys, allowed=CLOCK_KEYS)
    defaults = ClockTolerances()

    def tolerance(name: str, default: float) -> float:
        if block.get(name) is None:
            return default
        return r.positive_number(block[name], (*keys, name), most=MAX_TOLERANCE_MS)

    return ClockTolerances(
        offset_ms=tolerance("tolerance_ms", defaults.offset_ms),
        feed_lag_ms=tolerance("feed_lag_tolerance_ms", defaults.feed_lag_ms),
    )


def read_serve_settings(reader: Reader, value: object, keys: KeyPath) -> ServeSettings:
    """``serve: {max_probes: N, max_waiting: N}``: the limits of ``mpnet serve``."""
    if value is None:
        return ServeSettings()
    block = reader.mapping(value, keys, allowed=("max_probes", "max_waiting"))
    return ServeSettings(
        max_probes=_least(reader, block.get("max_probes"), (*keys, "max_probes"), 1),
        max_waiting=_least(reader, block.get("max_waiting"), (*keys, "max_waiting"), 0),
        origin=reader.doc.where(keys),
    )


def read_routes(reader: Reader, value: Any, keys: KeyPath) -> dict[str, Route]:
    """``routes: {name: URL | direct}``: the routes ``--via NAME`` can name."""
    if value is None:
        return {}
    doc = reader.doc
    if not isinstance(value, dict):
        doc.fail(keys, "expected a mapping of route name to a proxy URL or direct")
    routes: dict[str, Route] = {}
    for name, raw in value.items():
        where = (*keys, name)
        if not ROUTE_NAME.fullmatch(name):
            doc.fail(
                where,
                "a route name is letters, digits, '.', '_' or '-' (at most 40, starting with "
                "a letter or digit)",
            )
        if name.lower() == DIRECT_NAME:
            doc.fail(where, "'direct' is built in (no proxy); give this route another name")
        if name.lower() in (n.lower() for n in routes):
            doc.fail(where, "a route of this name (in another case) is already defined")
        if raw is None:
            doc.fail(where, "expected a proxy URL or direct")
        choice = read_proxy_choice(reader, raw, where)
        proxy = None if choice == DIRECT or choice is None else choice
        routes[name] = Route(name, proxy, origin=doc.where(where))
    return routes


def read_exchange_routes(
    reader: Reader, value: Any, keys: KeyPath, known: Mapping[str, Route]
) -> tuple[Route, ...]:
    """``exchanges.<name>.routes: [direct, tokyo, ...]``: names from ``routes:``, ``direct``, or
    proxy URLs."""
    doc = reader.doc
    if not isinstance(value, list) or not value:
        doc.fail(keys, "expected a non-empty list of route names (or direct, or proxy URLs)")
    chosen: list[Route] = []
    for index, item in enumerate(value):
        where = (*keys, index)
        if not isinstance(item, str):
            doc.fail(where, "expected a route name, direct, or a proxy URL")
        try:
            route = parse_route(item, known, where=doc.where(where))
        except ConfigError as exc:
            # The message already names file:line key; raise it as the config file's error.
            raise doc.error_class(str(exc)) from None
        chosen.append(route.selected(doc.where(keys)))
    try:
        check_distinct(chosen, flag="route")
    except ConfigError as exc:
        raise doc.error_class(f"{doc.where(keys)}: {exc}") from None
    return tuple(chosen)


def _least(reader: Reader, value: object, keys: KeyPath, least: int) -> int | None:
    if value is None:
        return None
    number = reader.integer(value, keys, default=least)
    if number < least:
        reader.doc.fail(keys, f"expected an integer of at least {least}, got {number}")
    return number
