"""Profile loading: shipped files, overrides by name, and errors that name file:line key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpnet.config.profiles import (
    ProfileSet,
    load_profile_file,
    load_profiles,
    parse_profile_text,
    shipped_profiles_dir,
)
from mpnet.errors import InvalidProfile, UnknownExchange

SHIPPED = {
    "binance",
    "binance-usdm",
    "okx",
    "deribit",
    "bybit",
    "coinbase",
    "kraken",
    "bitget",
    "gate",
    "kucoin",
    "htx",
    "bitfinex",
    "bitmex",
}


@pytest.fixture(scope="module")
def shipped() -> ProfileSet:
    """The shipped profiles, loaded once for the parametrized tests that only read them."""
    return load_profiles()


MINIMAL = """\
name: demo
title: Demo
rest:
  base_url: https://api.example.test
  health: {path: /ping}
"""


def test_every_shipped_profile_loads() -> None:
    files = sorted(shipped_profiles_dir().glob("*.yaml"))
    assert {path.stem for path in files} >= SHIPPED
    # load_profiles keys by the name inside each file: it must find every file, each once.
    assert load_profiles().names() == sorted(path.stem for path in files)
    for path in files:
        profile = load_profile_file(path)
        assert profile.name == path.stem, f"{path.name} declares name {profile.name!r}"
        assert profile.targets == ("rest", "ws"), profile.name
        rest, ws = profile.url_for("rest"), profile.url_for("ws")
        assert rest is not None and rest.startswith("https://"), (profile.name, rest)
        assert ws is not None and ws.startswith("wss://"), (profile.name, ws)


def test_override_directory_wins_by_name(tmp_path: Path) -> None:
    (tmp_path / "anything.yaml").write_text(
        MINIMAL.replace("demo", "deribit").replace("Demo", "Local Deribit")
    )
    profiles = load_profiles([tmp_path])
    assert profiles.get("deribit").title == "Local Deribit"
    assert "okx" in profiles


def test_env_directory_is_an_override_too(tmp_path: Path) -> None:
    (tmp_path / "demo.yaml").write_text(MINIMAL)
    assert "demo" in load_profiles(env={"MPNET_PROFILES": str(tmp_path)})


def test_unknown_exchange_lists_known_ones() -> None:
    with pytest.raises(UnknownExchange) as info:
        load_profiles().get("deribt")
    assert "deribit" in str(info.value) and "'deribt'" in str(info.value)


def test_missing_override_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidProfile, match="not a directory"):
        load_profiles([tmp_path / "nope"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: demo\n", r"<p>:1 title: required key is missing"),
        ("name: Demo!\ntitle: x\nrest: {base_url: https://a.b, health: {path: /}}\n", r":1 name:"),
        ("name: demo\ntitle: Demo\n", "needs rest:, websocket: or both"),
        (MINIMAL + "colour: red\n", r":6 colour: unknown key 'colour'"),
        (MINIMAL.replace("/ping", "ping"), r":5 rest.health.path: 'ping': must start with '/'"),
        (MINIMAL.replace("https://api.example.test", "ftp://x"), r"rest.base_url: 'ftp://x'"),
        (MINIMAL + "  headers: [1]\n", r"rest.headers: expected a mapping"),
        (
            "name: demo\ntitle: D\nwebsocket: {url: wss://x.test/ws, subscribe: {}}\n",
            r"websocket.data_match: required key is missing",
        ),
        (
            "name: demo\ntitle: D\nwebsocket: {url: https://x.test, data_match: {}}\n",
            r"websocket.url: 'https://x.test': expected a ws or wss URL",
        ),
        (
            "name: demo\ntitle: D\n"
            "websocket: {url: wss://x.test, data_match: {}, ping: {send: x}}\n",
            "needs both send: and expect:",
        ),
        ("name: demo\ntitle: [\n", r"<p>:2: invalid YAML"),
        ("name: demo\nname: again\n", r"<p>:2 name: duplicate key"),
        ("- a\n- b\n", "expected a mapping, got a list"),
        ("", "empty profile"),
        (
            MINIMAL + "network: {proxy: 'socks6://h:1'}\n",
            r"network.proxy: unsupported proxy scheme",
        ),
        (
            MINIMAL.replace("{path: /ping}", "{path: /ping, expect_status: 999}"),
            "not an HTTP status",
        ),
        (
            MINIMAL + "rate_limit: {requests_per_s: 0}\n",
            r"<p>:6 rate_limit.requests_per_s: expected a positive number, got int 0",
        ),
        (
            MINIMAL + "rate_limit:\n  requests_per_s: -0.5\n",
            r"<p>:7 rate_limit.requests_per_s: expected a positive number, got float -0.5",
        ),
        (
            MINIMAL + "rate_limit: {requests_per_s: yes}\n",
            r":6 rate_limit.requests_per_s: expected a positive number, got boolean True",
        ),
        (
            MINIMAL + "rate_limit: {requests_per_s: .inf}\n",
            r":6 rate_limit.requests_per_s: float inf is out of range",
        ),
        (MINIMAL + "rate_limit: {}\n", r":6 rate_limit.requests_per_s: required key is missing"),
        (
            MINIMAL + "rate_limit: {requests_per_s: 0.000001}\n",
            r":6 rate_limit.requests_per_s: float 1e-06 is out of range 0.001 to 1e\+06",
        ),
        (
            MINIMAL + f"rate_limit: {{requests_per_s: {10**400}}}\n",
            r":6 rate_limit.requests_per_s: int \.\.\. is out of range",
        ),
        (MINIMAL + "rate_limit: 5\n", r":6 rate_limit: expected a mapping, got int 5"),
        (
            MINIMAL + "rate_limit: {requests_per_s: 1, burst: 3}\n",
            r"rate_limit.burst: unknown key 'burst'",
        ),
        (
            MINIMAL + "rate_limit: {requests_per_s: 1, weight_header: X-W}\n",
            r"rate_limit.weight_limit: weight_header and weight_limit go together",
        ),
        (
            MINIMAL + "rate_limit: {requests_per_s: 1, weight_header: 'a b', weight_limit: 9}\n",
            r"rate_limit.weight_header: 'a b' is not an HTTP header name",
        ),
        (
            MINIMAL + "rate_limit: {requests_per_s: 1, weight_header: X-W, weight_limit: 1.5}\n",
            r"rate_limit.weight_limit: expected a positive integer, got float 1.5",
        ),
        (
            MINIMAL
            + "rate_limit: {requests_per_s: 1, weight_header: X, weight_limit: 9, "
            + "weight_window_s: 0}\n",
            r"rate_limit.weight_window_s: expected a positive number",
        ),
    ],
)
def test_schema_errors_name_file_line_and_key(text: str, expected: str) -> None:
    with pytest.raises(InvalidProfile, match=expected):
        parse_profile_text(text, "<p>")


BLOCK_HEALTH = """\
name: demo
title: Demo
rest:
  base_url: https://api.example.test
  health:
    path: /status
"""

WS = """\
name: demo
title: Demo
websocket:
  url: wss://ws.example.test/ws
  subscribe: {"op": "subscribe", "args": ["ticker"]}
  ack_match: {"event": "subscribe", "ok": true}
  data_match: {"channel": "ticker", "data": "$list"}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            BLOCK_HEALTH + "    status_endpoint: true\n",
            r"^<p>:7 rest.health.status_endpoint: a status endpoint needs expect_json: the "
            r"pattern of an operational answer$",
        ),
        (
            BLOCK_HEALTH + "    status_endpoint: yes please\n",
            r"^<p>:7 rest.health.status_endpoint: expected true or false",
        ),
        (
            BLOCK_HEALTH + "    expect_json: {status: 2026-01-01}\n",
            r"^<p>:7 rest.health.expect_json.status: date is not a JSON value: quote it$",
        ),
        (
            BLOCK_HEALTH + "    expect_json: [1]\n    expect_jsn: [1]\n",
            r"^<p>:8 rest.health.expect_jsn: unknown key 'expect_jsn'",
        ),
        (
            WS + "  error_match: '*'\n",
            r"^<p>:8 websocket.error_match: matches every message: name the error's fields$",
        ),
        (
            WS + "  error_match: {}\n",
            r"^<p>:8 websocket.error_match: matches every message",
        ),
        (
            WS + "  error_match: {event: $string}\n",
            r"^<p>:8 websocket.error_match: also matches ack_match "
            r'\{"event":"subscribe","ok":true\}: it must recognise only the exchange\'s error',
        ),
        (
            WS + "  error_match: {channel: ticker}\n",
            r"^<p>:8 websocket.error_match: also matches data_match",
        ),
        (
            WS + "  error_match:\n    error:\n      when: 2026-01-01 10:00:00\n",
            r"^<p>:10 websocket.error_match.error.when: datetime is not a JSON value",
        ),
    ],
)
def test_new_patterns_are_validated_with_file_line_and_key(text: str, expected: str) -> None:
    with pytest.raises(InvalidProfile, match=expected):
        parse_profile_text(text, "<p>")


def test_error_match_and_status_endpoint_load() -> None:
    ws_block = WS.split("websocket:\n", 1)[1]
    profile = parse_profile_text(
        BLOCK_HEALTH
        + "    expect_json: {data: {status: open}}\n    status_endpoint: true\n"
        + "websocket:\n"
        + ws_block
        + "  error_match: {event: error}\n"
    )
    assert profile.rest is not None and profile.websocket is not None
    assert profile.rest.health.expect_json == {"data": {"status": "open"}}
    assert profile.rest.health.status_endpoint is True
    assert profile.websocket.error_match == {"event": "error"}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_profile_recognises_errors(name: str, shipped: ProfileSet) -> None:
    spec = shipped.get(name).websocket
    assert spec is not None and spec.error_match is not None, name


@pytest.mark.parametrize(
    ("name", "path", "operational"),
    [
        ("bitfinex", "/v2/platform/status", [1]),
        ("kraken", "/0/public/SystemStatus", {"result": {"status": "online"}}),
        ("kucoin", "/api/v1/status", {"data": {"status": "open"}}),
    ],
)
def test_status_endpoints_name_their_operational_answer(
    name: str, path: str, operational: object, shipped: ProfileSet
) -> None:
    rest = shipped.get(name).rest
    assert rest is not None
    assert rest.health.path == path
    assert rest.health.status_endpoint and rest.health.expect_json == operational


def test_every_shipped_profile_states_its_rate_limit() -> None:
    for profile in load_profiles():
        assert profile.rate_limit is not None, profile.name
        assert 0 < profile.rate_limit.requests_per_s <= 10, profile.name
        # Each says where its figure comes from (documented, or conservative).
        assert "# Rate limit (" in Path(profile.source).read_text(), profile.name


def test_rate_limit_block_is_read_whole() -> None:
    profile = parse_profile_text(
        MINIMAL
        + "rate_limit: {requests_per_s: 2.5, weight_header: X-MBX-USED-WEIGHT-1M, "
        + "weight_limit: 6000, weight_window_s: 10}\n"
    )
    limit = profile.rate_limit
    assert limit is not None
    assert (limit.requests_per_s, limit.spacing_s) == (2.5, 0.4)
    assert (limit.weight_header, limit.weight_limit, limit.weight_window_s) == (
        "X-MBX-USED-WEIGHT-1M",
        6000,
        10.0,
    )
    assert parse_profile_text(MINIMAL).rate_limit is None


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidProfile, match="no such file"):
        load_profile_file(tmp_path / "missing.yaml")
    with pytest.raises(InvalidProfile, match="is a directory"):
        load_profile_file(tmp_path)
    utf16 = tmp_path / "utf16.yaml"
    utf16.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(InvalidProfile, match="is UTF-16 text; save it as UTF-8"):
        load_profile_file(utf16)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\x7fELF\x02\x01\x00\x00name: x")
    with pytest.raises(InvalidProfile, match=r"bin.yaml: is a binary file, not YAML text$"):
        load_profile_file(binary)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(InvalidProfile, match=r"is not UTF-8 text \(byte 9 is 0xe9\)"):
        load_profile_file(latin1)


def test_profile_network_block_is_the_exchange_layer() -> None:
    profile = parse_profile_text(
        MINIMAL + "network:\n  proxy: {rest: direct, ws: 'socks5h://u:pw@127.0.0.1:1080'}\n"
    )
    assert profile.network is not None
    assert profile.network.proxy_rest == "direct"
    assert profile.network.proxy_ws.redacted() == "socks5h://u:***@127.0.0.1:1080"  # type: ignore[union-attr]


def test_password_never_in_schema_errors() -> None:
    with pytest.raises(InvalidProfile) as info:
        parse_profile_text(MINIMAL + "network: 'http://user:hunter2secret@proxy:3128'\n")
    assert "hunter2secret" not in str(info.value)


# -- time fields ----------------------------------------------------------------------------------

REST_TIME = MINIMAL + "  server_time: {path: data.0.ts, unit: ms}\n"
WS_TIME = WS + "  ping: {send: ping, expect: pong}\n"


def test_time_fields_load() -> None:
    profile = parse_profile_text(
        MINIMAL
        + "  time: {path: /api/v1/timestamp}\n"
        + "  server_time: {path: data, unit: ms}\n"
        + WS.split("title: Demo\n", 1)[1]
        + "  event_time: {path: data.time, unit: ms, kind: last_trade}\n"
        + "  ping: {send: ping, expect: pong, server_time: {path: 0, unit: iso8601}}\n",
        "<p>",
    )
    assert profile.rest is not None and profile.websocket is not None
    assert profile.rest.server_time is not None and profile.rest.server_time.path == "data"
    assert profile.rest.time is not None and profile.rest.time.method == "GET"
    assert profile.rest.time_url == "https://api.example.test/api/v1/timestamp"
    event = profile.websocket.event_time
    assert event is not None and (event.path, event.unit, event.kind) == (
        "data.time",
        "ms",
        "last_trade",
    )
    assert not event.is_event
    ping = profile.websocket.ping
    assert ping is not None and ping.server_time is not None and ping.server_time.path == "0"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            MINIMAL + "  server_time: {path: data.0.ts, unit: millis}\n",
            r"^<p>:6 rest.server_time.unit: 'millis': expected one of s, ms, us, ns, iso8601$",
        ),
        (
            MINIMAL + "  server_time: {path: data.0.ts}\n",
            r"^<p>:6 rest.server_time.unit: required key is missing$",
        ),
        (
            MINIMAL + "  server_time: {unit: ms}\n",
            r"^<p>:6 rest.server_time.path: required key is missing$",
        ),
        (
            MINIMAL + "  server_time: {path: 'data..ts', unit: ms}\n",
            r"^<p>:6 rest.server_time.path: 'data..ts': expected names or list indices",
        ),
        (
            MINIMAL + "  server_time: {path: 'data. ts', unit: ms}\n",
            r"rest.server_time.path: 'data. ts': expected names or list indices",
        ),
        (
            MINIMAL + "  server_time: {path: ts, unit: ms, kind: last_trade}\n",
            r"^<p>:6 rest.server_time.kind: unknown key 'kind'; expected one of path, unit$",
        ),
        (
            MINIMAL + "  server_time: ts\n",
            r"^<p>:6 rest.server_time: expected a mapping, got string 'ts'$",
        ),
        (
            MINIMAL + "  time: {path: /api/v1/timestamp}\n",
            r"^<p>:6 rest.time: a time request needs server_time: where the time is in its "
            r"answer$",
        ),
        (
            REST_TIME + "  time: {path: api/v1/timestamp}\n",
            r"^<p>:7 rest.time.path: 'api/v1/timestamp': must start with '/'$",
        ),
        (
            REST_TIME + "  time: {path: /t, method: PUT}\n",
            r"^<p>:7 rest.time.method: 'PUT': expected one of GET, POST, HEAD$",
        ),
        (
            WS + "  event_time: {path: ts, unit: ms, kind: trade}\n",
            r"^<p>:8 websocket.event_time.kind: 'trade': expected one of event, last_trade$",
        ),
        (
            WS + "  event_time: {path: ts, unit: 1000}\n",
            r"^<p>:8 websocket.event_time.unit: expected a non-empty string, got int 1000$",
        ),
        (
            WS + "  ping: {frame: true, server_time: {path: ts, unit: ms}}\n",
            r"^<p>:8 websocket.ping.server_time: a ping frame's pong carries no time to read$",
        ),
        (
            WS_TIME.replace("expect: pong}", "expect: pong, server_time: {path: t, unit: h}}"),
            r"^<p>:8 websocket.ping.server_time.unit: 'h': expected one of",
        ),
    ],
)
def test_time_fields_are_validated_with_file_line_and_key(text: str, expected: str) -> None:
    with pytest.raises(InvalidProfile, match=expected):
        parse_profile_text(text, "<p>")


#: The time fields each exchange documents (its public API docs and SDKs), one per shipped
#: profile: what the profiles must declare.
TIME_FIELDS = {
    "binance": (("serverTime", "ms"), ("E", "ms", "event"), None),
    "binance-usdm": (("serverTime", "ms"), ("E", "ms", "event"), None),
    "okx": (("data.0.ts", "ms"), ("data.0.ts", "ms", "event"), None),
    "bybit": (("result.timeNano", "ns"), ("ts", "ms", "event"), None),
    "deribit": (("usOut", "us"), ("params.data.timestamp", "ms", "event"), None),
    "coinbase": (("epochMillis", "ms"), ("timestamp", "iso8601", "event"), None),
    "bitget": (("data.serverTime", "ms"), ("ts", "ms", "event"), None),
    "gate": (("server_time", "ms"), ("time_ms", "ms", "event"), None),
    "kucoin": (("data", "ms"), ("data.time", "ms", "last_trade"), None),
    "htx": (("data", "ms"), ("ts", "ms", "event"), None),
    "bitmex": (("timestamp", "ms"), ("data.0.timestamp", "iso8601", "event"), None),
    "kraken": (
        ("result.timestamp", "iso8601"),
        ("data.0.timestamp", "iso8601", "event"),
        ("time_out", "iso8601"),
    ),
    "bitfinex": (None, None, ("ts", "ms")),
}


@pytest.mark.parametrize("name", sorted(TIME_FIELDS))
def test_every_shipped_profile_names_its_time_fields(name: str, shipped: ProfileSet) -> None:
    profile = shipped.get(name)
    assert profile.rest is not None and profile.websocket is not None
    rest, event, pong = TIME_FIELDS[name]
    server_time = profile.rest.server_time
    assert (server_time.path, server_time.unit) == rest if rest else server_time is None
    event_time = profile.websocket.event_time
    got_event = (event_time.path, event_time.unit, event_time.kind) if event_time else None
    assert got_event == event
    ping = profile.websocket.ping
    pong_time = ping.server_time if ping is not None else None
    assert ((pong_time.path, pong_time.unit) if pong_time else None) == pong
    # KuCoin's status endpoint has no time: a separate request reads it.
    assert (profile.rest.time is not None) == (name == "kucoin")
