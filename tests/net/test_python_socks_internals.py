"""dial() drives python-socks' private connector layer in its proxy phase (why: the comment
above its imports in net/tunnel.py). These tests fail with one clear message when a python-socks
release moves those names or changes how they are called, instead of a SOCKS probe failing in
some odd way."""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

import pytest

from mpnet.net import tunnel as tunnel_module

MOVED = (
    "python-socks moved its connector internals; mpnet needs {what} (net/tunnel.py, SOCKS phase)"
)
ADVICE = (
    "; keep python-socks within the range pyproject.toml allows, or adapt net/tunnel.py and "
    "widen that range after running tests/net"
)

# (module, name, parameter names that tunnel.py passes)
PRIVATE_NAMES = [
    (
        "python_socks._connectors.factory_async",
        "create_connector",
        ["proxy_type", "username", "password", "rdns", "resolver"],
    ),
    ("python_socks.async_.asyncio._resolver", "Resolver", ["loop"]),
    ("python_socks._protocols.errors", "ReplyError", ["message", "error_code"]),
]


def _fail(what: str, detail: str) -> None:
    pytest.fail(MOVED.format(what=what) + f": {detail}" + ADVICE, pytrace=False)


def _load(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        _fail(f"{module}.{name}", f"{type(exc).__name__}: {exc}")


def _parameters(callable_: Any, what: str) -> list[str]:
    try:
        signature = inspect.signature(callable_)
    except (TypeError, ValueError) as exc:
        _fail(what, f"no signature: {exc}")
    return [name for name in signature.parameters if name != "self"]


@pytest.mark.parametrize(("module", "name", "expected"), PRIVATE_NAMES)
def test_private_names_exist_with_the_parameters_dial_passes(
    module: str, name: str, expected: list[str]
) -> None:
    found = _parameters(_load(module, name), f"{module}.{name}")
    if found != expected:
        _fail(f"{module}.{name}({', '.join(expected)})", f"it now takes ({', '.join(found)})")


def test_dial_uses_these_very_objects() -> None:
    # So that the checks above are about what tunnel.py really calls, not a copy.
    for module, name, _expected in PRIVATE_NAMES:
        if getattr(tunnel_module, name) is not _load(module, name):
            _fail(f"{module}.{name}", "net/tunnel.py imports it from elsewhere")


def test_reply_error_carries_its_code() -> None:
    reply_error = _load("python_socks._protocols.errors", "ReplyError")
    error = reply_error("General SOCKS server failure", error_code=1)
    if getattr(error, "error_code", None) != 1 or str(error) != "General SOCKS server failure":
        _fail("ReplyError(message, error_code=...).error_code", "it no longer keeps the code")


@pytest.mark.parametrize("proxy_type", ["SOCKS4", "SOCKS5"])
def test_connectors_take_a_connected_stream(proxy_type: str) -> None:
    from python_socks import ProxyType

    create_connector = _load("python_socks._connectors.factory_async", "create_connector")
    resolver = _load("python_socks.async_.asyncio._resolver", "Resolver")
    connector = create_connector(
        proxy_type=getattr(ProxyType, proxy_type),
        username=None,
        password=None,
        rdns=True,
        resolver=resolver(loop=None),
    )
    what = f"{type(connector).__name__}.connect(stream, host, port)"
    if not inspect.iscoroutinefunction(getattr(connector, "connect", None)):
        _fail(what, "connect is not a coroutine function any more")
    found = _parameters(connector.connect, what)
    if found != ["stream", "host", "port"]:
        _fail(what, f"it now takes ({', '.join(found)})")
    # Every stream method the connector calls must exist on tunnel's adapter.
    source = inspect.getsource(inspect.getmodule(type(connector)))  # type: ignore[arg-type]
    called = set(re.findall(r"\bstream\.(\w+)\(", source))
    missing = sorted(m for m in called if not hasattr(tunnel_module._StreamAdapter, m))
    if missing:
        _fail(what, f"it calls stream.{', stream.'.join(missing)}, which tunnel's adapter lacks")


def test_stream_interface_matches_the_adapter() -> None:
    stream_abc = _load("python_socks._abc", "AsyncSocketStream")
    for name, member in vars(stream_abc).items():
        if name.startswith("_") or not callable(member):
            continue
        ours = getattr(tunnel_module._StreamAdapter, name, None)
        if ours is None:
            _fail(f"AsyncSocketStream.{name}", "tunnel's _StreamAdapter does not implement it")
        if _parameters(member, name) != _parameters(ours, name):
            _fail(
                f"AsyncSocketStream.{name}({', '.join(_parameters(member, name))})",
                f"tunnel's _StreamAdapter.{name} takes ({', '.join(_parameters(ours, name))})",
            )
