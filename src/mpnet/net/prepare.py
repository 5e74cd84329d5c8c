"""Everything a plan needs that would block the event loop, done before any attempt's clock runs.

Building an :class:`ssl.SSLContext` loads a CA bundle (tens of milliseconds with the system
store) and importing a WebSocket library takes a hundred or more; done on the loop while other
attempts are timed, either would be billed to whatever phase those attempts were in. The probe
engine, ``watch`` and ``serve`` call :func:`prepare_network` once with the TLS decisions of their
plan, before the first clock starts; :func:`mpnet.net.dial.dial` then only looks contexts up.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from mpnet.core.tls import TLSDecision
from mpnet.net.stamps import keep_stamping
from mpnet.net.tls import HTTP_ALPN, context_for

#: Modules an attempt may need; imported here so no attempt pays for the import.
_MODULES = (
    "mpnet.net.exchange",
    "mpnet.net.ws",
    "mpnet.net.ws_websockets",
    "mpnet.net.ws_aiohttp",
    "mpnet.probe.messages",
    "gzip",
    "zlib",
    "cryptography.x509",
    # getaddrinfo and ssl encode host names with the idna codec, imported on first use.
    "encodings.idna",
)


def prepare_network(tls_decisions: Iterable[TLSDecision]) -> None:
    """Import every module an attempt may need, build the SSL context of each decision, and
    switch the kernel's receive stamping on for good (:func:`~mpnet.net.stamps.keep_stamping`).

    Raises:
        ConfigError: a decision's CA bundle cannot be loaded (names the path).
    """
    for name in _MODULES:
        importlib.import_module(name)
    keep_stamping()
    for decision in dict.fromkeys(tls_decisions):
        context_for(decision)
        context_for(decision, alpn=HTTP_ALPN)
        if decision.proxy_ca is not None:
            # Loaded even when no https:// proxy is chosen: a bad path is bad input.
            context_for(decision.for_proxy())


__all__ = ["prepare_network"]
