"""Proxy URLs: parsing, validation and redaction (pure).

A :class:`ProxyURL` is the only form in which a proxy travels through mpnet. Its ``repr`` and
``str`` are redacted (``user:***@host:port``); only :meth:`ProxyURL.with_credentials` returns the
password, and only ``net/`` calls it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

from mpnet.errors import InvalidProxyURL

PROXY_SCHEMES = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")
DEFAULT_PORTS = {
    "http": 80,
    "https": 443,
    "socks4": 1080,
    "socks4a": 1080,
    "socks5": 1080,
    "socks5h": 1080,
}
REDACTED = "***"


@dataclass(frozen=True, slots=True)
class ProxyURL:
    """A validated proxy URL. The password is kept out of ``repr``."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False, compare=True)

    @property
    def is_socks(self) -> bool:
        return self.scheme.startswith("socks")

    @property
    def remote_dns(self) -> bool:
        """True when the proxy, not mpnet, resolves the target's name."""
        return self.scheme in ("http", "https", "socks4a", "socks5h")

    @property
    def _netloc_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def redacted(self) -> str:
        """``scheme://user:***@host:port``: safe for every output."""
        from urllib.parse import quote

        # The user name is quoted so the output stays one unambiguous URL.
        auth = f"{quote(self.username, safe='')}:{REDACTED}@" if self.username is not None else ""
        return f"{self.scheme}://{auth}{self._netloc_host}:{self.port}"

    def with_credentials(self) -> str:
        """The full URL with the password. Only for handing to a network library."""
        from urllib.parse import quote

        auth = ""
        if self.username is not None:
            auth = f"{quote(self.username, safe='')}:{quote(self.password or '', safe='')}@"
        return f"{self.scheme}://{auth}{self._netloc_host}:{self.port}"

    def __str__(self) -> str:
        return self.redacted()

    def __repr__(self) -> str:
        return f"ProxyURL({self.redacted()!r})"


def redact_url_text(text: str) -> str:
    """Mask the password of any ``scheme://user:pass@host`` URL inside free text."""
    import re

    return re.sub(r"(?P<pre>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):[^@/\s]*@", r"\g<pre>:***@", text)


def redact_proxy_text(text: str) -> str:
    """Mask the credentials of one proxy URL as typed, parseable or not, with or without a scheme.

    Everything between the first ``:`` of the user information and the last ``@`` is masked, so
    a password holding ``/``, ``@`` or ``:`` is masked too (:func:`redact_url_text` is for URLs
    inside free text and needs a scheme).
    """
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        return text
    user, colon, _ = userinfo.partition(":")
    if not colon:
        return text
    return f"{scheme}{sep}{user}:{REDACTED}@{hostpart}"


def parse_proxy_url(text: str, *, where: str = "proxy URL") -> ProxyURL:
    """Parse and validate a proxy URL.

    Args:
        text: the URL as the user wrote it.
        where: names the place it came from in error messages (``--proxy``,
            ``mpnet.yaml:4 proxy.https``, ``HTTPS_PROXY``).

    Raises:
        InvalidProxyURL: with a message that says what is wrong, never the password.
    """
    # Not redact_url_text: a password with '/' or '@' in it, or a URL without a scheme, would
    # slip past its pattern.
    shown = redact_proxy_text(text.strip())
    raw = text.strip()
    if not raw:
        raise InvalidProxyURL(f"{where}: empty proxy URL")
    control = next((ch for ch in raw if ord(ch) < 32 or ord(ch) == 127), None)
    if control is not None:
        # urlsplit would silently drop a newline or tab (WHATWG), gluing two pasted URLs into
        # one with a nonsense port; say what is really there.
        code = f"U+{ord(control):04X}"
        name = _CONTROL_NAMES.get(control)
        what = f"{name} (a control character, {code})" if name else f"a control character ({code})"
        raise InvalidProxyURL(f"{where}: {shown!r} contains {what}; a proxy URL is one line")
    if "://" not in raw:
        raise InvalidProxyURL(
            f"{where}: {shown!r} has no scheme; write e.g. http://{shown} or socks5h://{shown}"
        )
    userinfo, at, _ = raw.partition("://")[2].rpartition("@")
    if at and any(ch.isspace() for ch in userinfo):
        raise InvalidProxyURL(
            f"{where}: {shown!r}: a space in the user name or password must be percent-encoded "
            "as %20 (and @ : / % as %40 %3A %2F %25)"
        )
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        # urlsplit's message may quote the netloc, password included: do not pass it on.
        reason = (
            "port must be a number from 1 to 65535" if "port" in str(exc).lower() else "malformed"
        )
        raise InvalidProxyURL(f"{where}: {shown!r}: {reason}") from None
    scheme = parts.scheme.lower()
    if scheme not in PROXY_SCHEMES:
        raise InvalidProxyURL(
            f"{where}: unsupported proxy scheme {scheme!r} in {shown!r}; "
            f"use one of {', '.join(PROXY_SCHEMES)}"
        )
    host = parts.hostname
    if not host:
        raise InvalidProxyURL(f"{where}: {shown!r} has no host")
    problem = _host_problem(host)
    if problem:
        raise InvalidProxyURL(f"{where}: {shown!r}: {problem}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidProxyURL(f"{where}: {shown!r}: a proxy URL takes no path, query or fragment")
    if port is None:
        if parts.netloc.rstrip("]").endswith(":"):
            raise InvalidProxyURL(f"{where}: {shown!r}: empty port")
        port = DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535:
        raise InvalidProxyURL(f"{where}: {shown!r}: port must be from 1 to 65535, not {port}")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if username is not None and password is None:
        raise InvalidProxyURL(
            f"{where}: {shown!r} names user {username!r} without a password; "
            "write user:password@host"
        )
    if username == "" and password is not None:
        raise InvalidProxyURL(f"{where}: {shown!r} has a password but no user name")
    if scheme in ("socks4", "socks4a") and password:
        # SOCKS4 carries a user id only; a password would be silently dropped.
        raise InvalidProxyURL(f"{where}: {shown!r}: SOCKS4 has no passwords; use socks5")
    return ProxyURL(
        scheme=scheme, host=host.lower(), port=port, username=username, password=password
    )


_CONTROL_NAMES = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\0": "a NUL"}

#: RFC 1035 section 2.3.4: a name of at most 253 characters (255 octets on the wire), labels of
#: at most 63.
MAX_HOST_NAME = 253
MAX_LABEL = 63


def _host_problem(host: str) -> str:
    """Why ``host`` (as urlsplit gives it: lower case, no brackets) cannot be a proxy's host."""
    if any(ch.isspace() for ch in host):
        return f"the host {host!r} contains a space"
    if ":" in host:
        return ""  # an IPv6 literal; urlsplit has checked it
    name = host.rstrip(".")
    if len(name) > MAX_HOST_NAME:
        return f"the host name is {len(name)} characters long; DNS allows at most {MAX_HOST_NAME}"
    for label in name.split("."):
        if len(label) > MAX_LABEL:
            return (
                f"the host name's label {label[:20] + '...'!r} is {len(label)} characters long; "
                f"DNS allows at most {MAX_LABEL}"
            )
        if not label:
            return f"the host name {host!r} has an empty label (two dots in a row)"
    return ""


Direct = Literal["direct"]
DIRECT: Direct = "direct"

#: A proxy setting held by one layer: a proxy, ``"direct"`` (force no proxy), or ``None`` (unset).
ProxyChoice = ProxyURL | Direct | None
