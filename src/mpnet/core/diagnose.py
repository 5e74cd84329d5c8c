"""Diagnosis (pure): probe results in, findings a person can act on out.

A finding explains an error line rather than repeating it: ``message`` carries the evidence
(status, header values, issuer, clock offset, the proxy and the layer that chose it) and ``hint``
the action (a flag, a config key, a command). Failures get ``error`` findings; healthy probes can
still carry ``warning`` findings (clock skew, a certificate about to expire, verification off,
REST and WebSocket leaving by different paths).

Every hint is written once, in :data:`CATALOGUE` (code -> variants -> template), so renderers and
the docs can list them. Nothing here does I/O or reads the clock: pass ``now`` to let a
certificate's ``not_after`` stand in for a missing ``cert_days_left``.

Passwords: findings are built from redacted proxy URLs only, and every message and hint is
scrubbed of the result's proxy password and of any ``user:pass@`` in quoted server text.
"""

from __future__ import annotations

import html
import json
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

from mpnet.core.clock import (
    LAG_GROWTH_MS,
    SOURCE_DATE,
    SOURCE_PONG,
    ClockEstimate,
    ClockTolerances,
)
from mpnet.core.proxy import ProxyDecision
from mpnet.core.proxy_url import REDACTED, redact_url_text
from mpnet.core.result import Attempt, ErrorInfo, Finding, ProbeResult

Severity = Literal["error", "warning"]

#: A certificate with this many days left or fewer gets CERT_EXPIRING.
CERT_EXPIRY_WARNING_DAYS = 14
#: Binance's limits on a signed request's timestamp (its docs, "Timing security"): refused when
#: stamped more than 1000 ms ahead of its clock ("Timestamp for this request was 1000ms ahead of
#: the server's time", -1021), or when it arrives later than recvWindow (default 5000 ms) after
#: its stamp ("Timestamp for this request is outside of the recvWindow", -1021).
SIGNED_AHEAD_LIMIT_MS = 1000.0
DEFAULT_RECV_WINDOW_MS = 5000.0
#: The probe engine notes this in a rejection's message when the subscription carried the local
#: clock (Gate's ``time``): the rejection may then be about the clock.
CLOCK_CARRIED = "the subscription carried this machine's clock"
#: A phase this long, on a path whose other round trips take a few ms, is a delayed ACK met by
#: Nagle's algorithm: Linux's minimum delayed-ACK timer is 40 ms.
STALL_WINDOW_MS = (35.0, 50.0)
#: A phase at most this long went through without a stall ("a few ms or less").
UNSTALLED_MAX_MS = 10.0


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
            upstream=(
                "the proxy itself cannot reach {host}:{port} (its DNS or egress): ask its admin, "
                "or compare with `mpnet probe {exchange} --no-proxy`"
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
                "get the inspection root CA from your IT team (`openssl s_client -showcerts "
                "-connect {host}:{port} -servername {host}` shows the chain) and trust it with "
                "`--ca-bundle PATH` or `ssl.ca_bundle` (one exchange: "
                "`exchanges.{exchange}.ssl.ca_bundle`)"
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
                "(`openssl s_client -connect {host}:{port} -servername {host}` shows the "
                "certificate)"
            ),
        ),
        _code(
            "TLS_HANDSHAKE",
            "error",
            "the TLS handshake failed before certificates were checked",
            default=(
                "see where it breaks with `openssl s_client -connect {host}:{port} -servername "
                "{host}`; a middlebox filtering by SNI resets handshakes like this"
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
                "`openssl s_client -connect {host}:{port} -servername {host}`"
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


# -- public entry points ------------------------------------------------------------------------


def diagnose(
    results: Sequence[ProbeResult],
    *,
    now: float | None = None,
    tolerances: ClockTolerances | None = None,
) -> tuple[ProbeResult, ...]:
    """Attach findings to every result, in the same order.

    Args:
        results: the probe results of one run; cross-result findings (PATH_DIVERGENCE) compare
            the results of the same exchange.
        now: Unix time, used only to compute a certificate's days left from ``cert_not_after``
            when ``cert_days_left`` is missing.
        tolerances: when CLOCK_SKEW and FEED_LAGGING fire (the defaults when None).

    Returns:
        The results, each with ``findings`` replaced by its diagnosis.
    """
    # Every password of the run is masked in every finding, whichever result it came from.
    secrets = _passwords(results)
    limits = tolerances or ClockTolerances()
    findings = [list(_diagnose_one(result, now, secrets, limits)) for result in results]
    for index, finding in _path_divergence(results, secrets):
        findings[index].append(finding)
    for index, finding in _proxy_write_stalls(results, secrets):
        findings[index].append(finding)
    return tuple(result.with_findings(f) for result, f in zip(results, findings, strict=True))


def diagnose_one(
    result: ProbeResult,
    *,
    now: float | None = None,
    tolerances: ClockTolerances | None = None,
) -> tuple[Finding, ...]:
    """The findings of one result alone: failures explained first, then warnings."""
    secrets = _passwords([result])
    stalls = tuple(finding for _, finding in _proxy_write_stalls([result], secrets))
    return _diagnose_one(result, now, secrets, tolerances or ClockTolerances()) + stalls


def _passwords(results: Sequence[ProbeResult]) -> tuple[str, ...]:
    found = {r.proxy.proxy.password for r in results if r.proxy.proxy is not None}
    # Longest first, so a password containing another is masked whole.
    return tuple(sorted((p for p in found if p), key=len, reverse=True))


def _diagnose_one(
    result: ProbeResult,
    now: float | None,
    secrets: tuple[str, ...],
    tolerances: ClockTolerances,
) -> tuple[Finding, ...]:
    ctx = _Context.of(result, secrets)
    findings: list[Finding] = []
    failed = [a for a in result.attempts if not a.ok and a.error is not None]
    counts: dict[str, int] = {}
    first: dict[str, Finding] = {}
    for attempt in failed:
        assert attempt.error is not None
        finding = _explain(ctx, attempt, attempt.error)
        if finding is None:
            continue
        counts[finding.code] = counts.get(finding.code, 0) + 1
        first.setdefault(finding.code, finding)
    total = len(result.made)  # attempts skipped for a rate-limit wait were never sent
    for code, finding in first.items():
        if total > 1 and counts[code] < total:
            finding = Finding(
                finding.code,
                f"{finding.message} (in {counts[code]} of {total} attempts)",
                finding.hint,
                finding.severity,
            )
        findings.append(finding)
    for warning in (
        _ping_unanswered(ctx),
        _clock_skew(ctx, tolerances.offset_ms),
        _feed_lagging(ctx, tolerances.feed_lag_ms),
        _cert_expiring(ctx, now),
        _insecure_tls(ctx),
    ):
        if warning is not None:
            findings.append(warning)
    return tuple(findings)


# -- context ------------------------------------------------------------------------------------


_DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}
_LOCAL_DNS_SCHEMES = ("socks4", "socks5")
_TARGET_LABEL = {"rest": "REST", "ws": "WebSocket"}


@dataclass(frozen=True, slots=True)
class _Context:
    """What every rule needs about one result, computed once."""

    result: ProbeResult
    host: str
    port: int | None
    secrets: tuple[str, ...]

    @classmethod
    def of(cls, result: ProbeResult, secrets: tuple[str, ...]) -> _Context:
        host, port = _host_port(result.url)
        return cls(result, host, port, secrets)

    @property
    def exchange(self) -> str:
        return self.result.exchange

    @property
    def label(self) -> str:
        return _TARGET_LABEL.get(self.result.target, self.result.target)

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}" if self.port is not None else self.host

    @property
    def via(self) -> str:
        """`` via PROXY (chosen by ORIGIN)`` or empty for a direct connection."""
        decision = self.result.proxy
        if decision.proxy is None:
            return ""
        return f" via {decision.proxy.redacted()} (chosen by {proxy_origin(decision)})"

    def fields(self, **extra: object) -> dict[str, object]:
        decision = self.result.proxy
        proxy = decision.proxy
        values: dict[str, object] = {
            "exchange": self.exchange,
            "url": self.result.url,
            "host": self.host,
            "port": self.port if self.port is not None else "?",
            "proxy": proxy.redacted() if proxy else "direct",
            "proxy_host": proxy.host if proxy else "?",
            "proxy_port": proxy.port if proxy else "?",
            "proxy_scheme": proxy.scheme if proxy else "?",
            "origin": proxy_origin(decision),
            "setting": _proxy_setting(decision, self.exchange),
        }
        values.update(extra)
        return values

    def finding(
        self, code: str, message: str, variant: str = "default", **extra: object
    ) -> Finding:
        return _make_finding(code, message, variant, self.fields(**extra), self.secrets)


def _make_finding(
    code: str, message: str, variant: str, fields: Mapping[str, object], secrets: Sequence[str]
) -> Finding:
    entry = CATALOGUE[code]
    # Scrub the values, not the template: a template may show the shape USER:PASSWORD@host.
    hint = hint_text(code, variant, **{k: _scrub(str(v), secrets) for k, v in fields.items()})
    for secret in secrets:
        hint = hint.replace(secret, REDACTED)
    return Finding(code, _scrub(message, secrets), hint, entry.severity)


def _scrub(text: str, secrets: Sequence[str]) -> str:
    # Server text (bodies, headers) is quoted verbatim: mask anything that looks like a password.
    text = redact_url_text(text)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def _host_port(url: str) -> tuple[str, int | None]:
    try:
        parts = urlsplit(url)
        host = parts.hostname or url
        port = parts.port
    except ValueError:
        return url, None
    if port is None:
        port = _DEFAULT_PORTS.get(parts.scheme.lower())
    return host, port


def proxy_origin(decision: ProxyDecision) -> str:
    """Which layer (and setting) chose the path: ``env HTTPS_PROXY``, ``cli --proxy``, ..."""
    if decision.source:
        return f"{decision.layer} {decision.source}"
    return f"the {decision.layer} layer"


def _proxy_setting(decision: ProxyDecision, exchange: str) -> str:
    """Where a person edits the proxy this decision used."""
    if decision.source:
        return f"`{decision.source}`" if decision.layer != "env" else decision.source
    return {
        "cli": "`--proxy`",
        "exchange": f"`exchanges.{exchange}.proxy`",
        "service": "`proxy:` in the config file",
        "env": "the *_proxy environment variable",
    }.get(decision.layer, "`--proxy`")


# -- failures -----------------------------------------------------------------------------------

_STATUS_PHASES = ("http", "ws_upgrade", "bootstrap")


_PROXY_HANDSHAKE_KINDS = ("proxy_auth", "proxy_denied", "proxy_closed", "proxy_protocol")
_TLS_KINDS = ("untrusted", "expired", "not_yet_valid", "hostname_mismatch", "handshake")


def _explain(ctx: _Context, attempt: Attempt, error: ErrorInfo) -> Finding | None:
    phase, kind = str(error.phase), str(error.kind)
    proxy = ctx.result.proxy.proxy
    # Through a proxy, dns and tcp are the proxy's own: net/ marks them with a proxy_ kind.
    # Only with socks4/socks5 (local DNS) does mpnet still resolve the target's name.
    reaching_proxy = kind.startswith("proxy_") and kind not in _PROXY_HANDSHAKE_KINDS
    if reaching_proxy or (
        proxy is not None
        and (phase == "tcp" or (phase == "dns" and proxy.remote_dns))
        and kind not in _PROXY_HANDSHAKE_KINDS
    ):
        return _proxy_unreachable(ctx, error)
    if phase == "dns":
        return _dns_failure(ctx, kind)
    if phase == "tcp":
        return _connect_failure(ctx, attempt, kind)
    if phase == "proxy":
        return _proxy_failure(ctx, error)
    if phase == "tls":
        return _tls_failure(ctx, error)
    if phase in _STATUS_PHASES:
        return _answer_failure(ctx, error)
    if phase == "first_message":
        return _first_message_failure(ctx, error)
    if kind == "timeout":
        return _timeout(ctx, phase)
    return None


def _dns_failure(ctx: _Context, kind: str) -> Finding | None:
    proxy = ctx.result.proxy.proxy
    if proxy is not None and proxy.scheme in _LOCAL_DNS_SCHEMES and kind != "timeout":
        return ctx.finding(
            "DNS_FAILURE",
            f"{ctx.host} did not resolve here; with a {proxy.scheme}:// proxy "
            f"({proxy.redacted()}, chosen by {proxy_origin(ctx.result.proxy)}) mpnet resolves "
            "target names itself",
            "local_dns",
        )
    # Who had to resolve the name, and why: the route is the evidence the error line lacks.
    asked = (
        f"; this machine resolves it because the connection is direct "
        f"({_direct_reason(ctx.result.proxy)})"
        if proxy is None
        else ""
    )
    if kind == "nxdomain":
        return ctx.finding(
            "DNS_FAILURE",
            f"{ctx.host} does not exist according to this machine's resolver (NXDOMAIN){asked}",
            "nxdomain",
        )
    if kind == "no_resolver":
        return ctx.finding(
            "DNS_FAILURE",
            f"no DNS resolver answered for {ctx.host}: this machine has no working DNS (no "
            f"network, or DNS is blocked){asked}",
            "no_resolver",
        )
    if kind == "timeout":
        return ctx.finding(
            "DNS_FAILURE", f"the lookup of {ctx.host} got no answer in time{asked}", "timeout"
        )
    return ctx.finding("DNS_FAILURE", f"{ctx.host} did not resolve ({kind})")


def _proxy_unreachable(ctx: _Context, error: ErrorInfo) -> Finding:
    decision = ctx.result.proxy
    proxy = decision.proxy
    name = proxy.redacted() if proxy else "the proxy"
    its_name = f"its name {proxy.host}" if proxy else "its name"
    text = error.message.lower()
    why = str(error.kind).removeprefix("proxy_")
    if str(error.phase) == "dns":
        how = {
            "nxdomain": f"{its_name} does not exist in DNS (NXDOMAIN)",
            "no_resolver": f"no DNS resolver answered for {its_name} (no network, or DNS blocked)",
        }.get(why, f"{its_name} did not resolve")
    elif why == "refused" or "refused" in text:
        how = "it refused the TCP connection (not running, or the wrong port)"
    elif why == "timeout" or "timed out" in text:
        how = "the TCP connection to it timed out (a firewall drops the packets)"
    elif why == "unreachable" or "unreachable" in text or "no route" in text:
        how = "there is no route to it"
    elif why == "reset" or "reset" in text:
        how = "it reset the TCP connection"
    else:
        how = "the TCP connection to it failed"
    return ctx.finding(
        "PROXY_UNREACHABLE",
        f"the proxy {name} (chosen by {proxy_origin(decision)}) could not be reached: {how}",
    )


def _connect_failure(ctx: _Context, attempt: Attempt, kind: str) -> Finding | None:
    ipv6 = attempt.address is not None and ":" in attempt.address
    address = ""
    if attempt.address and attempt.address != ctx.host:
        address = f" (IPv6 address {attempt.address})" if ipv6 else f" ({attempt.address})"
    target = f"{ctx.hostport}{address}"
    if kind == "refused":
        return ctx.finding(
            "CONNECT_REFUSED",
            f"{target} refused the TCP connection: nothing listens on that port, or a "
            f"firewall rejects it (a direct connection, {_direct_reason(ctx.result.proxy)})",
        )
    if kind == "reset":
        return ctx.finding(
            "CONNECT_REFUSED", f"{target} reset the TCP connection while it was being opened"
        )
    if kind == "timeout":
        decision = ctx.result.proxy
        if decision.no_proxy_match:
            return ctx.finding(
                "CONNECT_TIMEOUT",
                f"TCP connect to {target} got no answer at all; it went direct because the "
                f"no_proxy entry {decision.no_proxy_match!r} ({decision.layer}) bypassed the "
                "proxy",
                "no_proxy",
                no_proxy=repr(decision.no_proxy_match),
            )
        return ctx.finding(
            "CONNECT_TIMEOUT",
            f"TCP connect to {target} got no answer at all (a direct connection, "
            f"{_direct_reason(decision)})",
        )
    if kind == "unreachable":
        return ctx.finding(
            "CONNECT_UNREACHABLE",
            f"no route to {target}",
            "ipv6" if ipv6 else "default",
        )
    return None


def _direct_reason(decision: ProxyDecision) -> str:
    if decision.layer == "default":
        return "no proxy is configured"
    where = f" {decision.source}" if decision.source else ""
    return f"the {decision.layer} layer{where} says direct"


def _proxy_failure(ctx: _Context, error: ErrorInfo) -> Finding | None:
    kind = error.kind
    decision = ctx.result.proxy
    proxy = decision.proxy
    name = proxy.redacted() if proxy else "the proxy"
    origin = proxy_origin(decision)
    if kind == "proxy_auth":
        return _proxy_auth(ctx, error)
    if kind in _TLS_KINDS:  # an https:// proxy's own certificate
        return _tls_failure(ctx, error, of_proxy=True)
    handshake = "SOCKS" if proxy is not None and proxy.is_socks else "CONNECT"
    if kind == "proxy_denied":
        code = error.status or _status_in(error.message)
        status = f" (status {code})" if code else ""
        said = _proxy_said(error)
        if code in (502, 503, 504):
            return ctx.finding(
                "PROXY_DENIED",
                f"the proxy {name} (chosen by {origin}) answered the tunnel request to "
                f"{ctx.hostport}{status}: it could not reach the target itself{said}",
                "upstream",
            )
        variant = "port" if ctx.port not in (443, None) else "default"
        return ctx.finding(
            "PROXY_DENIED",
            f"the proxy {name} (chosen by {origin}) refused to open a tunnel to "
            f"{ctx.hostport}{status}{said}",
            variant,
        )
    if kind == "proxy_closed":
        return ctx.finding(
            "PROXY_HANDSHAKE",
            f"the proxy {name} (chosen by {origin}) closed the connection during the "
            f"{handshake} handshake for {ctx.hostport}",
        )
    if kind == "proxy_protocol":
        return ctx.finding(
            "PROXY_HANDSHAKE",
            f"the proxy {name} (chosen by {origin}) answered the {handshake} request for "
            f"{ctx.hostport} in a protocol other than {ctx.result.proxy.scheme}",
        )
    if kind == "timeout":
        return ctx.finding(
            "PROXY_TIMEOUT",
            f"the proxy {name} (chosen by {origin}) accepted the TCP connection but never "
            f"completed the {handshake} handshake for {ctx.hostport}",
        )
    return None


def _evidence(error: ErrorInfo, headers: tuple[str, ...]) -> list[str]:
    """``["Server: squid", ..., "page '...'"]``: the named headers present, then the page gist."""
    details = [f"{name}: {value}" for name in headers if (value := _header(error, name.lower()))]
    gist = _gist(error.body)
    if gist:
        details.append(f"page {gist!r}")
    return details


def _proxy_said(error: ErrorInfo) -> str:
    """``; Server: squid; X-Squid-Error: ...; page '...'`` from a proxy's refusal, or empty."""
    details = _evidence(error, ("Server", "X-Squid-Error"))
    return f"; {'; '.join(details)}" if details else ""


_TRAILING_STATUS = re.compile(r"\b([1-5][0-9]{2})\b[^:0-9]*$")


def _status_in(message: str) -> int | None:
    """The status at the end of a proxy's error line (``refused CONNECT h:443: 403 Forbidden``)."""
    match = _TRAILING_STATUS.search(message)
    return int(match.group(1)) if match else None


_NEGOTIATE_ONLY = re.compile(r"^\s*(ntlm|negotiate|kerberos)\b", re.IGNORECASE)


def _proxy_auth(ctx: _Context, error: ErrorInfo) -> Finding:
    decision = ctx.result.proxy
    proxy = decision.proxy
    if proxy is None:
        return ctx.finding(
            "PROXY_AUTH_REQUIRED",
            f"{ctx.hostport} answered {error.status or 407} Proxy Authentication Required "
            "although no proxy is configured",
            "transparent",
        )
    origin = proxy_origin(decision)
    status = error.status or _status_in(error.message)
    answer = (
        f"answered {status}"
        if status
        else (
            ("refused SOCKS authentication" if proxy.username else "asked for SOCKS authentication")
            if proxy.is_socks
            else "asked for authentication"
        )
    )
    asks = _header(error, "proxy-authenticate")
    asked = f"; it asks for {asks!r}" if asks else ""
    if proxy.username is not None:
        sent = f"credentials for user {proxy.username!r} were sent, taken from {origin}"
        variant = "rejected"
    else:
        sent = f"no credentials were sent: the proxy URL from {origin} has no user name"
        variant = "default"
    schemes = [s for s in asks.split(",") if s.strip()] if asks else []
    if schemes and all(_NEGOTIATE_ONLY.match(s) for s in schemes):
        variant = "negotiate"
    return ctx.finding(
        "PROXY_AUTH_REQUIRED", f"the proxy {proxy.redacted()} {answer}; {sent}{asked}", variant
    )


_PUBLIC_CA_NAMES = (
    "digicert",
    "let's encrypt",
    "lets encrypt",
    "globalsign",
    "sectigo",
    "comodo",
    "amazon",
    "google trust services",
    "cloudflare",
    "entrust",
    "godaddy",
    "go daddy",
    "isrg",
    "baltimore",
    "starfield",
    "microsoft",
    "usertrust",
    "geotrust",
    "thawte",
    "rapidssl",
    "quovadis",
    "identrust",
    "certum",
    "buypass",
    "zerossl",
    "ssl.com",
    "actalis",
    "harica",
    "trustasia",
    "verisign",
    "symantec",
    "gts ca",
)
# Let's Encrypt and Google intermediates go by bare names (CN=R11, CN=E6, CN=WR2).
_PUBLIC_CA_SHORT = re.compile(r"\b(R[0-9]{1,2}|E[0-9]{1,2}|W[RE][0-9]|GTS)\b")


def looks_public_ca(issuer: str) -> bool:
    """A heuristic: does the issuer name a public web CA (rather than a corporate one)?"""
    lowered = issuer.lower()
    return any(name in lowered for name in _PUBLIC_CA_NAMES) or bool(
        _PUBLIC_CA_SHORT.search(issuer)
    )


def _trust_store(ctx: _Context) -> str:
    ssl = ctx.result.ssl
    if ssl.ca_kind in ("file", "dir"):
        what = "bundle" if ssl.ca_kind == "file" else "directory"
        return f"the CA {what} {ssl.ca} (from the {ssl.layer} layer)"
    if ssl.ca_kind == "certifi":
        return "certifi's CA bundle"
    return "the system trust store"


def _tls_failure(ctx: _Context, error: ErrorInfo, *, of_proxy: bool = False) -> Finding | None:
    kind = error.kind
    issuer = error.issuer
    intercepted = issuer is not None and not looks_public_ca(issuer)
    # Expired and hostname errors come after the chain verified. A private issuer is then no
    # sign of inspection when the user named the bundle: they trust their own CA on purpose.
    chose_bundle = ctx.result.ssl.ca_kind in ("file", "dir")
    by = f" (issued by {issuer!r})" if issuer else ""
    proxy = ctx.result.proxy.proxy
    if of_proxy and proxy is not None:
        # The https proxy's own certificate: the hints' host and port become the proxy's.
        peer_host, peer = proxy.host, f"{proxy.host}:{proxy.port}"
        cert = (
            f"the certificate of the https proxy {proxy.redacted()} (chosen by "
            f"{proxy_origin(ctx.result.proxy)})"
        )
        peer_fields: dict[str, object] = {"host": proxy.host, "port": proxy.port}
    else:
        peer_host, peer = ctx.host, f"{ctx.hostport}{ctx.via}"
        cert = f"the certificate for {peer}"
        peer_fields = {}

    def finding(code: str, message: str, variant: str = "default") -> Finding:
        return ctx.finding(code, message, variant, **peer_fields)

    if kind == "untrusted":
        if issuer is None:
            message = f"{cert} chains to no CA in {_trust_store(ctx)}"
            return finding("TLS_UNTRUSTED", message)
        if intercepted:
            message = (
                f"{cert} is issued by {issuer!r}, which is not a public CA and not in "
                f"{_trust_store(ctx)}: this looks like TLS inspection by a corporate proxy or "
                "firewall"
            )
            return finding("TLS_UNTRUSTED", message, "inspection")
        message = (
            f"{cert} is issued by {issuer!r}, a public CA, yet does not chain to "
            f"{_trust_store(ctx)}"
        )
        return finding("TLS_UNTRUSTED", message, "public")
    if kind == "expired":
        message = f"{cert}{by} has expired"
        inspected = intercepted and not chose_bundle
        return finding("TLS_EXPIRED", message, "inspection" if inspected else "default")
    if kind == "not_yet_valid":
        message = f"{cert}{by} is not valid yet by this machine's clock"
        return finding("TLS_NOT_YET_VALID", message)
    if kind == "hostname_mismatch":
        message = (
            f"{cert}{by} does not list {peer_host} among its names, though it chains to "
            f"{_trust_store(ctx)}"
        )
        inspected = intercepted and not chose_bundle
        return finding("TLS_HOSTNAME_MISMATCH", message, "inspection" if inspected else "default")
    if kind == "handshake":
        text = error.message.lower()
        if "wrong version number" in text or "wrong_version_number" in text:
            return finding(
                "TLS_HANDSHAKE",
                f"{peer} answered the TLS hello with something that is not TLS",
                "plaintext",
            )
        return finding(
            "TLS_HANDSHAKE",
            f"the TLS handshake with {peer} broke off before any certificate was checked",
        )
    if kind == "timeout":
        return _timeout(ctx, "tls")
    return None


_WHERE = {
    "http": "the REST endpoint",
    "ws_upgrade": "the WebSocket upgrade",
    "bootstrap": "the token request before connecting (bootstrap)",
}


def _answer_failure(ctx: _Context, error: ErrorInfo) -> Finding | None:
    """An HTTP-level answer: REST, the WebSocket upgrade, or the bootstrap request."""
    phase, kind = str(error.phase), error.kind
    where = f"{_WHERE.get(phase, phase)} at {ctx.host}"
    status = error.status
    if kind == "maintenance":
        return _maintenance(ctx, error)
    for rule in (_geo_blocked, _rate_limited, _waf_blocked):
        found = rule(ctx, error, where)
        if found is not None:
            return found
    if status in (401, 407) and (status == 407 or _header(error, "proxy-authenticate")):
        return _proxy_auth(ctx, error)
    if kind == "ws_upgrade_rejected" or (phase == "ws_upgrade" and status is not None):
        return _ws_rejected(ctx, error)
    if kind == "http_status" or status is not None:
        return _http_error(ctx, error, where)
    if kind == "timeout":
        return _timeout(ctx, phase)
    return _unexpected_response(ctx, error, where)


_BINANCE_GEO = "restricted location"
_CLOUDFRONT_GEO = re.compile(r"block(ed)? access from your country|\bcountry\b", re.IGNORECASE)


def _geo_blocked(ctx: _Context, error: ErrorInfo, where: str) -> Finding | None:
    status, body = error.status, error.body
    lowered = body.lower()
    evidence: str | None = None
    if status == 451:
        evidence = "451 Unavailable For Legal Reasons"
    if _BINANCE_GEO in lowered:
        evidence = f"{status or 'an answer'} saying {_excerpt(body, _BINANCE_GEO)!r}"
    elif status == 403 and _cdn(error) == "CloudFront":
        match = _CLOUDFRONT_GEO.search(body)
        if match:
            evidence = f"403 from CloudFront saying {_excerpt(body, match.group(0))!r}"
    if evidence is None:
        return None
    if status == 451 and body.strip() and _BINANCE_GEO not in lowered:
        evidence += f" ({_gist(body)!r})"
    return ctx.finding("GEO_BLOCKED", f"{where} answered {evidence}{ctx.via}")


def _rate_limited(ctx: _Context, error: ErrorInfo, where: str) -> Finding | None:
    status = error.status
    if status not in (429, 418):
        return None
    what = "429 Too Many Requests" if status == 429 else "418, Binance's IP ban after repeated 429s"
    retry = _header(error, "retry-after")
    details = [f"Retry-After: {retry}" if retry else "no Retry-After header"]
    weight = _header(error, "x-mbx-used-weight-1m") or _header(error, "x-mbx-used-weight")
    if weight:
        details.append(f"used weight {weight}")
    if retry and retry.strip().isdigit():
        wait = f"{int(retry.strip())} s (Retry-After)"
    elif retry:
        wait = f"until {retry} (Retry-After)"
    else:
        wait = "a minute or more"
    return ctx.finding("RATE_LIMITED", f"{where} answered {what}; {', '.join(details)}", wait=wait)


_CDN_REFERENCE = {
    "CloudFront": ("x-amz-cf-id", "the X-Amz-Cf-Id"),
    "Cloudflare": ("cf-ray", "the cf-ray"),
    "Akamai": ("", "the Reference # on the page"),
}


def _cdn(error: ErrorInfo) -> str | None:
    """Which CDN produced this answer, by its headers or page; None when no marker is present."""
    server = _header(error, "server").lower()
    body = error.body.lower()
    if (
        "cloudfront" in server
        or "cloudfront" in _header(error, "x-cache").lower()
        or _header(error, "x-amz-cf-id")
        or "generated by cloudfront" in body
    ):
        return "CloudFront"
    if server == "cloudflare" or _header(error, "cf-ray") or "attention required" in body:
        return "Cloudflare"
    if "akamaighost" in server or "reference #" in body or "reference&#32;&#35;" in body:
        return "Akamai"
    return None


def _waf_blocked(ctx: _Context, error: ErrorInfo, where: str) -> Finding | None:
    status = error.status
    cdn = _cdn(error)
    if cdn is None:
        return None
    # Cloudflare's "Just a moment..." challenge comes as a 503 (or 403).
    challenge = status == 503 and cdn == "Cloudflare" and "just a moment" in error.body.lower()
    if status != 403 and not challenge:
        return None
    evidence = _evidence(error, ("Server", "X-Cache", "cf-ray", "X-Amz-Cf-Id"))
    header, reference = _CDN_REFERENCE[cdn]
    ref_value = _header(error, header) if header else ""
    if ref_value:
        reference = f"{reference} {ref_value}"
    return ctx.finding(
        "WAF_BLOCKED",
        f"{where} got {status} from {cdn}, before the exchange saw the request"
        + (f" ({'; '.join(evidence)})" if evidence else ""),
        cdn=cdn,
        reference=reference,
    )


def _ws_rejected(ctx: _Context, error: ErrorInfo) -> Finding:
    status = error.status
    location = _header(error, "location")
    gist = _gist(error.body)
    body = f"; body {gist!r}" if gist else ""
    got = f"HTTP {status}" if status is not None else "an answer"
    moved = f" (Location: {location})" if location else ""
    message = f"the upgrade of {ctx.result.url} got {got}{moved} instead of 101{body}{ctx.via}"
    if status is not None and 300 <= status < 400 and location:
        return ctx.finding("WS_UPGRADE_REJECTED", message, "redirect", location=location)
    if status == 200:
        return ctx.finding("WS_UPGRADE_REJECTED", message, "not_websocket")
    return ctx.finding("WS_UPGRADE_REJECTED", message)


_PROXY_SERVERS = ("squid", "tinyproxy", "privoxy", "bluecoat", "zscaler", "mitmproxy")


def _http_error(ctx: _Context, error: ErrorInfo, where: str) -> Finding:
    status = error.status
    server = _header(error, "server")
    location = _header(error, "location")
    gist = _gist(error.body)
    details = [
        f"{name}: {value}"
        for name, value in (
            ("Server", server),
            ("X-Squid-Error", _header(error, "x-squid-error")),
            ("Location", location),
        )
        if value
    ]
    if gist:
        details.append(f"body {gist!r}")
    got = f"{status}" if status is not None else "an unexpected status"
    message = f"{where} answered {got}" + (f" ({'; '.join(details)})" if details else "")
    from_proxy = bool(_header(error, "x-squid-error")) or any(
        name in server.lower() for name in _PROXY_SERVERS
    )
    if ctx.result.proxy.proxy is not None and from_proxy:
        return ctx.finding("HTTP_ERROR", message + ctx.via, "from_proxy")
    if status is not None and 300 <= status < 400 and location:
        return ctx.finding("HTTP_ERROR", message, "redirect", location=location)
    if status == 404:
        return ctx.finding("HTTP_ERROR", message, "not_found")
    if status is not None and 500 <= status < 600:
        return ctx.finding("HTTP_ERROR", message, "server")
    return ctx.finding("HTTP_ERROR", message)


def _unexpected_response(ctx: _Context, error: ErrorInfo, where: str) -> Finding | None:
    kind = error.kind
    gist = _gist(error.body)
    body = f": {gist!r}" if gist else ""
    if kind == "invalid_json":
        return ctx.finding(
            "UNEXPECTED_RESPONSE", f"{where} answered something that is not JSON{body}", "portal"
        )
    if kind == "unexpected_json":
        return ctx.finding(
            "UNEXPECTED_RESPONSE",
            f"{where} answered JSON without the keys the profile expects{body}",
            "json_keys",
        )
    if kind == "json_mismatch":
        quoted = f": {_quote(error.body)!r}" if error.body else ""
        return ctx.finding(
            "UNEXPECTED_RESPONSE",
            f"{where} answered JSON that does not match the profile's pattern{quoted}",
            "json_pattern",
        )
    if kind == "invalid_http":
        return ctx.finding(
            "UNEXPECTED_RESPONSE", f"{where} answered something that is not HTTP", "not_http"
        )
    if kind in ("closed", "reset"):
        how = "closed" if kind == "closed" else "reset"
        return ctx.finding(
            "UNEXPECTED_RESPONSE",
            f"{where} {how} the connection without a complete answer{ctx.via}",
            "closed",
        )
    if kind == "invalid_body":
        return ctx.finding(
            "UNEXPECTED_RESPONSE",
            f"{where} sent a body that was cut off or malformed{ctx.via}",
            "closed",
        )
    return None


def _first_message_failure(ctx: _Context, error: ErrorInfo) -> Finding | None:
    kind = error.kind
    if kind == "rejected":
        return _subscribe_rejected(ctx, error)
    # net/ and the engine put the last message that did not match in the body.
    gist = _gist(error.body)
    if kind in ("timeout", "no_data"):
        if not gist:
            return ctx.finding(
                "NO_DATA",
                f"the subscription on {ctx.result.url} was sent, but nothing at all came back "
                "before the timeout: no acknowledgement, no message matching `data_match`",
            )
        return ctx.finding(
            "NO_DATA",
            f"the subscription on {ctx.result.url} was sent and the server answered, but no "
            f"message matching `data_match` arrived before the timeout (the last: {gist!r})",
        )
    if kind in ("closed", "reset"):
        last = f" (its last message: {gist!r})" if gist else ""
        return ctx.finding(
            "NO_DATA",
            f"the server closed {ctx.result.url} after the subscription, before any data "
            f"message{last}: it usually rejects the channel or symbol",
        )
    if kind in ("invalid_json", "invalid_frame", "invalid_encoding"):
        return ctx.finding(
            "UNEXPECTED_RESPONSE",
            f"a message on {ctx.result.url} after the subscription could not be decoded "
            f"({kind.replace('_', ' ')})",
            "ws_not_json",
        )
    return None


def _subscribe_rejected(ctx: _Context, error: ErrorInfo) -> Finding:
    answer = _quote(error.body) or "an error"
    url = ctx.result.url
    if "the welcome message" in error.message:
        return ctx.finding(
            "SUBSCRIBE_REJECTED",
            f"{url} answered with an error before its welcome message, so no subscription was "
            f"sent: {answer!r}",
            "welcome",
        )
    message = f"the exchange answered the subscription on {url} with an error: {answer!r}"
    if CLOCK_CARRIED in error.message:
        carried = error.message.split(CLOCK_CARRIED, 1)[1].strip(" :)")
        return ctx.finding(
            "SUBSCRIBE_REJECTED",
            f"{message}; the subscription carried this machine's time ({carried})"
            + _clock_gap(carried, error.body),
            "clock",
        )
    return ctx.finding("SUBSCRIBE_REJECTED", message)


def _clock_gap(carried: str, body: str) -> str:
    """``, 120 s behind the answer's own time (1796285233)`` when the answer is stamped."""
    sent = carried.split(",", 1)[0].strip()
    try:
        answer = json.loads(body)
    except ValueError:
        return ""
    stamped = answer.get("time") if isinstance(answer, dict) else None
    if not sent.isdigit() or isinstance(stamped, bool) or not isinstance(stamped, int):
        return ""
    gap = stamped - int(sent)
    if abs(gap) < 2:  # whole seconds on both sides, and the answer took a moment
        return ", about the answer's own time"
    side = "behind" if gap > 0 else "ahead of"
    return f", {abs(gap)} s {side} the answer's own time ({stamped})"


def _maintenance(ctx: _Context, error: ErrorInfo) -> Finding:
    answer = _quote(error.body) or "an answer"
    return ctx.finding(
        "EXCHANGE_MAINTENANCE",
        f"the status endpoint {ctx.result.url} answered HTTP {error.status or 200} with "
        f"{answer!r}, which is not the operational answer the profile expects: the exchange "
        f"reports maintenance or restricted trading{ctx.via}",
    )


_TIMEOUT_WHAT = {
    "tls": "the TLS handshake with {hostport} started but never finished",
    "http": "the request to {hostport} was sent but no response arrived",
    "bootstrap": "the token request (bootstrap) to {hostport} got no response",
    "ws_upgrade": "the WebSocket upgrade request to {hostport} got no answer",
    "ping_rtt": "the application ping on {url} got no answer",
}


def _timeout(ctx: _Context, phase: str) -> Finding:
    what = _TIMEOUT_WHAT.get(phase, "time ran out in phase " + phase)
    message = what.format(hostport=ctx.hostport, url=ctx.result.url) + ctx.via
    variant = "http" if phase == "bootstrap" else phase
    return ctx.finding("TIMEOUT", message, variant)


# -- warnings -----------------------------------------------------------------------------------


def _ping_unanswered(ctx: _Context) -> Finding | None:
    """PING_UNANSWERED when attempts that received data left their ping without an answer."""
    unanswered = [
        warning
        for attempt in ctx.result.attempts
        for warning in attempt.warnings
        if str(warning.phase) == "ping_rtt"
    ]
    if not unanswered:
        return None
    first = unanswered[0]
    total = len(ctx.result.attempts)
    count = f" in {len(unanswered)} of {total} attempts" if total > 1 else ""
    frame = first.kind == "frame_timeout"
    what = "the WebSocket ping frame" if frame else "the application ping (`websocket.ping`)"
    if first.kind == "rejected":
        got = f"was answered with an error: {_quote(first.body)!r}"
    elif first.kind in ("closed", "reset"):
        got = "was cut off: the connection closed before any answer"
    else:
        got = f"got no answer ({first.message})"
    return ctx.finding(
        "PING_UNANSWERED",
        f"data messages arrived on {ctx.result.url}, but {what} {got}{count}, so no ping round "
        "trip is shown",
        "frame" if frame else "default",
    )


def _clock_skew(ctx: _Context, tolerance_ms: float) -> Finding | None:
    """CLOCK_SKEW when the offset is beyond the tolerance even at the near end of its error.

    The offset comes from the profile's time field (the sample with the smallest round trip,
    NTP-style) or, without one, from the ``Date`` headers (whole seconds: the coarse one). The
    message says, in ms with the error, what the offset breaks for Binance-style signed
    requests.
    """
    clock = ctx.result.clock
    if clock is None or clock.offset_ms is None or clock.error_ms is None:
        return None
    offset, error = clock.offset_ms, clock.error_ms
    if abs(offset) - error <= tolerance_ms:
        return None
    side = "behind" if offset > 0 else "ahead of"
    whose = f"{ctx.exchange}'s" if not clock.coarse else "the server's"
    message = (
        f"this machine's clock is {abs(offset):.0f} ms {side} {whose} (offset {offset:+.0f} "
        f"±{error:.0f} ms, {_clock_evidence(clock)}; tolerance {tolerance_ms:g} ms): "
        f"{_clock_consequence(offset, error)}"
    )
    return ctx.finding("CLOCK_SKEW", message)


def _clock_evidence(clock: ClockEstimate) -> str:
    """Where the offset was read, and how many samples it is the best of."""
    usable = clock.usable_samples
    if clock.coarse:
        dates = [s.stamp for s in clock.samples if s.source == SOURCE_DATE and s.usable]
        shown = f"; Date: {dates[-1]!r}" if dates else ""
        return (
            f"from the Date header, which has whole seconds only: the coarse clock, used "
            f"because the profile reads no time field{shown}"
        )
    where = "the pong" if clock.source == SOURCE_PONG else "the REST answer"
    best = f", the shortest round trip of {usable} samples" if usable > 1 else ""
    return f"from {clock.path} in {where}{best}"


def _clock_consequence(offset: float, error: float) -> str:
    """What an offset does to a signed request at Binance (the strictest common rules)."""
    if offset < 0 and -offset - error > SIGNED_AHEAD_LIMIT_MS:
        return (
            f"signed requests are stamped more than {SIGNED_AHEAD_LIMIT_MS:.0f} ms ahead of the "
            "exchange's clock, which Binance refuses (\"Timestamp for this request was 1000ms "
            "ahead of the server's time\", -1021)"
        )
    if offset > 0 and offset - error > DEFAULT_RECV_WINDOW_MS:
        return (
            f"signed requests arrive more than the default recvWindow of "
            f'{DEFAULT_RECV_WINDOW_MS:.0f} ms after their stamp and are refused ("Timestamp for '
            'this request is outside of the recvWindow", -1021)'
        )
    if offset < 0:
        return (
            f"signed requests still pass Binance's {SIGNED_AHEAD_LIMIT_MS:.0f} ms limit ahead of "
            "its clock, with that much less room for it"
        )
    return (
        f"signed requests use up this much of Binance's default recvWindow of "
        f"{DEFAULT_RECV_WINDOW_MS:.0f} ms before they leave; a tighter recvWindow fails"
    )


#: A loop stall at least this share of the median lag could explain the lag: the consumer.
SLOW_CONSUMER_SHARE = 0.5


def _feed_lagging(ctx: _Context, tolerance_ms: float) -> Finding | None:
    """FEED_LAGGING when the feed's median lag (less the offset's error) exceeds the tolerance.

    The hint tells apart, as far as the evidence goes: a slow consumer (the event loop stalled
    for a good part of the lag while the feed was read), a buffering proxy (proxied, and the
    lag grew over the window), an uncorrected figure (no offset measured), the exchange.
    """
    feed = ctx.result.feed
    if feed is None or feed.lag_ms is None:
        return None
    p50 = feed.lag_ms.p50
    error = feed.error_ms or 0.0
    if p50 - error <= tolerance_ms:
        return None
    if feed.corrected:
        how = f"corrected by the clock offset ±{error:.0f} ms measured in this run"
    else:
        how = "uncorrected: no clock offset measured for this exchange in this run"
    window = (
        f"{feed.messages} messages over {feed.duration_s:.1f} s"
        if feed.duration_s
        else f"{feed.messages} message(s)"
    )
    message = (
        f"market data on {ctx.result.url} arrived a median {p50:.0f} ms after the exchange "
        f"stamped it (p95 {feed.lag_ms.p95:.0f}, max {feed.lag_ms.max:.0f} ms; {window}; "
        f"{how}; tolerance {tolerance_ms:g} ms)"
    )
    stalled = feed.loop_lag_ms
    growth = feed.growth_ms
    if stalled is not None and stalled >= SLOW_CONSUMER_SHARE * p50:
        variant = "consumer"
        message += f"; the event loop stalled for up to {stalled:.0f} ms while it was read"
    elif ctx.result.proxy.proxy is not None and growth is not None and growth > LAG_GROWTH_MS:
        variant = "proxy"
        message += f"; the lag grew by {growth:.0f} ms over the window, through a proxy"
    elif not feed.corrected:
        variant = "uncorrected"
    else:
        variant = "default"
        if growth is not None:
            message += f"; the lag held at that over the window ({round(growth):+d} ms)"
    return ctx.finding("FEED_LAGGING", message, variant)


def _cert_expiring(ctx: _Context, now: float | None) -> Finding | None:
    tls = ctx.result.tls
    if tls is None:
        return None
    days = tls.cert_days_left
    if days is None and now is not None and tls.cert_not_after:
        days = _days_until(tls.cert_not_after, now)
    if days is None or days > CERT_EXPIRY_WARNING_DAYS:
        return None
    issuer = tls.cert_issuer
    by = f" (issuer {issuer!r})" if issuer else ""
    when = (
        f"expires in {days} day{'s' if days != 1 else ''}"
        if days >= 0
        else f"expired {-days} day{'s' if days != -1 else ''} ago (accepted because "
        "verification is off)"
    )
    not_after = tls.cert_not_after or "its expiry"
    # A private issuer in a bundle the user named is their own CA, not an inspecting proxy.
    own_bundle = ctx.result.ssl.verify and ctx.result.ssl.ca_kind in ("file", "dir")
    inspected = issuer and not looks_public_ca(issuer) and not own_bundle
    variant = "inspection" if inspected else "default"
    return ctx.finding(
        "CERT_EXPIRING",
        f"the certificate of {ctx.host}{by} {when}"
        + (f", not after {tls.cert_not_after}" if tls.cert_not_after else ""),
        variant,
        not_after=not_after,
    )


def _days_until(not_after: str, now: float) -> int | None:
    try:
        moment = datetime.fromisoformat(not_after.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int((moment.timestamp() - now) // 86400)


_INSECURE_SETTING = {
    "cli": "`--insecure`",
    "exchange": "`ssl.verify: false` from `exchanges.{exchange}` (or the profile's `network.ssl`)",
    "service": "`ssl.verify: false` from the config file",
}


def _insecure_tls(ctx: _Context) -> Finding | None:
    ssl = ctx.result.ssl
    if ssl.verify:
        return None
    reason = f": {ssl.reason}" if ssl.reason else ""
    setting = _INSECURE_SETTING.get(ssl.layer, f"the {ssl.layer} layer's setting").format(
        exchange=ctx.exchange
    )
    return ctx.finding(
        "INSECURE_TLS",
        f"certificates are not verified for {ctx.result.url}; the {ssl.layer} layer turned "
        f"verification off{reason}",
        setting=setting,
    )


# -- across results -----------------------------------------------------------------------------


def _path_key(decision: ProxyDecision) -> tuple[str, str]:
    return (decision.proxy.redacted() if decision.proxy else "direct", decision.layer)


def _path_divergence(
    results: Sequence[ProbeResult], secrets: tuple[str, ...]
) -> list[tuple[int, Finding]]:
    """PATH_DIVERGENCE on every result of an exchange whose results leave by different paths.
    Routes asked for (``--via``) differ on purpose: each route's results are compared apart."""
    by_exchange: dict[tuple[str, str | None], list[int]] = {}
    for index, result in enumerate(results):
        by_exchange.setdefault((result.exchange, result.route), []).append(index)
    out: list[tuple[int, Finding]] = []
    for (exchange, _route), indexes in by_exchange.items():
        paths: dict[tuple[str, str], int] = {}
        for index in indexes:
            paths.setdefault(_path_key(results[index].proxy), index)
        if len(paths) < 2:
            continue
        described = [_describe_path(results[index]) for index in paths.values()]
        message = " but ".join(described)
        involved = [results[index] for index in indexes]
        variant = "env" if any(r.proxy.layer == "env" for r in involved) else "default"
        finding = _make_finding(
            "PATH_DIVERGENCE", message, variant, {"exchange": exchange}, secrets
        )
        out.extend((index, finding) for index in indexes)
    return out


def _describe_path(result: ProbeResult) -> str:
    label = _TARGET_LABEL.get(result.target, result.target)
    decision = result.proxy
    if decision.proxy is None:
        how = "goes direct"
        why = f"{decision.layer}"
        if decision.no_proxy_match:
            why += f", no_proxy entry {decision.no_proxy_match!r}"
        elif decision.source:
            why += f" {decision.source}"
    else:
        how = f"goes via {decision.proxy.redacted()}"
        why = proxy_origin(decision).removeprefix("the ")
    return f"{label} ({result.url}) {how} ({why})"


#: Phases that carry the first request bytes over an established tunnel, per target.
_STALL_PHASES = {"rest": ("http",), "ws": ("ws_upgrade", "first_message")}
#: The earlier round trips over the same path, best first: fast ones prove the path is short.
_PATH_PHASES = ("tls", "proxy", "tcp")


def _phase_values(result: ProbeResult, phase: str) -> list[tuple[Attempt, float]]:
    """Each attempt's time in ``phase``, for the attempts that completed it."""
    values = []
    for attempt in result.attempts:
        value = attempt.phases.get(phase)
        failed_here = attempt.error is not None and str(attempt.error.phase) == phase
        if value is not None and not failed_here:
            values.append((attempt, float(value)))
    return values


def _stalled(value: float) -> bool:
    return STALL_WINDOW_MS[0] <= value <= STALL_WINDOW_MS[1]


def _proxy_write_stalls(
    results: Sequence[ProbeResult], secrets: tuple[str, ...]
) -> list[tuple[int, Finding]]:
    """PROXY_WRITE_STALL on proxied results whose request phase stalls near 40 ms.

    Nagle's algorithm in a relay that lacks TCP_NODELAY holds a small write until the previous
    segment is acknowledged, and the peer delays that ACK by its timer (40 ms on Linux). The
    signature, in figures: the phase takes 35-50 ms in some attempts and a few ms in the others,
    or in every attempt while the direct path (and the TLS round trips over the proxy) take a
    few ms. Any attempt in between, or a path that is slow throughout, rules it out.
    """
    out: list[tuple[int, Finding]] = []
    for index, result in enumerate(results):
        decision = result.proxy
        if decision.proxy is None:
            continue
        for phase in _STALL_PHASES.get(result.target, ()):
            evidence = _stall_evidence(result, phase, results)
            if evidence is None:
                continue
            ctx = _Context.of(result, secrets)
            message = (
                f"{evidence}: a stall near 40 ms is the delayed-ACK timer meeting Nagle's "
                "algorithm in the proxy, not the network's distance"
            )
            out.append((index, ctx.finding("PROXY_WRITE_STALL", message)))
            break
    return out


def _stall_evidence(result: ProbeResult, phase: str, results: Sequence[ProbeResult]) -> str | None:
    """The figures that show a write stall in ``phase`` of a proxied result, or None."""
    measured = _phase_values(result, phase)
    stalled = [v for _, v in measured if _stalled(v)]
    fast = [v for _, v in measured if v <= UNSTALLED_MAX_MS]
    other = [v for _, v in measured if not _stalled(v) and v > UNSTALLED_MAX_MS]
    # One attempt in ten may stray (the first one's cold start, a scheduling hiccup); more
    # times in between mean jitter or distance, not a timer.
    if not stalled or len(other) > len(measured) // 10:
        return None
    proxy = result.proxy.proxy
    assert proxy is not None
    through = f"through the proxy {proxy.redacted()} (chosen by {proxy_origin(result.proxy)})"
    took = (
        f"{len(stalled)} of {len(measured)} attempts took {_ms_span(stalled)} in {phase} {through}"
    )
    if fast:
        strays = f", and {len(other)} took {_ms_span(other)}" if other else ""
        return f"{took}, the other {len(fast)} {_ms_span(fast)}{strays}"
    strays = f" ({len(other)} more took {_ms_span(other)})" if other else ""
    # Every attempt stalled: only a fast direct path, and fast round trips over this same
    # proxy, tell a timer from a proxy that is 40 ms away or a server that thinks for 40 ms.
    direct = [
        v
        for other_result in results
        if other_result.proxy.proxy is None
        and other_result.exchange == result.exchange
        and other_result.target == result.target
        for _, v in _phase_values(other_result, phase)
    ]
    if not direct or _median(direct) > UNSTALLED_MAX_MS:
        return None
    for path_phase in _PATH_PHASES:
        path = [v for attempt, _ in measured if (v := attempt.phases.get(path_phase)) is not None]
        if path:
            break
    else:
        return None
    if _median(path) > UNSTALLED_MAX_MS:
        return None
    return (
        f"{took}{strays}, while {path_phase} over the same proxy took {_median_of(path)} and "
        f"{phase} on the direct path {_median_of(direct)}"
    )


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def _median_of(values: Sequence[float]) -> str:
    """``0.5 ms`` for one value, ``median 2.9 ms (1.8-48 ms)`` for several."""
    if len(values) == 1 or "-" not in _ms_span(values):
        return _ms_span(values)
    return f"median {_ms_span([_median(values)])} ({_ms_span(values)})"


def _ms_span(values: Sequence[float]) -> str:
    """``41-44 ms``, ``0.4-0.6 ms`` or ``42 ms``: the range of some phase times."""

    def shown(value: float) -> str:
        return f"{value:.1f}" if value < UNSTALLED_MAX_MS else f"{value:.0f}"

    low, high = shown(min(values)), shown(max(values))
    return f"{low} ms" if low == high else f"{low}-{high} ms"


# -- text helpers -------------------------------------------------------------------------------


def _quote(body: str, limit: int = 300) -> str:
    """An exchange's answer as one line, shortened: quoted in full when it is short."""
    text = " ".join(body.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _header(error: ErrorInfo, name: str) -> str:
    """A response header, matched case-insensitively; empty when absent."""
    try:
        items = list(error.headers.items())
    except AttributeError:
        return ""
    for key, value in items:
        if str(key).lower() == name:
            return str(value)
    return ""


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def _gist(body: str, limit: int = 120) -> str:
    """What a person would read first on a page: its title, else its text, shortened."""
    if not body:
        return ""
    title = _TITLE.search(body)
    text = title.group(1) if title else _TAG.sub(" ", body)
    text = " ".join(html.unescape(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _excerpt(body: str, marker: str, width: int = 60) -> str:
    """The text around ``marker`` in ``body`` (case-insensitive), tags stripped."""
    text = " ".join(html.unescape(_TAG.sub(" ", body)).split())
    at = text.lower().find(marker.lower())
    if at < 0:
        return _gist(body)
    start, end = max(0, at - width), min(len(text), at + len(marker) + width)
    # Cut at word boundaries, so the excerpt starts and ends with whole words.
    if start:
        space = text.find(" ", start, at)
        start = space + 1 if space >= 0 else start
    if end < len(text):
        space = text.rfind(" ", at + len(marker), end)
        end = space if space >= 0 else end
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")
