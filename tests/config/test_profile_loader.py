"""Profile loading: shipped files, overrides by name, and errors that name file:line key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpnet.config.profiles import load_profile_file, load_profiles, parse_profile_text
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

MINIMAL = """\
name: demo
title: Demo
rest:
  base_url: https://api.example.test
  health: {path: /ping}
"""


def test_every_shipped_profile_loads() -> None:
    profiles = load_profiles()
    assert set(profiles.names()) >= SHIPPED
    for profile in profiles:
        assert profile.rest is not None and profile.websocket is not None, profile.name
        assert profile.url_for(
            "rest",
        ).startswith("https://")  # type: ignore[union-attr]
        assert profile.url_for("ws").startswith("wss://")  # type: ignore[union-attr]


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
    ],
)
def test_schema_errors_name_file_line_and_key(text: str, expected: str) -> None:
    with pytest.raises(InvalidProfile, match=expected):
        parse_profile_text(text, "<p>")


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
