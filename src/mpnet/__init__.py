"""mpnet: connectivity diagnostics for the network paths trading systems use to reach exchanges.

The library API (``network_manager``, ``NetworkConnectionManager``, ``WebSocketWrapper``) lives
in :mod:`mpnet.net`; it is imported lazily so that ``import mpnet`` (and ``mpnet --version``)
does not pay for aiohttp and websockets.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "network_manager": "mpnet.net.manager",
    "NetworkConnectionManager": "mpnet.net.manager",
    "ConnectivityResult": "mpnet.net.manager",
    "WebSocketWrapper": "mpnet.net.ws",
    "ReconnectingWebSocket": "mpnet.net.ws",
    "HTTPSessionManager": "mpnet.net.sessions",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'mpnet' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
