"""The NO_PROXY matcher (pure): which hosts bypass a proxy.

A NO_PROXY value is a comma-separated list. Whitespace around an entry is ignored; empty entries
(``a,,b``) are skipped. Each entry is one of:

* ``*``: every host.
* a host name or domain: ``example.com`` and ``.example.com`` both match ``example.com`` and
  every name below it (``www.example.com``), on a label boundary (``ample.com`` matches neither).
  Case-insensitive; trailing dots are ignored on both sides. A name never matches an IP literal
  (``localhost`` does not match ``127.0.0.1``).
* an IPv4 or IPv6 literal (IPv6 optionally in brackets): that address only.
* a CIDR block, ``10.0.0.0/8`` or ``fd00::/8`` (``[fd00::]/8`` too): every address inside. Host
  bits may be set (``127.0.0.1/8``). A prefix that is not a plain decimal number within the
  family's length (``/33``, ``/a16``, ``/16a``, ``/``) makes the entry one that never matches.
* any of the above followed by ``:port`` (``example.com:8443``, ``[::1]:8080``): then the target's
  effective port must also be equal.

An entry that cannot be understood (``www.example .com``, ``*.example.com``, a bad prefix or
port) never matches; :func:`parse_no_proxy` keeps it with a ``problem`` so that ``explain`` can
say why. These rules agree with curl's unit test 1614 (``tests/core/test_noproxy_peer_vectors``);
where curl stops reading the list at a space inside an entry, mpnet only drops that entry.

Nothing here raises, whatever the input.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

EntryKind = Literal["any", "domain", "address", "network", "invalid"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_DIGITS = re.compile(r"[0-9]{1,5}")
_PREFIX = re.compile(r"[0-9]{1,3}")


@dataclass(frozen=True, slots=True)
class NoProxyEntry:
    """One entry of a NO_PROXY list.

    ``text`` is the entry as written (whitespace stripped). ``kind`` says how it matches;
    ``domain`` holds the normalised name (lower case, no leading or trailing dot), ``network``
    the address or block for ``address`` / ``network`` entries (an address is a full-length
    block), ``port`` the required port if any, and ``problem`` why an ``invalid`` entry never
    matches.
    """

    text: str
    kind: EntryKind
    domain: str = ""
    network: IPNetwork | None = None
    port: int | None = None
    problem: str = ""

    def matches(self, host: str, port: int | None) -> bool:
        """True when this entry bypasses the proxy for ``host`` (name or IP literal, IPv6 with or
        without brackets) on effective ``port``."""
        if self.kind == "any":
            return True
        if self.kind == "invalid":
            return False
        if self.port is not None and self.port != port:
            return False
        name, address = _normalise_host(host)
        if self.kind == "domain":
            if address is not None or not name:
                return False
            return name == self.domain or name.endswith("." + self.domain)
        if address is None or self.network is None:
            return False
        if address.version != self.network.version:
            return False
        return address in self.network


def _normalise_host(host: str) -> tuple[str, IPAddress | None]:
    """The target host as (lower-case name without trailing dots, address if it is a literal)."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    address = _parse_address(text)
    if address is not None:
        return text, address
    return text.rstrip(".").lower(), None


def _parse_address(text: str) -> IPAddress | None:
    if not text or len(text) > 64:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _network(address: IPAddress, prefix: int) -> IPNetwork | None:
    # A zone id (fe80::1%eth0) does not belong in a network; compare the bare address.
    bare = str(address).partition("%")[0]
    try:
        return ipaddress.ip_network(f"{bare}/{prefix}", strict=False)
    except ValueError:
        return None


def _invalid(text: str, problem: str) -> NoProxyEntry:
    return NoProxyEntry(text=text, kind="invalid", problem=problem)


def _split_port(text: str) -> tuple[str, str | None, str]:
    """Split ``host[:port]`` / ``[v6]:port`` / ``[v6]/prefix``. Returns (host part, port text,
    problem). A bare IPv6 literal (two or more colons) has no port."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            return text, None, "unclosed '['"
        inner, rest = text[1:close], text[close + 1 :]
        if ":" not in inner.partition("/")[0]:
            return text, None, "only IPv6 addresses go in brackets"
        if not rest or rest.startswith("/"):
            return inner + rest, None, ""
        if rest.startswith(":"):
            return inner, rest[1:], ""
        return text, None, f"unexpected {rest!r} after ']'"
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port, ""
    return text, None, ""


def parse_entry(text: str) -> NoProxyEntry:
    """Parse one NO_PROXY entry (already stripped and non-empty). Never raises."""
    if text == "*":
        return NoProxyEntry(text=text, kind="any")
    if any(ch.isspace() for ch in text):
        return _invalid(text, "contains whitespace; separate entries with commas")
    host, port_text, problem = _split_port(text)
    if problem:
        return _invalid(text, problem)
    port: int | None = None
    if port_text is not None:
        if not _DIGITS.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
            return _invalid(text, "port must be a number from 1 to 65535")
        port = int(port_text)
    if "/" in host:
        address_text, _, prefix_text = host.partition("/")
        address = _parse_address(address_text.strip("[]"))
        if address is None:
            return _invalid(text, "a CIDR block needs an IP address before '/'")
        if not _PREFIX.fullmatch(prefix_text) or int(prefix_text) > address.max_prefixlen:
            return _invalid(
                text, f"prefix length must be a number from 0 to {address.max_prefixlen}"
            )
        network = _network(address, int(prefix_text))
        if network is None:
            return _invalid(text, "not a usable CIDR block")
        return NoProxyEntry(text=text, kind="network", network=network, port=port)
    address = _parse_address(host)
    if address is not None:
        network = _network(address, address.max_prefixlen)
        if network is None:
            return _invalid(text, "not a usable IP address")
        return NoProxyEntry(text=text, kind="address", network=network, port=port)
    if "*" in host:
        return _invalid(text, "the only wildcard is a lone '*'; write .example.com for a domain")
    domain = host.rstrip(".")
    if domain.startswith("."):
        domain = domain[1:]
    domain = domain.lower()
    if not domain or "/" in domain or "[" in domain or "]" in domain or ":" in domain:
        return _invalid(text, "not a host name, domain, IP address or CIDR block")
    return NoProxyEntry(text=text, kind="domain", domain=domain, port=port)


def parse_no_proxy(value: str) -> tuple[NoProxyEntry, ...]:
    """Parse a NO_PROXY value into its entries, in order (empty entries dropped). Never raises."""
    entries = []
    for piece in value.split(","):
        text = piece.strip()
        if text:
            entries.append(parse_entry(text))
    return tuple(entries)


def no_proxy_warnings(value: str, where: str) -> list[str]:
    """One warning per entry of ``value`` that can never match, naming ``where`` it was set
    (``NO_PROXY``, ``mpnet.yaml:3 proxy.no_proxy``) and the entry as written."""
    return [
        f"{where} entry {entry.text!r} is ignored: {entry.problem}"
        for entry in parse_no_proxy(value)
        if entry.kind == "invalid"
    ]


def match_no_proxy(host: str, port: int | None, value: str) -> str | None:
    """The first entry of ``value`` that bypasses the proxy for ``host`` on effective ``port``.

    Args:
        host: the target's host name or IP literal (IPv6 with or without brackets).
        port: the target's effective port (explicit, else the scheme's default).
        value: the NO_PROXY value.

    Returns:
        The matching entry as written (``"*"`` for the wildcard), or None.
    """
    for entry in parse_no_proxy(value):
        if entry.matches(host, port):
            return entry.text
    return None
