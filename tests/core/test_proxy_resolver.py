"""resolve_proxy: precedence, environment rules, no_proxy at each layer, and the trace."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from mpnet.core.proxy import ServiceProxy, parse_target, resolve_proxy
from mpnet.core.proxy_url import DIRECT, ProxyChoice, parse_proxy_url
from mpnet.errors import InvalidProxyURL, UsageError

CLI = parse_proxy_url("http://cli-proxy:3128")
EXCH = parse_proxy_url("socks5h://exch-proxy:1080")
SVC_HTTPS = parse_proxy_url("http://svc:secret@svc-https:3128")
SVC_HTTP = parse_proxy_url("http://svc-http:3128")
SVC_SOCKS = parse_proxy_url("socks5://svc-socks:1080")
SVC_ALL = parse_proxy_url("http://svc-all:8080")
E = "http://env-https:3128"
H = "http://env-http:3128"
A = "socks5h://env-all:1080"


@dataclass(frozen=True)
class Case:
    name: str
    url: str
    expect_proxy: str | None  # redacted URL, None for direct
    expect_layer: str
    expect_source: str | None
    verdicts: tuple[str, str, str, str, str]  # cli, exchange, service, env, default
    cli: ProxyChoice = None
    exchange: ProxyChoice = None
    service: ServiceProxy | None = None
    env: dict[str, str] = field(default_factory=dict)
    no_proxy_match: str | None = None


U, W, S, B, D, IGN = "unset", "won", "shadowed", "bypassed by no_proxy", "direct", "ignored"

CASES = [
    # -- precedence
    Case("nothing set", "https://x.com", None, "default", None, (U, U, U, U, W)),
    Case(
        "cli wins over all",
        "https://x.com",
        CLI.redacted(),
        "cli",
        "--proxy",
        (W, S, S, S, S),
        cli=CLI,
        exchange=EXCH,
        service=ServiceProxy(https=SVC_HTTPS),
        env={"HTTPS_PROXY": E},
    ),
    Case(
        "cli --no-proxy forces direct",
        "https://x.com",
        None,
        "cli",
        "--no-proxy",
        (D, S, S, S, S),
        cli=DIRECT,
        exchange=EXCH,
        service=ServiceProxy(https=SVC_HTTPS),
        env={"HTTPS_PROXY": E},
    ),
    Case(
        "exchange wins over service and env",
        "wss://x.com/ws",
        EXCH.redacted(),
        "exchange",
        "exchanges.deribit.proxy.ws",
        (U, W, S, S, S),
        exchange=EXCH,
        service=ServiceProxy(https=SVC_HTTPS),
        env={"https_proxy": E},
    ),
    Case(
        "exchange direct",
        "https://x.com",
        None,
        "exchange",
        "exchanges.deribit.proxy.ws",
        (U, D, U, S, S),
        exchange=DIRECT,
        env={"HTTPS_PROXY": E},
    ),
    Case(
        "service https for https",
        "https://x.com",
        SVC_HTTPS.redacted(),
        "service",
        "proxy.https",
        (U, U, W, S, S),
        service=ServiceProxy(https=SVC_HTTPS, http=SVC_HTTP),
        env={"HTTPS_PROXY": E},
    ),
    Case(
        "service https for wss",
        "wss://x.com",
        SVC_HTTPS.redacted(),
        "service",
        "proxy.https",
        (U, U, W, U, S),
        service=ServiceProxy(https=SVC_HTTPS, http=SVC_HTTP),
    ),
    Case(
        "service http for http",
        "http://x.com",
        SVC_HTTP.redacted(),
        "service",
        "proxy.http",
        (U, U, W, U, S),
        service=ServiceProxy(https=SVC_HTTPS, http=SVC_HTTP),
    ),
    Case(
        "service http for ws",
        "ws://x.com",
        SVC_HTTP.redacted(),
        "service",
        "proxy.http",
        (U, U, W, U, S),
        service=ServiceProxy(https=SVC_HTTPS, http=SVC_HTTP),
    ),
    Case(
        "service socks fallback",
        "https://x.com",
        SVC_SOCKS.redacted(),
        "service",
        "proxy.socks",
        (U, U, W, U, S),
        service=ServiceProxy(http=SVC_HTTP, socks=SVC_SOCKS, all=SVC_ALL),
    ),
    Case(
        "service all fallback",
        "ws://x.com",
        SVC_ALL.redacted(),
        "service",
        "proxy.all",
        (U, U, W, U, S),
        service=ServiceProxy(https=SVC_HTTPS, all=SVC_ALL),
    ),
    Case(
        "service without a key for the scheme",
        "http://x.com",
        None,
        "default",
        None,
        (U, U, U, U, W),
        service=ServiceProxy(https=SVC_HTTPS),
    ),
    Case(
        "service no_proxy bypasses service only, env wins",
        "https://db.internal",
        E,
        "env",
        "HTTPS_PROXY",
        (U, U, B, W, S),
        service=ServiceProxy(https=SVC_HTTPS, no_proxy=".internal"),
        env={"HTTPS_PROXY": E},
    ),
    Case(
        "service no_proxy then nothing",
        "https://db.internal",
        None,
        "service",
        "proxy.no_proxy",
        (U, U, B, U, W),
        service=ServiceProxy(https=SVC_HTTPS, no_proxy="localhost,.internal"),
        no_proxy_match=".internal",
    ),
    Case(
        "service no_proxy then env no_proxy",
        "https://db.internal",
        None,
        "env",
        "NO_PROXY",
        (U, U, B, B, W),
        service=ServiceProxy(https=SVC_HTTPS, no_proxy=".internal"),
        env={"HTTPS_PROXY": E, "NO_PROXY": "db.internal"},
        no_proxy_match="db.internal",
    ),
    Case(
        "env no_proxy does not touch service",
        "https://db.internal",
        SVC_HTTPS.redacted(),
        "service",
        "proxy.https",
        (U, U, W, S, S),
        service=ServiceProxy(https=SVC_HTTPS),
        env={"HTTPS_PROXY": E, "NO_PROXY": ".internal"},
    ),
    Case(
        "cli ignores every no_proxy",
        "https://db.internal",
        CLI.redacted(),
        "cli",
        "--proxy",
        (W, U, S, S, S),
        cli=CLI,
        service=ServiceProxy(https=SVC_HTTPS, no_proxy="*"),
        env={"HTTPS_PROXY": E, "NO_PROXY": "*"},
    ),
    # -- environment: variable choice and case rules
    Case(
        "HTTPS_PROXY for https",
        "https://x.com",
        E,
        "env",
        "HTTPS_PROXY",
        (U, U, U, W, S),
        env={"HTTPS_PROXY": E},
    ),
    Case(
        "https_proxy for wss",
        "wss://x.com",
        E,
        "env",
        "https_proxy",
        (U, U, U, W, S),
        env={"https_proxy": E},
    ),
    Case(
        "http_proxy for http",
        "http://x.com",
        H,
        "env",
        "http_proxy",
        (U, U, U, W, S),
        env={"http_proxy": H, "https_proxy": E},
    ),
    Case(
        "HTTP_PROXY for ws",
        "ws://x.com",
        H,
        "env",
        "HTTP_PROXY",
        (U, U, U, W, S),
        env={"HTTP_PROXY": H, "HTTPS_PROXY": E},
    ),
    Case(
        "https target ignores http_proxy",
        "https://x.com",
        None,
        "default",
        None,
        (U, U, U, U, W),
        env={"http_proxy": H},
    ),
    Case(
        "lower case wins",
        "https://x.com",
        "http://lower:1",
        "env",
        "https_proxy",
        (U, U, U, W, S),
        env={"HTTPS_PROXY": E, "https_proxy": "http://lower:1"},
    ),
    Case(
        "empty lower case disables upper",
        "https://x.com",
        None,
        "default",
        None,
        (U, U, U, U, W),
        env={"https_proxy": "", "HTTPS_PROXY": E},
    ),
    Case(
        "empty lower case, all_proxy still applies",
        "https://x.com",
        A,
        "env",
        "all_proxy",
        (U, U, U, W, S),
        env={"https_proxy": "", "HTTPS_PROXY": E, "all_proxy": A},
    ),
    Case(
        "empty upper case is unset",
        "https://x.com",
        A,
        "env",
        "ALL_PROXY",
        (U, U, U, W, S),
        env={"HTTPS_PROXY": "", "ALL_PROXY": A},
    ),
    Case(
        "ALL_PROXY fallback for http",
        "http://x.com",
        A,
        "env",
        "ALL_PROXY",
        (U, U, U, W, S),
        env={"ALL_PROXY": A},
    ),
    Case(
        "all_proxy loses to https_proxy",
        "https://x.com",
        E,
        "env",
        "https_proxy",
        (U, U, U, W, S),
        env={"all_proxy": A, "https_proxy": E},
    ),
    Case(
        "REQUEST_METHOD drops HTTP_PROXY",
        "http://x.com",
        None,
        "default",
        None,
        (U, U, U, IGN, W),
        env={"HTTP_PROXY": H, "REQUEST_METHOD": "GET"},
    ),
    Case(
        "REQUEST_METHOD keeps http_proxy",
        "http://x.com",
        H,
        "env",
        "http_proxy",
        (U, U, U, W, S),
        env={"http_proxy": H, "REQUEST_METHOD": "GET"},
    ),
    Case(
        "REQUEST_METHOD keeps HTTPS_PROXY",
        "https://x.com",
        E,
        "env",
        "HTTPS_PROXY",
        (U, U, U, W, S),
        env={"HTTPS_PROXY": E, "REQUEST_METHOD": "POST"},
    ),
    Case(
        "REQUEST_METHOD, ALL_PROXY after dropped HTTP_PROXY",
        "ws://x.com",
        A,
        "env",
        "ALL_PROXY",
        (U, U, U, W, S),
        env={"HTTP_PROXY": H, "ALL_PROXY": A, "REQUEST_METHOD": "GET"},
    ),
    # -- environment no_proxy forms
    Case(
        "NO_PROXY domain with dot",
        "https://a.internal",
        None,
        "env",
        "NO_PROXY",
        (U, U, U, B, W),
        env={"HTTPS_PROXY": E, "NO_PROXY": ".internal"},
        no_proxy_match=".internal",
    ),
    Case(
        "NO_PROXY bare domain matches itself",
        "https://internal",
        None,
        "env",
        "NO_PROXY",
        (U, U, U, B, W),
        env={"HTTPS_PROXY": E, "NO_PROXY": "internal"},
        no_proxy_match="internal",
    ),
    Case(
        "no_proxy label boundary",
        "https://notinternal",
        E,
        "env",
        "HTTPS_PROXY",
        (U, U, U, W, S),
        env={"HTTPS_PROXY": E, "no_proxy": "internal"},
    ),
    Case(
        "no_proxy lower wins",
        "https://a.internal",
        E,
        "env",
        "HTTPS_PROXY",
        (U, U, U, W, S),
        env={"HTTPS_PROXY": E, "no_proxy": "other", "NO_PROXY": ".internal"},
    ),
    Case(
        "empty no_proxy disables NO_PROXY",
        "https://a.internal",
        E,
        "env",
        "HTTPS_PROXY",
        (U, U, U, W, S),
        env={"HTTPS_PROXY": E, "no_proxy": "", "NO_PROXY": ".internal"},
    ),
    Case(
        "no_proxy star",
        "https://x.com",
        None,
        "env",
        "no_proxy",
        (U, U, U, B, W),
        env={"https_proxy": E, "no_proxy": "*"},
        no_proxy_match="*",
    ),
    Case(
        "no_proxy IPv4 CIDR",
        "http://10.2.3.4:8080/x",
        None,
        "env",
        "NO_PROXY",
        (U, U, U, B, W),
        env={"HTTP_PROXY": H, "NO_PROXY": "10.0.0.0/8"},
        no_proxy_match="10.0.0.0/8",
    ),
    Case(
        "no_proxy CIDR miss",
        "http://11.2.3.4/x",
        H,
        "env",
        "HTTP_PROXY",
        (U, U, U, W, S),
        env={"HTTP_PROXY": H, "NO_PROXY": "10.0.0.0/8"},
    ),
    Case(
        "no_proxy IPv6 literal, bracketed target",
        "https://[::1]:8443/",
        None,
        "env",
        "NO_PROXY",
        (U, U, U, B, W),
        env={"HTTPS_PROXY": E, "NO_PROXY": "::1"},
        no_proxy_match="::1",
    ),
    Case(
        "no_proxy IPv6 CIDR",
        "wss://[fd00::5]/ws",
        None,
        "env",
        "NO_PROXY",
        (U, U, U, B, W),
        env={"HTTPS_PROXY": E, "NO_PROXY": "fd00::/8"},
        no_proxy_match="fd00::/8",
    ),
    Case(
        "localhost does not cover 127.0.0.1",
        "https://127.0.0.1/",
        E,
        "env",
        "HTTPS_PROXY",
        (U, U, U, W, S),
        env={"HTTPS_PROXY": E, "NO_PROXY": "localhost"},
    ),
    Case(
        "no_proxy port: default port of https",
        "https://x.com/",
        None,
        "env",
        "NO_PROXY",
        (U, U, U, B, W),
        env={"HTTPS_PROXY": E, "NO_PROXY": "x.com:443"},
        no_proxy_match="x.com:443",
    ),
    Case(
        "no_proxy port: default port of ws",
        "ws://x.com/",
        None,
        "env",
        "NO_PROXY",
        (U, U, U, B, W),
        env={"HTTP_PROXY": H, "NO_PROXY": "x.com:80"},
        no_proxy_match="x.com:80",
    ),
    Case(
        "no_proxy port: explicit port differs",
        "https://x.com:8443/",
        E,
        "env",
        "HTTPS_PROXY",
        (U, U, U, W, S),
        env={"HTTPS_PROXY": E, "NO_PROXY": "x.com:443"},
    ),
    Case(
        "no_proxy port: explicit port equal",
        "https://x.com:8443/",
        None,
        "env",
        "NO_PROXY",
        (U, U, U, B, W),
        env={"HTTPS_PROXY": E, "NO_PROXY": "x.com:8443"},
        no_proxy_match="x.com:8443",
    ),
    Case(
        "no_proxy trailing dot on target",
        "https://x.com./",
        None,
        "env",
        "NO_PROXY",
        (U, U, U, B, W),
        env={"HTTPS_PROXY": E, "NO_PROXY": "x.com"},
        no_proxy_match="x.com",
    ),
    Case(
        "no_proxy case-insensitive",
        "https://API.X.COM/",
        None,
        "env",
        "NO_PROXY",
        (U, U, U, B, W),
        env={"HTTPS_PROXY": E, "NO_PROXY": "x.Com"},
        no_proxy_match="x.Com",
    ),
    Case(
        "no_proxy without a proxy changes nothing",
        "https://x.com",
        None,
        "default",
        None,
        (U, U, U, U, W),
        env={"NO_PROXY": "*"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_resolve(case: Case) -> None:
    decision = resolve_proxy(
        case.url,
        cli=case.cli,
        exchange=case.exchange,
        exchange_origin="exchanges.deribit.proxy.ws",
        service=case.service,
        env=case.env,
    )
    assert (decision.proxy.redacted() if decision.proxy else None) == case.expect_proxy
    assert decision.layer == case.expect_layer
    assert decision.source == case.expect_source
    assert decision.no_proxy_match == case.no_proxy_match
    assert [t.layer for t in decision.trace] == ["cli", "exchange", "service", "env", "default"]
    assert tuple(t.verdict for t in decision.trace) == case.verdicts
    # Exactly one layer decides.
    assert sum(t.verdict in ("won", "direct") for t in decision.trace) == 1


def test_trace_values_and_details() -> None:
    decision = resolve_proxy(
        "https://db.internal/x",
        exchange=None,
        service=ServiceProxy(https=SVC_HTTPS, no_proxy=".internal", origin="mpnet.yaml:3"),
        env={"https_proxy": "", "HTTPS_PROXY": E, "ALL_PROXY": A},
    )
    service, env = decision.trace[2], decision.trace[3]
    assert service.value == "http://svc:***@svc-https:3128"
    assert ".internal" in service.detail
    assert env.value == A and env.verdict == "won"
    assert "https_proxy is set but empty" in env.detail and "ALL_PROXY" in env.detail
    assert decision.trace[0].value is None and decision.trace[4].value == "direct"


def test_ignored_detail_names_httpoxy() -> None:
    decision = resolve_proxy("http://x.com", env={"HTTP_PROXY": H, "REQUEST_METHOD": ""})
    assert decision.trace[3].verdict == "ignored"
    assert "REQUEST_METHOD" in decision.trace[3].detail


def test_direct_value_in_trace() -> None:
    decision = resolve_proxy("https://x.com", cli=DIRECT)
    assert decision.trace[0].value == "direct"
    assert decision.proxy is None and decision.scheme is None


def test_invalid_env_proxy_names_variable_without_password() -> None:
    with pytest.raises(InvalidProxyURL) as info:
        resolve_proxy("https://x.com", env={"HTTPS_PROXY": "ftp://user:hunter2@corp:21"})
    assert "HTTPS_PROXY" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_invalid_env_proxy_that_is_not_used_does_not_raise() -> None:
    shadowed = resolve_proxy("https://x.com", cli=CLI, env={"HTTPS_PROXY": "corp:hunter2@x"})
    assert shadowed.trace[3].verdict == "shadowed"
    assert "hunter2" not in str(shadowed.trace[3])
    bypassed = resolve_proxy(
        "https://x.internal", env={"HTTPS_PROXY": "nonsense", "NO_PROXY": ".internal"}
    )
    assert bypassed.proxy is None
    other_scheme = resolve_proxy("https://x.com", env={"HTTP_PROXY": "nonsense"})
    assert other_scheme.proxy is None


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port"),
    [
        ("http://a.com", "http", "a.com", 80),
        ("ws://a.com/x", "ws", "a.com", 80),
        ("https://A.com/x", "https", "a.com", 443),
        ("wss://a.com:9443", "wss", "a.com", 9443),
        ("https://[::1]:8443/x", "https", "::1", 8443),
        ("HTTPS://a.com", "https", "a.com", 443),
    ],
)
def test_parse_target(url: str, scheme: str, host: str, port: int) -> None:
    target = parse_target(url)
    assert (target.scheme, target.host, target.port) == (scheme, host, port)


@pytest.mark.parametrize("url", ["ftp://a.com", "a.com", "https://", "https://a.com:99999"])
def test_bad_target(url: str) -> None:
    with pytest.raises(UsageError):
        resolve_proxy(url)


def test_to_dict_shape() -> None:
    decision = resolve_proxy("https://x.com", env={"HTTPS_PROXY": "http://u:pw12@p:3128"})
    as_dict: dict[str, Any] = decision.to_dict()
    trace = as_dict.pop("trace")
    assert [(t["layer"], t["value"], t["verdict"]) for t in trace] == [
        ("cli", None, "unset"),
        ("exchange", None, "unset"),
        ("service", None, "unset"),
        ("env", "http://u:***@p:3128", "won"),
        ("default", "direct", "shadowed"),
    ]
    assert as_dict == {
        "url": "http://u:***@p:3128",
        "layer": "env",
        "scheme": "http",
        "source": "HTTPS_PROXY",
        "no_proxy_match": None,
    }
