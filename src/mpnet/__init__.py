"""mpnet: connectivity diagnostics for the network paths trading systems use to reach exchanges.

The library (``NetworkConnectionManager``, the shared ``network_manager`` and the helpers
``test_connectivity``, ``request_with_retry``, ``create_websocket_connection``,
``create_http_session``, ``get_network_stats``, ``close_all``) lives in :mod:`mpnet.client`, the
WebSocket wrappers in :mod:`mpnet.net.ws`. They are imported lazily so that ``import mpnet`` (and
``mpnet --version``) does not pay for aiohttp and websockets.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "network_manager": "mpnet.client",
    "NetworkConnectionManager": "mpnet.client",
    "ConnectivityResult": "mpnet.client",
    "NetworkStats": "mpnet.client",
    "USE_CONFIG": "mpnet.client",
    "test_connectivity": "mpnet.client",
    "create_websocket_connection": "mpnet.client",
    "create_http_session": "mpnet.client",
    "request_with_retry": "mpnet.client",
    "get_network_stats": "mpnet.client",
    "close_all": "mpnet.client",
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
