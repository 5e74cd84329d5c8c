"""Routes: parsing --via values, refusing repeats, and the route layer of the proxy trace."""

from __future__ import annotations

import pytest

from mpnet.core.proxy import resolve_proxy
from mpnet.core.proxy_url import DIRECT, parse_proxy_url
from mpnet.core.route import (
    DIRECT_ROUTE,
    Route,
    check_distinct,
    did_you_mean,
    parse_route,
    parse_routes,
    route_name_of,
)
from mpnet.errors import InvalidProxyURL, UsageError

PASSWORD = "Tr0ub4dor-route"
TOKYO = Route(
    "tokyo",
    parse_proxy_url(f"socks5h://user:{PASSWORD}@10.0.0.5:1080"),
    origin="mpnet.yaml:2 routes.tokyo",
)
OFFICE = Route("office", None, origin="mpnet.yaml:3 routes.office")
KNOWN = {"tokyo": TOKYO, "office": OFFICE}


@pytest.mark.parametrize(
    ("text", "name", "proxied"),
    [
        ("direct", "direct", False),
        ("DIRECT", "direct", False),
        ("tokyo", "tokyo", True),
        ("Tokyo", "tokyo", True),
        ("office", "office", False),
        ("http://127.0.0.1:3128", "http://127.0.0.1:3128", True),
        (f"socks5h://bob:{PASSWORD}@127.0.0.1:1080", "socks5h://bob:***@127.0.0.1:1080", True),
    ],
)
def test_parse_route(text: str, name: str, proxied: bool) -> None:
    route = parse_route(text, KNOWN)
    assert route.name == name
    assert (route.proxy is not None) is proxied
    assert PASSWORD not in route.name


def test_unknown_name_lists_the_known_ones_and_suggests_the_closest() -> None:
    with pytest.raises(UsageError) as caught:
        parse_route("tokio", KNOWN)
    message = str(caught.value)
    assert message == (
        "--via: unknown route 'tokio'; did you mean 'tokyo'?; known routes: direct, office, tokyo"
    )


def test_unknown_name_without_config_routes_says_how_to_name_one() -> None:
    with pytest.raises(UsageError, match=r"known routes: direct \(name others under `routes:`"):
        parse_route("zzz", {})


@pytest.mark.parametrize(
    "text",
    [
        f"http://user:{PASSWORD}@127.0.0.1:notaport",
        f"ftp://user:{PASSWORD}@127.0.0.1:21",
        f"user:{PASSWORD}@127.0.0.1:3128",
        f"socks4://user:{PASSWORD}@127.0.0.1:1080",
    ],
)
def test_a_route_url_that_does_not_parse_is_refused_without_its_password(text: str) -> None:
    with pytest.raises(InvalidProxyURL) as caught:
        parse_route(text, KNOWN)
    assert str(caught.value).startswith("--via: ")
    assert PASSWORD not in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["tokyo", "tokyo"], "--via tokyo is given twice"),
        (["direct", "office"], "--via direct and --via office are the same route (no proxy)"),
        (
            ["tokyo", f"socks5h://user:{PASSWORD}@10.0.0.5:1080"],
            "--via tokyo and --via socks5h://user:***@10.0.0.5:1080 are the same route",
        ),
    ],
)
def test_the_same_route_twice_is_refused(values: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_routes(values, KNOWN)
    assert message in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_urls_that_differ_only_in_their_password_cannot_be_told_apart() -> None:
    a = parse_route("socks5h://u:one@127.0.0.1:1080", {})
    b = parse_route("socks5h://u:two@127.0.0.1:1080", {})
    # Both show the same redacted name, so they cannot be told apart in any output.
    with pytest.raises(UsageError, match="is given twice"):
        check_distinct([a, b])


def test_routes_are_marked_with_what_selected_them() -> None:
    routes = parse_routes(["direct", "tokyo"], KNOWN)
    assert [r.selected_by for r in routes] == ["--via", "--via"]
    assert routes[1].source == "--via tokyo, mpnet.yaml:2 routes.tokyo"
    assert routes[0].source == "--via direct"
    url_route = parse_routes(["http://127.0.0.1:3128"], {})[0]
    assert url_route.source == "--via"


@pytest.mark.parametrize(
    ("word", "expected"),
    [("tokio", "tokyo"), ("OFICE", "office"), ("drect", "direct"), ("zzzzzz", None)],
)
def test_did_you_mean(word: str, expected: str | None) -> None:
    assert did_you_mean(word, ["direct", "office", "tokyo"]) == expected


def test_route_layer_wins_over_every_other_layer_and_shows_in_the_trace() -> None:
    decision = resolve_proxy(
        "https://www.okx.com/api/v5/public/time",
        route=TOKYO.choice,
        route_source="--via tokyo",
        cli=DIRECT,
        env={"HTTPS_PROXY": "http://corp:3128"},
    )
    assert decision.layer == "route"
    assert decision.proxy == TOKYO.proxy
    assert decision.source == "--via tokyo"
    layers = [(e.layer, e.verdict) for e in decision.trace]
    assert layers[:2] == [("route", "won"), ("cli", "shadowed")]
    assert ("env", "shadowed") in layers
    assert all(PASSWORD not in (e.value or "") for e in decision.trace)


def test_direct_route_beats_an_environment_proxy() -> None:
    decision = resolve_proxy(
        "wss://ws.okx.com:8443/ws/v5/public",
        route=DIRECT_ROUTE.choice,
        route_source="--via direct",
        env={"HTTPS_PROXY": "http://corp:3128"},
    )
    assert decision.proxy is None
    assert decision.layer == "route"
    assert decision.trace[0].verdict == "direct"


def test_no_route_leaves_the_trace_as_it_was() -> None:
    decision = resolve_proxy("https://x.example/", env={})
    assert [e.layer for e in decision.trace] == ["cli", "exchange", "service", "env", "default"]


def test_route_name_of_a_decision() -> None:
    assert route_name_of(None) == "direct"
    assert route_name_of(TOKYO.proxy) == "socks5h://user:***@10.0.0.5:1080"
