"""The diagnosis codes: what each means and its hint templates, written once.

Renderers and the docs list :data:`CATALOGUE`; :func:`hint_text` fills a template.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

#: ``error`` explains a failure; ``warning`` flags a working connection that will fail or mislead
#: (the exit code does not change); ``info`` states a fact about a working connection a trader
#: should know (it changes no exit code, fails no JUnit case and marks no target as failed).
Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True, slots=True)
class FindingCode:
    """One diagnosis code: what it means and what to do, per variant.

    ``hints`` maps a variant name to a template; ``"default"`` is always present. Templates use
    the fields listed in :data:`HINT_FIELDS` (``str.format`` syntax).
    """

    code: str
    severity: Severity
    meaning: str
    hints: Mapping[str, str]


def _code(code: str, severity: Severity, meaning: str, **hints: str) -> FindingCode:
    return FindingCode(code, severity, meaning, hints)


#: Placeholders a hint template may use.
HINT_FIELDS = frozenset(
    {
        "exchange",
        "url",
        "host",
        "port",
        "proxy",
        "proxy_host",
        "proxy_port",
        "proxy_scheme",
        "origin",
        "setting",
        "wait",
        "cdn",
        "reference",
        "location",
        "not_after",
        "no_proxy",
        "s_client",
    }
)

_SEE_PROXY = "`mpnet proxy explain {exchange}` shows why it was chosen"

#: Every code mpnet emits, in the order a connection meets them. The single source of hint text.
CATALOGUE: Mapping[str, FindingCode] = {
    c.code: c
    for c in (
        _code(
            "DNS_FAILURE",
            "error",
            "the target's name did not resolve",
            default="check the host name in the URL {url} and the resolver (`getent hosts {host}`)",
            no_resolver=(
                "check the network link and /etc/resolv.conf (`getent hosts {host}`); where only "
                "a proxy gets out, let it resolve names: `--proxy socks5h://HOST:PORT` or an "
                "HTTP proxy (`proxy.https` in the config file)"
            ),
            nxdomain=(
                "check the host in {url} for a typo (`mpnet profiles show {exchange}`); if it is "
                "the exchange's public name, your resolver cannot reach public DNS or filters it "
                "(sandbox, split-horizon corporate DNS): `getent hosts {host}`, or let a "
                "socks5h:// / HTTP proxy resolve the name"
            ),
            timeout=(
                "the resolver is slow or unreachable: check /etc/resolv.conf "
                "(`getent hosts {host}`), or let a socks5h:// / HTTP proxy resolve the name"
            ),
            local_dns=(
                "use socks5h:// instead of {proxy_scheme}:// in {setting} so the proxy resolves "
                "the name itself"
            ),
        ),
        _code(
            "PROXY_UNREACHABLE",
            "error",
            "the proxy server itself could not be reached",
            default=(
                "check the proxy is running and reachable (`nc -vz {proxy_host} {proxy_port}`); "
                + _SEE_PROXY
                + "; `mpnet probe {exchange} --no-proxy` tests the direct path"
            ),
        ),
        _code(
            "PROXY_TIMEOUT",
            "error",
            "the proxy accepted TCP but never completed its handshake",
            default=(
                "check that the proxy speaks {proxy_scheme}:// on port {proxy_port} (an HTTP "
                "proxy addressed as socks5://, or the reverse, stalls like this), then the "
                "proxy's logs; " + _SEE_PROXY
            ),
        ),
        _code(
            "PROXY_HANDSHAKE",
            "error",
            "the proxy broke off or garbled its handshake",
            default=(
                "check that the proxy speaks {proxy_scheme}:// on port {proxy_port} (a SOCKS "
                "port addressed as http://, or the reverse, fails like this); if it does, its "
                "policy closed the tunnel: read its logs; " + _SEE_PROXY
            ),
        ),
        _code(
            "PROXY_AUTH_REQUIRED",
            "error",
            "the proxy wants (other) credentials",
            default=(
                "put credentials in the proxy URL in {setting}: "
                "{proxy_scheme}://USER:PASSWORD@{proxy_host}:{proxy_port}"
            ),
            rejected=(
                "check the user name and password in {setting}; percent-encode @ : / % in the "
                "password (p@ss -> p%40ss)"
            ),
            negotiate=(
                "the proxy offers only NTLM/Negotiate, which mpnet cannot speak: run a local "
                "bridge (cntlm, px) and point {setting} at it"
            ),
            transparent=(
                "no proxy is configured, so a transparent proxy on this network intercepts: ask "
                "for its address and credentials and set them with `--proxy` or `proxy.https`"
            ),
        ),
        _code(
            "PROXY_DENIED",
            "error",
            "the proxy refused to open the tunnel",
            default=("ask the proxy's admin to allow-list {host}:{port} (CONNECT); " + _SEE_PROXY),
            port=(
                "ask the proxy's admin to allow-list {host}:{port}: many proxies allow CONNECT "
                "to port 443 only; " + _SEE_PROXY
            ),
        ),
        _code(
            "PROXY_UPSTREAM",
            "error",
            "the proxy could not reach the exchange (it answered for it: 502/503/504)",
            default=(
                "the proxy itself cannot reach {host}:{port} (its DNS, route or firewall, or "
                "the exchange refusing the proxy's address): ask its admin, or compare with "
                "`mpnet probe {exchange} --no-proxy`"
            ),
        ),
        _code(
            "CONNECT_REFUSED",
            "error",
            "the target actively refused the TCP connection",
            default=(
                "check the port in {url} and that the service is up (`nc -vz {host} {port}`); a "
                "firewall that rejects with a reset looks the same"
            ),
        ),
        _code(
            "CONNECT_TIMEOUT",
            "error",
            "TCP to the target got no answer: packets are dropped",
            default=(
                "a firewall dropping outbound traffic to port {port} is the usual cause; if this "
                "network only gets out through a proxy, set one (`--proxy URL`, `proxy.https` or "
                "HTTPS_PROXY)"
            ),
            no_proxy=(
                "the no_proxy entry {no_proxy} sent this connection direct: drop it if this "
                "network only gets out through the proxy; `mpnet proxy explain {exchange}`"
            ),
        ),
        _code(
            "CONNECT_UNREACHABLE",
            "error",
            "no route to the target",
            default="check the network link and routes (`ip route get {host}`)",
            ipv6=("this machine has no IPv6 route: check `ip -6 route`, or reach {host} over IPv4"),
        ),
        _code(
            "TLS_UNTRUSTED",
            "error",
            "the certificate chain is not trusted",
            default=(
                "pass the issuing CA with `--ca-bundle PATH` or `ssl.ca_bundle` "
                "(one exchange: `exchanges.{exchange}.ssl.ca_bundle`)"
            ),
            inspection=(
                "get the inspection root CA from your IT team ({s_client} shows the chain) and "
                "trust it with "
                "`--ca-bundle PATH` or `ssl.ca_bundle` (one exchange: "
                "`exchanges.{exchange}.ssl.ca_bundle`)"
            ),
            proxy=(
                "trust the proxy's own CA apart from the exchanges': `--proxy-ca-bundle PATH` "
                "or `proxy_ssl.ca_bundle` in the config file (curl's --proxy-cacert); "
                "{s_client} shows its chain"
            ),
            public=(
                "the trust store in use lacks this CA or the server omits an intermediate: "
                "update ca-certificates / certifi, or point `--ca-bundle` / `ssl.ca_bundle` at a "
                "current bundle"
            ),
        ),
        _code(
            "TLS_EXPIRED",
            "error",
            "the certificate has expired",
            default=(
                "check this machine's clock first (`date -u`: a clock far ahead makes valid "
                "certificates look expired); if it is right, the server's certificate has "
                "expired and only its owner can fix it"
            ),
            inspection=(
                "the certificate comes from a TLS-inspecting proxy, not from the exchange: tell "
                "its admin (and check `date -u` here first)"
            ),
        ),
        _code(
            "TLS_NOT_YET_VALID",
            "error",
            "the certificate is not valid yet: usually the local clock is behind",
            default="sync this machine's clock (`timedatectl status`, `chronyc tracking`)",
        ),
        _code(
            "TLS_HOSTNAME_MISMATCH",
            "error",
            "the certificate does not name the host that was dialled",
            default=(
                "check the host in {url} (`mpnet profiles show {exchange}`); an /etc/hosts "
                "entry or DNS override may be sending {host} to another server"
            ),
            inspection=(
                "a TLS-inspecting proxy or firewall whose CA this machine trusts is answering "
                "for {host} with a certificate for another name: ask its admin to exempt {host} "
                "({s_client} shows the certificate)"
            ),
        ),
        _code(
            "TLS_HANDSHAKE",
            "error",
            "the TLS handshake failed before certificates were checked",
            default=(
                "see where it breaks with {s_client}; a middlebox filtering by SNI resets "
                "handshakes like this"
            ),
            plaintext=(
                "the port speaks plain text, not TLS: use http:// or ws:// if that is intended, "
                "or fix the port in {url}; an https:// proxy URL for a plain HTTP proxy does the "
                "same (use http://)"
            ),
        ),
        _code(
            "GEO_BLOCKED",
            "error",
            "the exchange refuses the country the connection comes from",
            default=(
                "{exchange} refuses requests by the country of your egress IP: its policy, not "
                "a network fault. Where you are entitled to access, route {exchange} through an "
                "egress in a region it serves with `exchanges.{exchange}.proxy` (its terms apply)"
            ),
        ),
        _code(
            "WAF_BLOCKED",
            "error",
            "a CDN/WAF in front of the exchange refused the request",
            default=(
                "{cdn} rejects this client, usually for the egress IP's reputation (cloud, VPN "
                "or shared-proxy ranges), the request rate, or the User-Agent (`rest.headers` "
                "in the profile); try another egress with `exchanges.{exchange}.proxy`, slow "
                "down, and quote {reference} if you contact the exchange"
            ),
        ),
        _code(
            "RATE_LIMITED",
            "error",
            "the exchange rate-limits or bans this IP",
            default=(
                "wait {wait} before probing again and probe less often (lower `-n`); every "
                "program on this egress IP shares the limit"
            ),
        ),
        _code(
            "WS_UPGRADE_REJECTED",
            "error",
            "the WebSocket upgrade got no 101",
            default=(
                "check `websocket.url` and `websocket.headers` in the profile (`mpnet profiles "
                "show {exchange}`) and try the endpoint by hand: `mpnet ws {url}`"
            ),
            redirect="the server redirects to {location}: update `websocket.url` in the profile",
            not_websocket=(
                "the path answers plain HTTP: check `websocket.url`, and whether a proxy in "
                "between strips the Upgrade header (`mpnet probe {exchange} --no-proxy`)"
            ),
            from_proxy=(
                "the proxy answered, not the exchange: read its error page or logs, and compare "
                "with `mpnet probe {exchange} --no-proxy`; " + _SEE_PROXY
            ),
        ),
        _code(
            "HTTP_ERROR",
            "error",
            "the REST endpoint answered an unexpected status",
            default=(
                "compare with `health.expect_status` in the profile (`mpnet profiles show "
                "{exchange}`) and fetch {url} by hand"
            ),
            redirect=(
                "the server redirects to {location}: update `rest.base_url` / `health.path` "
                "in the profile"
            ),
            not_found="check `rest.base_url` and `health.path` (`mpnet profiles show {exchange}`)",
            server=(
                "the exchange side is failing or in maintenance: check its status page and "
                "retry later (`mpnet probe {exchange}`)"
            ),
            from_proxy=(
                "the proxy answered, not the exchange: read its error page or logs; " + _SEE_PROXY
            ),
        ),
        _code(
            "EXCHANGE_MAINTENANCE",
            "error",
            "the exchange's status endpoint says it is not operational (maintenance)",
            default=(
                "{exchange} itself reports maintenance or restricted trading, not a network "
                "fault: wait, watch its status page or announcements, and re-run `mpnet probe "
                "{exchange}`; if the exchange is up, compare its answer with "
                "`health.expect_json` (`mpnet profiles show {exchange}`)"
            ),
        ),
        _code(
            "UNEXPECTED_RESPONSE",
            "error",
            "the peer answered, but not as the profile expects",
            default=(
                "fetch {url} by hand and compare with the profile "
                "(`mpnet profiles show {exchange}`)"
            ),
            portal=(
                "a captive portal, a proxy login page or a wrong URL answers instead of the API: "
                "open {url} in a browser from this machine"
            ),
            json_keys=(
                "the API changed or the path is wrong: compare the answer with "
                "`health.expect_json_keys` (`mpnet profiles show {exchange}`)"
            ),
            json_pattern=(
                "the API changed or the path is wrong: compare the answer with "
                "`health.expect_json` (`mpnet profiles show {exchange}`)"
            ),
            not_http=(
                "something other than an HTTP server answers: check the scheme and port in "
                "{url} (http vs https)"
            ),
            closed=(
                "an idle-timeout middlebox or a server rejecting this client closes like this: "
                "retry, then compare with `mpnet probe {exchange} --no-proxy`"
            ),
            ws_not_json=(
                "if frames are compressed, set `websocket.compression` in the profile; watch "
                "what arrives with `mpnet ws {url}`"
            ),
        ),
        _code(
            "SUBSCRIBE_REJECTED",
            "error",
            "the exchange answered the subscription with an error",
            default=(
                "the exchange refused the subscription itself, not the network: check the "
                "channel and symbol in `websocket.subscribe` against its docs (`mpnet profiles "
                "show {exchange}`) and try them by hand with `mpnet ws {url} --send "
                "'<subscribe JSON>'`"
            ),
            clock=(
                "the subscription carries this machine's time, and {exchange} refuses one too "
                "far from its own clock (Gate: more than 60 s): check the clock (`timedatectl "
                "status`, `chronyc tracking`; `mpnet probe {exchange} --no-ws` shows CLOCK_SKEW); "
                "if it is right, check `websocket.subscribe` (`mpnet profiles show {exchange}`)"
            ),
            welcome=(
                "the exchange refused the connection before any subscription was sent (a token "
                "or a connection limit): check `websocket.bootstrap` and `websocket.url` "
                "(`mpnet profiles show {exchange}`), then retry"
            ),
        ),
        _code(
            "NO_DATA",
            "error",
            "subscribed, but no data message arrived",
            default=(
                "check the subscription and symbol (`websocket.subscribe`, `data_match`: "
                "`mpnet profiles show {exchange}`) and watch what the server sends with "
                "`mpnet ws {url} --send '<subscribe JSON>'`"
            ),
        ),
        _code(
            "PING_UNANSWERED",
            "warning",
            "data arrived, but the ping got no answer: no ping round trip is shown",
            default=(
                "the feed works; check `websocket.ping` (send / expect) against the exchange's "
                "keepalive docs (`mpnet profiles show {exchange}`) and see what comes back with "
                "`mpnet ws {url} --send '<ping>'`"
            ),
            frame=(
                "the server (or a proxy in between) does not answer WebSocket ping frames: if "
                "the exchange documents an application ping, put it in `websocket.ping` "
                "(send / expect; `mpnet profiles show {exchange}`)"
            ),
        ),
        _code(
            "TIMEOUT",
            "error",
            "time ran out in a phase with no more specific explanation",
            default="retry with a larger `--timeout`",
            tls=(
                "a middlebox filtering by SNI often drops handshakes silently: compare with "
                "{s_client}"
            ),
            http=(
                "the server or the proxy accepted the request but is slow: retry with a larger "
                "`--timeout` and check the exchange's status page"
            ),
            ws_upgrade=(
                "some proxies and firewalls hold WebSocket upgrades: retry with a larger "
                "`--timeout` and compare with `mpnet probe {exchange} --no-proxy`"
            ),
            ping_rtt=(
                "the server may not answer that message: check `websocket.ping` (send / expect) "
                "in the profile"
            ),
        ),
        _code(
            "CLOCK_SKEW",
            "warning",
            "the local clock differs from the exchange's by more than the tolerance (default "
            "500 ms), beyond the measurement's error",
            default=(
                "sync this machine's clock (`timedatectl status`, `chronyc tracking`): signed "
                "requests (recvWindow, expires) fail when it is off; `--clock-tolerance MS` or "
                "`clock.tolerance_ms` in the config file sets when mpnet warns"
            ),
        ),
        _code(
            "FEED_LAGGING",
            "warning",
            "market data arrives later than the tolerance (default 1000 ms) after the exchange "
            "stamped it",
            default=(
                "this machine's clock was corrected and its event loop kept up: the delay is "
                "the exchange's or the path's; compare another route (`mpnet probe {exchange} "
                "--proxy URL`) and the exchange's status page"
            ),
            consumer=(
                "this process was slow to read the feed (its event loop stalled, see the "
                "message): check the CPU load (`uptime`, `top`) and retry with `--concurrency "
                "1`; a trading process on this machine may be as slow"
            ),
            proxy=(
                "the lag grew while the feed was read through {proxy} (chosen by {origin}): a "
                "buffering proxy holds messages back; compare `mpnet probe {exchange} "
                "--no-proxy` or another proxy"
            ),
            uncorrected=(
                "no clock offset was measured for {exchange} in this run, so the lag includes "
                "this machine's clock offset: probe its REST target too (`--rest`) or check the "
                "clock (`chronyc tracking`) before blaming the feed"
            ),
        ),
        _code(
            "CERT_EXPIRING",
            "warning",
            "the certificate is valid but expires soon",
            default=(
                "its owner must renew it before {not_after}, when connections start failing "
                "with TLS_EXPIRED: tell them if `mpnet probe {exchange}` still warns in a few days"
            ),
            inspection=(
                "the certificate comes from a TLS-inspecting proxy: tell its admin; after "
                "{not_after} connections fail with TLS_EXPIRED (re-check with "
                "`mpnet probe {exchange}`)"
            ),
        ),
        _code(
            "TLS_INTERCEPTED",
            "info",
            "the exchange's certificate comes from a private CA, not a public one: a "
            "TLS-inspecting proxy or firewall decrypts the connection (reported even when a "
            "trusted bundle makes it verify)",
            default=(
                "whoever runs the inspecting proxy can read everything sent to {exchange} (API "
                "keys, signed requests, every order) and can hold it up; confirm with "
                "{s_client}: the issuer is its CA, not a public one; then ask the network team "
                "to exempt {host} from TLS inspection (an SSL bypass rule), or send {exchange} "
                "by a route that is not inspected (`exchanges.{exchange}.proxy`)"
            ),
        ),
        _code(
            "INSECURE_TLS",
            "warning",
            "certificate verification is off for this connection",
            default=(
                "drop {setting}; if it is there because of TLS inspection, trust the "
                "inspection CA with `ssl.ca_bundle` instead"
            ),
        ),
        _code(
            "PATH_DIVERGENCE",
            "warning",
            "REST and WebSocket of one exchange leave through different paths",
            default=(
                "give both one path with `exchanges.{exchange}.proxy` (a URL, or `direct`) and "
                "confirm with `mpnet proxy explain {exchange}`"
            ),
            env=(
                "HTTPS_PROXY serves https/wss targets and HTTP_PROXY http/ws ones: set both, or "
                "give both one path with `exchanges.{exchange}.proxy`; confirm with "
                "`mpnet proxy explain {exchange}`"
            ),
        ),
        _code(
            "PROXY_WRITE_STALL",
            "warning",
            "a proxy holds small writes until a delayed ACK (Nagle's algorithm): ~40 ms stalls",
            default=(
                "the relay at {proxy} writes small segments without TCP_NODELAY, so each waits "
                "for the peer's delayed ACK (40 ms on Linux): set TCP_NODELAY on the proxy's "
                "sockets (its nodelay option, or setsockopt(TCP_NODELAY) in a home-made relay); "
                "`mpnet probe {exchange} --no-proxy -n 10` shows the path without it"
            ),
        ),
    )
}


def hint_text(code: str, variant: str = "default", **fields: object) -> str:
    """The hint of ``code`` (falling back to its default variant) filled with ``fields``.

    A field the template needs but ``fields`` lacks shows as ``?``; this never raises for a
    code in :data:`CATALOGUE`.
    """
    hints = CATALOGUE[code].hints
    template = hints.get(variant, hints["default"])
    return string.Formatter().vformat(template, (), _Fields(fields))


class _Fields(dict[str, object]):
    def __missing__(self, key: str) -> object:
        return "?"
