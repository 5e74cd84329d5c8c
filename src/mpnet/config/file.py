"""The config file: service layer (top-level ``proxy:`` / ``ssl:``) and exchange layer.

Search order: ``--config PATH``, ``$MPNET_CONFIG``, ``./mpnet.yaml``,
``$XDG_CONFIG_HOME/mpnet/config.yaml`` (``~/.config`` when XDG_CONFIG_HOME is unset). A file
named explicitly (flag or variable) must exist; the other two are used when present.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from mpnet.config.model import ConfigFile, ExchangeNetwork, ServeSettings
from mpnet.config.network import read_exchange_network, read_service_proxy, read_tls_setting
from mpnet.config.source import KeyPath, Reader, YamlDocument, load_yaml, parse_yaml
from mpnet.core.clock import ClockTolerances
from mpnet.errors import InvalidConfigFile

TOP_KEYS = ("proxy", "ssl", "exchanges", "serve", "clock")
CLOCK_KEYS = ("tolerance_ms", "feed_lag_tolerance_ms")
#: A tolerance beyond a day is not a tolerance.
MAX_TOLERANCE_MS = 86_400_000


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
    exchanges: dict[str, ExchangeNetwork] = {}
    raw_exchanges = top.get("exchanges")
    if raw_exchanges is not None:
        if not isinstance(raw_exchanges, dict):
            doc.fail(("exchanges",), "expected a mapping of exchange name to settings")
        for name, block in raw_exchanges.items():
            exchanges[name.lower()] = read_exchange_network(
                r, block, ("exchanges", name), base_dir=base_dir
            )
    return ConfigFile(
        path=doc.path,
        proxy=read_service_proxy(r, top.get("proxy"), ("proxy",)),
        ssl=read_tls_setting(r, top.get("ssl"), ("ssl",), base_dir=base_dir),
        exchanges=exchanges,
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


def _least(reader: Reader, value: object, keys: KeyPath, least: int) -> int | None:
    if value is None:
        return None
    number = reader.integer(value, keys, default=least)
    if number < least:
        reader.doc.fail(keys, f"expected an integer of at least {least}, got {number}")
    return number
