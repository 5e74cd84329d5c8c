"""Failure rules: why one failed attempt failed, phase by phase (:func:`_explain`)."""

from __future__ import annotations

import json
import re

from mpnet.core.diagnose.context import _Context, _trust_store, proxy_origin, s_client_command
from mpnet.core.diagnose.sniff import (
    _CDN_REFERENCE,
    _cdn,
    _excerpt,
    _gist,
    _header,
    _page_reason,
    _quote,
    looks_public_ca,
)
from mpnet.core.proxy import ProxyDecision
from mpnet.core.result import Attempt, ErrorInfo, Finding

#: The probe engine notes this in a rejection's message when the subscription carried the local
#: clock (Gate's ``time``): the rejection may then be about the clock.
CLOCK_CARRIED = "the subscription carried this machine's clock"


_LOCAL_DNS_SCHEMES = ("socks4", "socks5")


_STATUS_PHASES = ("http", "ws_upgrade", "bootstrap")


_PROXY_HANDSHAKE_KINDS = (
    "proxy_auth",
    "proxy_denied",
    "proxy_upstream",
    "proxy_closed",
    "proxy_protocol",
)
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
    if kind in ("proxy_denied", "proxy_upstream"):
        code = error.status or _status_in(error.message)
        if kind == "proxy_upstream" or _upstream_failure(error, code):
            return _proxy_upstream(ctx, error, "the tunnel request to", code)
        status = f" (status {code})" if code else ""
        said = _proxy_said(error)
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


#: Squid's error names (X-Squid-Error) that mean it could not reach the target, in words.
_SQUID_UPSTREAM = {
    "ERR_CONNECT_FAIL": "its connection to the target failed",
    "ERR_DNS_FAIL": "it could not resolve the target's name",
    "ERR_READ_TIMEOUT": "the target did not answer it in time",
    "ERR_LIFETIME_EXP": "the target did not answer it in time",
    "ERR_GATEWAY_FAILURE": "its next hop failed",
    "ERR_CANNOT_FORWARD": "it could not forward the request (no route to the target)",
    "ERR_READ_ERROR": "the target closed the connection on it",
    "ERR_ZERO_SIZE_OBJECT": "the target answered it nothing",
}
#: The errno Squid appends (``ERR_CONNECT_FAIL 111``), as Linux names it.
_ERRNO_WORDS = {
    "101": "network unreachable",
    "104": "connection reset",
    "110": "connection timed out",
    "111": "connection refused",
    "113": "no route to host",
}
_UPSTREAM_STATUSES = (502, 503, 504)


def _squid_error(error: ErrorInfo) -> tuple[str, str]:
    """``("ERR_CONNECT_FAIL", "111")`` from X-Squid-Error, or empty strings."""
    name, _, number = _header(error, "x-squid-error").strip().partition(" ")
    return name.upper(), number.strip()


def _upstream_failure(error: ErrorInfo, status: int | None) -> bool:
    """Whether a proxy's answer says it could not reach the target (not that it refused)."""
    name, _ = _squid_error(error)
    if name:
        return name in _SQUID_UPSTREAM
    return status in _UPSTREAM_STATUSES


def _from_proxy(error: ErrorInfo) -> bool:
    """Whether an HTTP answer was written by a known proxy rather than the server behind it."""
    server = _header(error, "server").lower()
    return bool(_header(error, "x-squid-error")) or any(n in server for n in _PROXY_SERVERS)


def _proxy_upstream(ctx: _Context, error: ErrorInfo, asked: str, status: int | None) -> Finding:
    """PROXY_UPSTREAM: the proxy answered for a target it could not reach, with its reason."""
    decision = ctx.result.proxy
    name = decision.proxy.redacted() if decision.proxy else "the proxy"
    details: list[str] = []
    squid, number = _squid_error(error)
    if squid in _SQUID_UPSTREAM:
        why = _SQUID_UPSTREAM[squid]
        errno_words = _ERRNO_WORDS.get(number)
        details.append(f"{why}: {errno_words}" if errno_words else why)
    details += [
        f"{n}: {v}" for n in ("Server", "X-Squid-Error") if (v := _header(error, n.lower()))
    ]
    gist, reason = _gist(error.body), _page_reason(error.body)
    if reason and not squid:
        # mitmproxy and others put the reason under the heading (``<p>Connection refused</p>``).
        details.append(f"page {gist!r}: {reason!r}" if gist and gist != reason else repr(reason))
    elif gist:
        details.append(f"page {gist!r}")
    answered = f" with {status}" if status else ""
    return ctx.finding(
        "PROXY_UPSTREAM",
        f"the proxy {name} (chosen by {proxy_origin(decision)}) could not reach "
        f"{ctx.hostport}: it answered {asked} {ctx.host}{answered} itself"
        + (f" ({'; '.join(details)})" if details else ""),
    )


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
        peer_fields: dict[str, object] = {
            "host": proxy.host,
            "port": proxy.port,
            # The proxy's own certificate is fetched from the proxy itself, directly.
            "s_client": s_client_command(proxy.host, proxy.port, None),
        }
    else:
        peer_host, peer = ctx.host, f"{ctx.hostport}{ctx.via}"
        cert = f"the certificate for {peer}"
        peer_fields = {}

    def finding(code: str, message: str, variant: str = "default") -> Finding:
        return ctx.finding(code, message, variant, **peer_fields)

    if kind == "untrusted" and of_proxy and proxy is not None:
        # The proxy's own CA: --proxy-ca-bundle, apart from the exchanges' store.
        store = ctx.result.ssl.proxy_store()
        message = f"{cert}{by} chains to no CA in {store}"
        return finding("TLS_UNTRUSTED", message, "proxy")
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
    if ctx.result.proxy.proxy is not None and _from_proxy(error):
        # The proxy wrote this answer (Squid to an absolute-form request, mitmproxy after its
        # CONNECT): a 502/503/504 says it could not reach the exchange, as for CONNECT.
        if status is not None and _upstream_failure(error, status):
            return _proxy_upstream(ctx, error, _ASKED.get(phase, "the request to"), status)
        if phase == "ws_upgrade" and status not in (401, 407):
            return _ws_rejected(ctx, error, from_proxy=True)
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


_ASKED = {
    "http": "the REST request to",
    "ws_upgrade": "the WebSocket upgrade to",
    "bootstrap": "the token request to",
}


def _ws_rejected(ctx: _Context, error: ErrorInfo, *, from_proxy: bool = False) -> Finding:
    status = error.status
    location = _header(error, "location")
    gist = _gist(error.body)
    body = f"; body {gist!r}" if gist else ""
    got = f"HTTP {status}" if status is not None else "an answer"
    moved = f" (Location: {location})" if location else ""
    message = f"the upgrade of {ctx.result.url} got {got}{moved} instead of 101{body}{ctx.via}"
    if from_proxy:
        said = "; ".join(
            f"{n}: {v}" for n in ("Server", "X-Squid-Error") if (v := _header(error, n.lower()))
        )
        return ctx.finding(
            "WS_UPGRADE_REJECTED",
            f"{message}: the proxy answered, not the exchange ({said})",
            "from_proxy",
        )
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
    if ctx.result.proxy.proxy is not None and _from_proxy(error):
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
    template = _TIMEOUT_WHAT.get(phase)
    # Only the templates are formatted: a phase read from a report may hold any text ("{").
    what = (
        template.format(hostport=ctx.hostport, url=ctx.result.url)
        if template is not None
        else "time ran out in phase " + phase
    )
    message = what + ctx.via
    variant = "http" if phase == "bootstrap" else phase
    return ctx.finding("TIMEOUT", message, variant)
