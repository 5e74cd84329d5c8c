"""Where ``mpnet serve`` listens: ``--listen HOST:PORT`` parsed and checked."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address

from mpnet.errors import UsageError


@dataclass(frozen=True, slots=True)
class Listen:
    """Where ``mpnet serve`` listens."""

    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ip_address(self.host).is_loopback
        except ValueError:
            return False

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}/"


def parse_listen(text: str) -> Listen:
    """Parse ``HOST:PORT`` (``[::1]:9879`` for IPv6; port 0 picks a free one).

    Raises:
        UsageError: not HOST:PORT, or the port is not 0..65535.
    """
    raw = text.strip()
    host, sep, port_text = raw.rpartition(":")
    if not sep or not host:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9879")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise UsageError(f"--listen {text!r}: write an IPv6 address in brackets, e.g. [::1]:9879")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"--listen {text!r}: port must be a number from 0 to 65535")
    if not host or any(ch.isspace() or ch in "/@[]" for ch in host):
        raise UsageError(f"--listen {text!r}: {host!r} is not a host name or address")
    return Listen(host=host, port=int(port_text))
