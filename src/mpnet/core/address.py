"""Addresses (pure): what the DNS phase returned, which address the TCP connection used, and
which family it was, as the probe outputs show them."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

IPV4 = "ipv4"
IPV6 = "ipv6"
FAMILY_NAMES = {IPV4: "IPv4", IPV6: "IPv6"}


def split_address(address: str) -> tuple[str, int | None]:
    """``127.0.0.1:443`` or ``[::1]:443`` -> (host, port); a bare address -> (address, None)."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port.isdigit() else None
    host, sep, port = address.rpartition(":")
    if sep and ":" not in host and port.isdigit():
        return host, int(port)
    return address, None


def family_of(address: str) -> str | None:
    """``ipv4`` or ``ipv6`` for an address (with or without its port); None for a name."""
    host, _ = split_address(address)
    try:
        version = ipaddress.ip_address(host.split("%", 1)[0]).version
    except ValueError:
        return None
    return IPV4 if version == 4 else IPV6


@dataclass(frozen=True, slots=True)
class ConnectFailure:
    """One address the TCP connect tried and could not use, and why (the OS's words)."""

    address: str
    reason: str

    @property
    def family(self) -> str | None:
        return family_of(self.address)

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "family": self.family, "reason": self.reason}


def addresses_dict(
    addresses: Sequence[str],
    connected: str | None,
    failures: Sequence[ConnectFailure],
    *,
    via_proxy: bool,
) -> dict[str, Any]:
    """The JSON ``addresses`` object: every address the DNS phase returned (A and AAAA, in the
    order returned), the one connected to and its family, the ones that failed, and whose
    addresses they are (the proxy's when a proxy was dialled)."""
    return {
        "of": "proxy" if via_proxy else "target",
        "resolved": [{"address": split_address(a)[0], "family": family_of(a)} for a in addresses],
        "connected": connected,
        "family": family_of(connected) if connected else None,
        "failed": [f.to_dict() for f in failures],
    }


def family_note(
    addresses: Sequence[str], connected: str | None, failures: Sequence[ConnectFailure]
) -> str | None:
    """A sentence when one family failed where both exist (else None).

    ``IPv6 [::1]:443 failed (Connection refused), then IPv4 127.0.0.1:443 connected: the tcp
    figure includes the failed try`` or ``both families failed: IPv6 [::1]:443 (Connection
    refused); IPv4 127.0.0.1:443 (Connection refused)``.
    """
    resolved = {family_of(a) for a in addresses} - {None}
    failed_families = {f.family for f in failures} - {None}
    if not failures or len(resolved | failed_families) < 2:
        return None
    tried = "; ".join(
        f"{FAMILY_NAMES.get(f.family or '', '?')} {f.address} ({f.reason})" for f in failures
    )
    if connected is None:
        if len(failed_families) < 2:
            return None
        return f"both families failed: {tried}"
    family = family_of(connected)
    if family in failed_families and len(failed_families) < 2:
        # An address of the same family failed first (round robin): not a family problem.
        return None
    shown = FAMILY_NAMES.get(family or "", "?")
    return (
        f"{tried} failed, then {shown} {connected} connected: the tcp figure includes the "
        "failed try"
    )


__all__ = [
    "FAMILY_NAMES",
    "IPV4",
    "IPV6",
    "ConnectFailure",
    "addresses_dict",
    "family_note",
    "family_of",
    "split_address",
]
