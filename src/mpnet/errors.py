"""Every error mpnet raises on purpose.

Input errors (what the user configured or typed) sit apart from probe errors (what the network
did). Every probe error knows the phase it happened in. The command line maps these classes to
exit codes in one table (:mod:`mpnet.cli.exit_codes`); the library never knows about exit codes.

.. code-block:: text

    MpnetError
    ├── ConfigError                      input: nothing was sent on the network
    │   ├── InvalidProxyURL              a proxy URL from a flag, the config file or the environment
    │   ├── InvalidProfile               an exchange profile file fails the schema
    │   ├── InvalidConfigFile            the config file is unreadable, not YAML, or off-schema
    │   ├── UnknownExchange              no profile has that name
    │   └── UsageError                   flags that contradict each other (--proxy with --no-proxy)
    └── ProbeError                       runtime: .phase, .kind, .phases (ms so far), .tls
        ├── DNSError                     phase dns
        ├── ConnectError                 phase tcp (refused, unreachable, reset)
        ├── ProxyError                   phase proxy
        │   ├── ProxyUnreachable         the proxy itself could not be reached
        │   ├── ProxyAuthError           407/401 from an HTTP proxy, SOCKS authentication refused
        │   └── ProxyDenied              the proxy refused to open the tunnel (403, SOCKS reply)
        ├── TLSError                     phase tls; .kind untrusted, expired, hostname_mismatch, ...
        ├── HTTPStatusError              phase http: unexpected status (.status, .headers, .body)
        ├── WebSocketHandshakeError      phase ws_upgrade: no 101 (.status, .headers, .body)
        ├── ProbeTimeout                 whichever phase was running when time ran out
        └── ProtocolError                the peer answered, but not as the profile expects

Messages never contain a proxy password: build them from redacted URLs only
(:meth:`mpnet.core.result.ErrorInfo.from_error`, the one way an error becomes data, redacts them
again all the same).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mpnet.core.result import TLSInfo


class Phase(StrEnum):
    """The phases of one connection, in the order they happen."""

    DNS = "dns"
    TCP = "tcp"
    PROXY = "proxy"
    TLS = "tls"
    HTTP = "http"
    WS_UPGRADE = "ws_upgrade"
    FIRST_MESSAGE = "first_message"
    PING_RTT = "ping_rtt"
    # Work before the connection proper, e.g. KuCoin's token request.
    BOOTSTRAP = "bootstrap"
    # Messages after the first (`mpnet ws --count N`): a failure there is not a first_message one.
    RECEIVE = "receive"


class MpnetError(Exception):
    """Base class of every error mpnet raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# -- input errors -------------------------------------------------------------------------------


class ConfigError(MpnetError):
    """Something the user configured or typed is wrong; nothing was sent on the network."""


class InvalidProxyURL(ConfigError):
    """A proxy URL is malformed or uses an unsupported scheme."""


class InvalidProfile(ConfigError):
    """An exchange profile does not load or does not match the schema."""


class InvalidConfigFile(ConfigError):
    """The config file cannot be read, is not YAML, or does not match the schema."""


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice ``word`` most likely misspells (``derbit`` -> ``deribit``), or None.

    Case and ``-``/``_`` are ignored, as the parsers of exchange names and fault modes do.
    """
    import difflib

    def key(text: str) -> str:
        return text.strip().lower().replace("_", "-")

    by_key = {key(choice): choice for choice in choices}
    found = difflib.get_close_matches(key(word), list(by_key), n=1, cutoff=0.6)
    return by_key[found[0]] if found else None


def did_you_mean(word: str, choices: Iterable[str], *, listing: str = "expected one of") -> str:
    """``"did you mean 'deribit'?"`` when a choice is close, else ``"<listing>: a, b, c"``."""
    options = list(choices)
    match = closest(word, options)
    if match is not None:
        return f"did you mean {match!r}?"
    return f"{listing}: {', '.join(options) or 'none'}"


class UnknownExchange(ConfigError):
    """No profile carries the requested exchange name."""

    def __init__(self, name: str, known: list[str]) -> None:
        hint = did_you_mean(name, sorted(known), listing="known exchanges")
        super().__init__(f"unknown exchange {name!r}; {hint}")
        self.name = name
        self.known = sorted(known)


class UsageError(ConfigError):
    """Options contradict each other or a value is out of range."""


# -- probe errors -------------------------------------------------------------------------------


class ProbeError(MpnetError):
    """A network step failed. ``phase`` names where, ``kind`` is a stable machine-readable word."""

    default_phase: Phase = Phase.TCP
    default_kind: str = "error"

    #: Where it failed.
    phase: Phase
    #: A stable machine-readable word (``refused``, ``untrusted``, ``timeout`` ...).
    kind: str
    #: Milliseconds of the phases that completed before the failure, in order; net/ fills it
    #: (:func:`mpnet.net.exchange.timed_request`), empty when nothing was measured.
    phases: dict[str, float]
    #: What the TLS handshake showed, when the failure came after it (a refused upgrade): set by
    #: net/ so that certificate details survive the failure.
    tls: TLSInfo | None

    def __init__(
        self, message: str, *, phase: Phase | None = None, kind: str | None = None
    ) -> None:
        super().__init__(message)
        self.phase = phase or self.default_phase
        self.kind = kind or self.default_kind
        self.phases = {}
        self.tls = None

    def to_dict(self) -> dict[str, str]:
        return {"phase": str(self.phase), "kind": self.kind, "message": self.message}


class DNSError(ProbeError):
    """The name did not resolve. ``kind``: ``nxdomain`` (the name does not exist) or
    ``no_resolver`` (no resolver answered: usually no network at all)."""

    default_phase = Phase.DNS
    default_kind = "dns"


class ConnectError(ProbeError):
    """TCP to the target failed. ``kind``: ``refused``, ``unreachable``, ``reset``, ``closed``."""

    default_phase = Phase.TCP
    default_kind = "connect"


class ProxyError(ProbeError):
    """The proxy leg failed. An HTTP proxy's refusal keeps its answer: ``status``, ``headers``
    (Proxy-Authenticate, X-Squid-Error...) and the start of ``body``, for the diagnosis."""

    default_phase = Phase.PROXY
    default_kind = "proxy"

    def __init__(
        self,
        message: str,
        *,
        phase: Phase | None = None,
        kind: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(message, phase=phase, kind=kind)
        self.status = status
        self.headers: dict[str, str] = dict(headers or {})
        self.body = body[:500]


class ProxyUnreachable(ProxyError):
    """The proxy server itself could not be reached (refused, timed out, unknown name)."""

    default_phase = Phase.TCP
    default_kind = "proxy_unreachable"


class ProxyAuthError(ProxyError):
    """The proxy wants (other) credentials: HTTP 407 or 401, or SOCKS authentication refused."""

    default_kind = "proxy_auth"


class ProxyDenied(ProxyError):
    """The proxy refused to open the tunnel (HTTP 403/5xx to CONNECT, a SOCKS failure reply).

    ``kind`` is ``proxy_upstream`` when its answer says it could not reach the target (502,
    503, 504, Squid's ``ERR_CONNECT_FAIL`` / ``ERR_DNS_FAIL``) rather than that it denies it."""

    default_kind = "proxy_denied"


class TLSError(ProbeError):
    """The TLS handshake or certificate verification failed.

    ``kind``: ``untrusted`` (unknown CA or self-signed), ``expired``, ``not_yet_valid``,
    ``hostname_mismatch``, ``handshake`` (protocol failure, reset during handshake).
    ``issuer`` holds the peer certificate's issuer when it could be read.
    """

    default_phase = Phase.TLS
    default_kind = "handshake"

    def __init__(
        self,
        message: str,
        *,
        phase: Phase | None = None,
        kind: str | None = None,
        issuer: str | None = None,
    ) -> None:
        super().__init__(message, phase=phase, kind=kind)
        self.issuer = issuer


class _StatusError(ProbeError):
    def __init__(
        self,
        message: str,
        *,
        status: int,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        phase: Phase | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message, phase=phase, kind=kind)
        self.status = status
        self.headers: dict[str, str] = dict(headers or {})
        # Only the start of the body is kept: enough to recognise a WAF or geo-block page.
        self.body = body[:500]


class HTTPStatusError(_StatusError):
    """The server answered with a status the profile does not expect."""

    default_phase = Phase.HTTP
    default_kind = "http_status"


class WebSocketHandshakeError(_StatusError):
    """The server refused the WebSocket upgrade (anything but 101)."""

    default_phase = Phase.WS_UPGRADE
    default_kind = "ws_upgrade_rejected"

    @staticmethod
    def describe(url: str, status: int, reason: str = "") -> str:
        """The message for an upgrade answered with ``status``: a 2xx is a web page answering,
        not a refusal (``reason`` defaults to the standard phrase)."""
        from http import HTTPStatus

        try:
            phrase = reason or HTTPStatus(status).phrase
        except ValueError:
            phrase = reason
        answer = f"{status} {phrase}".strip()
        if 200 <= status < 300:
            return (
                f"{url} answered the WebSocket upgrade with {answer}, not 101 Switching "
                "Protocols: it is not a WebSocket endpoint"
            )
        return f"server refused the WebSocket upgrade of {url}: {answer}"


class ProbeTimeout(ProbeError):
    """Time ran out; ``phase`` is the phase that was running."""

    default_kind = "timeout"


class ProtocolError(ProbeError):
    """The peer answered but broke the protocol or the profile's expectations
    (invalid HTTP, invalid JSON, connection closed early, no data message)."""

    default_phase = Phase.HTTP
    default_kind = "protocol"

    def __init__(
        self,
        message: str,
        *,
        phase: Phase | None = None,
        kind: str | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(message, phase=phase, kind=kind)
        #: The start of the answer that broke the expectation, for the diagnosis to quote.
        self.body = body[:500]
