"""Warning rules: what a healthy-looking result still tells (clock skew, feed lag, a
certificate about to expire, verification off, an unanswered ping, a connection re-signed by an
inspecting proxy), and across results (REST and WebSocket leaving by different paths, a proxy's
write stalls).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime
from statistics import median as _median

from mpnet.core.clock import (
    LAG_GROWTH_MS,
    SOURCE_DATE,
    SOURCE_PONG,
    ClockEstimate,
)
from mpnet.core.diagnose.context import (
    _TARGET_LABEL,
    _Context,
    _make_finding,
    _trust_store,
    proxy_origin,
)
from mpnet.core.diagnose.sniff import _quote, looks_public_ca
from mpnet.core.proxy import ProxyDecision
from mpnet.core.result import Attempt, Finding, ProbeResult

#: A certificate with this many days left or fewer gets CERT_EXPIRING.
CERT_EXPIRY_WARNING_DAYS = 14
#: Binance's limits on a signed request's timestamp (its docs, "Timing security"): refused when
#: stamped more than 1000 ms ahead of its clock ("Timestamp for this request was 1000ms ahead of
#: the server's time", -1021), or when it arrives later than recvWindow (default 5000 ms) after
#: its stamp ("Timestamp for this request is outside of the recvWindow", -1021).
SIGNED_AHEAD_LIMIT_MS = 1000.0
DEFAULT_RECV_WINDOW_MS = 5000.0
#: A phase this long, on a path whose other round trips take a few ms, is a delayed ACK met by
#: Nagle's algorithm: Linux's minimum delayed-ACK timer is 40 ms.
STALL_WINDOW_MS = (35.0, 50.0)
#: A phase at most this long went through without a stall ("a few ms or less").
UNSTALLED_MAX_MS = 10.0


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


#: Names that are not public DNS names: a private CA there is its owner's own, not an inspecting
#: proxy (RFC 6761's localhost, test and invalid, RFC 6762's local, RFC 8375's home.arpa,
#: ICANN's internal, and the lan / corp suffixes of home and office networks).
PRIVATE_NAME_SUFFIXES = (
    "localhost",
    "local",
    "internal",
    "home.arpa",
    "lan",
    "corp",
    "test",
    "invalid",
)


def is_public_name(host: str) -> bool:
    """True for a DNS name a public CA could certify: not an IP literal, not a single label
    (``localhost``, a LAN host) and not under :data:`PRIVATE_NAME_SUFFIXES`."""
    name = host.strip("[]").rstrip(".").lower()
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        pass
    else:
        return False
    if "." not in name:
        return False
    return not any(
        name == suffix or name.endswith("." + suffix) for suffix in PRIVATE_NAME_SUFFIXES
    )


def _tls_intercepted(ctx: _Context) -> Finding | None:
    """TLS_INTERCEPTED (info) when a public name answered with a certificate no public CA issued.

    An exchange's public name is certified by a public CA; a private issuer there means a
    TLS-inspecting proxy or firewall (mitmproxy, Zscaler, a FortiGate) re-signed the connection.
    Reported even when it verified: a user who added the inspection CA to their bundle (or the
    system store) made it verify, but the proxy still reads and can hold every request.
    """
    tls = ctx.result.tls
    if tls is None or not tls.cert_issuer:
        return None
    issuer = tls.cert_issuer
    if looks_public_ca(issuer) or not is_public_name(ctx.host):
        return None
    ssl = ctx.result.ssl
    if ssl.verify:
        accepted = f"it verified because {_trust_store(ctx)} trusts that CA"
    else:
        accepted = f"it was accepted unchecked: the {ssl.layer} layer turned verification off"
    return ctx.finding(
        "TLS_INTERCEPTED",
        f"the certificate for {ctx.hostport}{ctx.via} is issued by {issuer!r}, which is not a "
        f"public CA, though {ctx.host} is a public name: a TLS-inspecting proxy or firewall "
        f"decrypts and re-signs this connection; {accepted}",
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
    template = _INSECURE_SETTING.get(ssl.layer)
    # Only the templates are formatted: a layer read from a report may hold any text ("{").
    setting = (
        template.format(exchange=ctx.exchange)
        if template is not None
        else f"the {ssl.layer} layer's setting"
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
