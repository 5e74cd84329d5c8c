"""The config file's ``routes:`` and ``exchanges.<name>.routes``: schema, file:line errors, and
how a plan uses them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpnet.config.file import parse_config_text
from mpnet.config.layers import NetworkOptions
from mpnet.config.model import HealthCheck, Profile, RestSpec, WebSocketSpec
from mpnet.core.route import parse_routes
from mpnet.errors import InvalidConfigFile
from mpnet.probe.plan import build_plan

PASSWORD = "Pa55-in-config"
ROUTES = f"""\
routes:
  tokyo: socks5h://user:{PASSWORD}@10.0.0.5:1080
  office: direct
  corp: {{url: http://127.0.0.1:3128}}
exchanges:
  okx:
    routes: [direct, tokyo]
  bybit:
    proxy: direct
"""

OKX = Profile(
    name="okx",
    title="OKX",
    rest=RestSpec(base_url="https://www.okx.com", health=HealthCheck(path="/api/v5/public/time")),
    websocket=WebSocketSpec(
        url="wss://ws.okx.com:8443/ws/v5/public", subscribe=({"op": "subscribe"},), data_match={}
    ),
)
BYBIT = Profile(
    name="bybit",
    title="Bybit",
    rest=RestSpec(base_url="https://api.bybit.com", health=HealthCheck(path="/v5/market/time")),
)


def test_routes_are_read_with_their_origin() -> None:
    cfg = parse_config_text(ROUTES, "mpnet.yaml")
    assert set(cfg.routes) == {"tokyo", "office", "corp"}
    tokyo = cfg.routes["tokyo"]
    assert tokyo.proxy is not None and tokyo.proxy.password == PASSWORD
    assert tokyo.origin == "mpnet.yaml:2 routes.tokyo"
    assert cfg.routes["office"].proxy is None
    assert cfg.routes["corp"].name == "corp"
    okx = cfg.exchanges["okx"]
    assert [r.name for r in okx.routes] == ["direct", "tokyo"]
    assert okx.routes_origin == "mpnet.yaml:7 exchanges.okx.routes"
    assert cfg.exchanges["bybit"].routes == ()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "routes:\n  tokyo: ftp://u:{pw}@h:21\n",
            "mpnet.yaml:2 routes.tokyo: unsupported proxy scheme 'ftp'",
        ),
        ("routes:\n  direct: http://h:3128\n", "mpnet.yaml:2 routes.direct: 'direct' is built in"),
        ("routes:\n  bad name: direct\n", "mpnet.yaml:2 routes.bad name: a route name is"),
        ("routes:\n  tokyo:\n", "mpnet.yaml:2 routes.tokyo: expected a proxy URL or direct"),
        ("routes: [tokyo]\n", "mpnet.yaml:1 routes: expected a mapping"),
        (
            "routes:\n  tokyo: direct\nexchanges:\n  okx:\n    routes: [direct, tokio]\n",
            "mpnet.yaml:5 exchanges.okx.routes.1: unknown route 'tokio'; did you mean 'tokyo'?; "
            "known routes: direct, tokyo",
        ),
        (
            "routes:\n  tokyo: direct\nexchanges:\n  okx:\n    routes: [direct, direct]\n",
            "mpnet.yaml:5 exchanges.okx.routes: route direct is given twice",
        ),
        (
            "routes:\n  office: direct\nexchanges:\n  okx:\n    routes: [direct, office]\n",
            "exchanges.okx.routes: route direct and route office are the same route",
        ),
        ("exchanges:\n  okx:\n    routes: []\n", "mpnet.yaml:3 exchanges.okx.routes: expected a"),
        ("exchanges:\n  okx:\n    routes: direct\n", "exchanges.okx.routes: expected a non-empty"),
        (
            "exchanges:\n  okx:\n    routes: ['http://u:{pw}@h:bad']\n",
            "mpnet.yaml:3 exchanges.okx.routes.0: 'http://u:***@h:bad': port must be",
        ),
    ],
)
def test_bad_routes_name_file_line_and_key(text: str, error: str) -> None:
    with pytest.raises(InvalidConfigFile) as caught:
        parse_config_text(text.format(pw=PASSWORD), "mpnet.yaml")
    message = str(caught.value)
    assert error in message
    assert PASSWORD not in message
    assert "\n" not in message


def test_profiles_network_blocks_do_not_take_routes() -> None:
    from mpnet.config.profiles import parse_profile_text
    from mpnet.errors import InvalidProfile

    text = (
        "name: okx\ntitle: OKX\nrest:\n  base_url: https://www.okx.com\n"
        "  health: {path: /api}\nnetwork:\n  routes: [direct]\n"
    )
    with pytest.raises(InvalidProfile, match="unknown key 'routes'"):
        parse_profile_text(text, "okx.yaml")


def plan_for(config_text: str, **options: object):  # type: ignore[no-untyped-def]
    cfg = parse_config_text(config_text, "mpnet.yaml")
    routes = parse_routes(options.pop("via", []), cfg.routes)  # type: ignore[arg-type]
    return build_plan(
        [OKX, BYBIT],
        config=cfg,
        options=NetworkOptions(**options),  # type: ignore[arg-type]
        env={},
        routes=routes,
    )


def test_an_exchange_is_probed_over_its_default_routes() -> None:
    plan = plan_for(ROUTES)
    rows = [(t.profile.name, t.target, t.route_name, t.proxy.layer) for t in plan.targets]
    assert rows == [
        ("okx", "rest", "direct", "route"),
        ("okx", "rest", "tokyo", "route"),
        ("okx", "ws", "direct", "route"),
        ("okx", "ws", "tokyo", "route"),
        # bybit lists no routes: the usual layers (its exchange entry says direct).
        ("bybit", "rest", "direct", "exchange"),
    ]
    tokyo = plan.targets[1]
    assert (
        tokyo.proxy.source == "mpnet.yaml:7 exchanges.okx.routes tokyo, mpnet.yaml:2 routes.tokyo"
    )


def test_via_replaces_default_routes_everywhere() -> None:
    plan = plan_for(ROUTES, via=["corp", "office"])
    assert {(t.profile.name, t.route_name) for t in plan.targets} == {
        ("okx", "corp"),
        ("okx", "office"),
        ("bybit", "corp"),
        ("bybit", "office"),
    }
    assert all(t.proxy.source and t.proxy.source.startswith("--via ") for t in plan.targets)


@pytest.mark.parametrize("flag", [{"proxy": "http://127.0.0.1:8080"}, {"no_proxy": True}])
def test_proxy_flags_turn_default_routes_off(flag: dict[str, object]) -> None:
    plan = plan_for(ROUTES, **flag)
    assert all(t.route is None for t in plan.targets)
    assert {t.proxy.layer for t in plan.targets} == {"cli"}


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(["direct", "tokyo", "http://h:1", "socks5h://u:p@h:1080", "ftp://x", "", " "]),
    st.text(max_size=12),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(deadline=None)
@given(routes=_VALUES, exchange_routes=_VALUES)
def test_any_routes_block_loads_or_raises_a_located_config_error(
    routes: object, exchange_routes: object
) -> None:
    import json

    text = json.dumps({"routes": routes, "exchanges": {"okx": {"routes": exchange_routes}}})
    try:
        cfg = parse_config_text(text, "mpnet.yaml")
    except InvalidConfigFile as exc:
        assert str(exc).startswith("mpnet.yaml:")
        assert "\n" not in str(exc)
        return
    for route in cfg.routes.values():
        assert route.name in cfg.routes
    for route in cfg.exchanges["okx"].routes if "okx" in cfg.exchanges else ():
        assert ":" not in route.name or "://" in route.name
