"""Schema of the network blocks shared by the config file and profiles: ``proxy:`` and ``ssl:``."""

from __future__ import annotations

import os
from typing import Any

from mpnet.config.model import ExchangeNetwork
from mpnet.config.source import KeyPath, Reader
from mpnet.core.proxy import ServiceProxy
from mpnet.core.proxy_url import DIRECT, ProxyChoice, ProxyURL, parse_proxy_url
from mpnet.core.tls import ProxyCASetting, TLSSetting
from mpnet.errors import InvalidProxyURL


def read_proxy_url(reader: Reader, value: Any, keys: KeyPath) -> ProxyURL | None:
    if value is None:
        return None
    text = reader.string(value, keys)
    assert text is not None
    try:
        return parse_proxy_url(text, where=reader.doc.where(keys))
    except InvalidProxyURL as exc:
        # Re-raise as the document's own error class, message already names file:line key.
        raise reader.doc.error_class(str(exc)) from None


def read_proxy_choice(reader: Reader, value: Any, keys: KeyPath) -> ProxyChoice:
    """A URL string, ``direct``, or ``{url: URL|direct}``."""
    if value is None:
        return None
    if isinstance(value, dict):
        block = reader.mapping(value, keys, allowed=("url",))
        return read_proxy_choice(reader, block.get("url"), (*keys, "url"))
    if isinstance(value, str) and value.strip().lower() in ("direct", "none"):
        return DIRECT
    return read_proxy_url(reader, value, keys)


def read_exchange_network(
    reader: Reader, value: Any, keys: KeyPath, *, base_dir: str, extra: tuple[str, ...] = ()
) -> ExchangeNetwork:
    """``exchanges.<name>`` (config file) or ``network:`` (profile); ``extra`` keys are allowed
    and left to the caller (the config file's ``routes``)."""
    block = reader.mapping(value or {}, keys, allowed=("proxy", "ssl", "proxy_ssl", *extra))
    proxy = block.get("proxy")
    proxy_keys = (*keys, "proxy")
    if isinstance(proxy, dict) and ("rest" in proxy or "ws" in proxy):
        per_target = reader.mapping(proxy, proxy_keys, allowed=("rest", "ws"))
        rest = read_proxy_choice(reader, per_target.get("rest"), (*proxy_keys, "rest"))
        ws = read_proxy_choice(reader, per_target.get("ws"), (*proxy_keys, "ws"))
    else:
        rest = ws = read_proxy_choice(reader, proxy, proxy_keys)
    ssl = read_tls_setting(reader, block.get("ssl"), (*keys, "ssl"), base_dir=base_dir)
    proxy_ssl = read_proxy_ca(
        reader, block.get("proxy_ssl"), (*keys, "proxy_ssl"), base_dir=base_dir
    )
    dotted = ".".join(str(k) for k in keys)
    return ExchangeNetwork(
        proxy_rest=rest,
        proxy_ws=ws,
        ssl=ssl,
        origin=f"{reader.doc.path} {dotted}",
        proxy_ssl=proxy_ssl,
    )


def read_service_proxy(reader: Reader, value: Any, keys: KeyPath) -> ServiceProxy | None:
    if value is None:
        return None
    if isinstance(value, str):
        # `proxy: URL` at the top level: one proxy for every target.
        return ServiceProxy(all=read_proxy_url(reader, value, keys), origin=reader.doc.where(keys))
    block = reader.mapping(value, keys, allowed=("http", "https", "socks", "all", "no_proxy"))
    no_proxy = block.get("no_proxy")
    if isinstance(no_proxy, list):
        no_proxy = ",".join(str(v) for v in no_proxy)
    elif no_proxy is not None:
        no_proxy = reader.string(no_proxy, (*keys, "no_proxy"))
    return ServiceProxy(
        http=read_proxy_url(reader, block.get("http"), (*keys, "http")),
        https=read_proxy_url(reader, block.get("https"), (*keys, "https")),
        socks=read_proxy_url(reader, block.get("socks"), (*keys, "socks")),
        all=read_proxy_url(reader, block.get("all"), (*keys, "all")),
        no_proxy=no_proxy,
        origin=reader.doc.where(keys),
    )


def read_tls_setting(
    reader: Reader, value: Any, keys: KeyPath, *, base_dir: str
) -> TLSSetting | None:
    """``ssl: {verify, ca_bundle, ca_dir, reason}``; relative paths are relative to the file."""
    if value is None:
        return None
    block = reader.mapping(value, keys, allowed=("verify", "ca_bundle", "ca_dir", "reason"))
    verify = reader.boolean(block.get("verify"), (*keys, "verify"))
    ca_bundle = reader.string(block.get("ca_bundle"), (*keys, "ca_bundle"), required=False)
    ca_dir = reader.string(block.get("ca_dir"), (*keys, "ca_dir"), required=False)
    reason = reader.string(block.get("reason"), (*keys, "reason"), required=False)
    if verify is False and (ca_bundle or ca_dir):
        reader.doc.fail(keys, "verify: false contradicts ca_bundle/ca_dir; keep one")
    return TLSSetting(
        verify=verify,
        ca_bundle=_relative_to(base_dir, ca_bundle),
        ca_dir=_relative_to(base_dir, ca_dir),
        reason=reason,
        origin=reader.doc.where(keys),
    )


def read_proxy_ca(
    reader: Reader, value: Any, keys: KeyPath, *, base_dir: str
) -> ProxyCASetting | None:
    """``proxy_ssl: {ca_bundle: PATH}``; a relative path is relative to the file. Whether the
    file is a PEM bundle is checked when its context is built (exit 2, naming the path)."""
    if value is None:
        return None
    block = reader.mapping(value, keys, allowed=("ca_bundle",))
    ca_bundle = reader.string(block.get("ca_bundle"), (*keys, "ca_bundle"), required=False)
    if not ca_bundle:
        reader.doc.fail(keys, "proxy_ssl needs ca_bundle: PATH (the PEM bundle of the proxy's CA)")
    path = _relative_to(base_dir, ca_bundle)
    assert path is not None
    return ProxyCASetting(ca_bundle=path, origin=reader.doc.where((*keys, "ca_bundle")))


def _relative_to(base_dir: str, path: str | None) -> str | None:
    if path is None:
        return None
    expanded = os.path.expanduser(path)
    return (
        expanded if os.path.isabs(expanded) else os.path.normpath(os.path.join(base_dir, expanded))
    )
