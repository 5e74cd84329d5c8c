"""Fault parsing, message synthesis and profile export (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mpnet.config.profiles import load_profile_file, load_profiles
from mpnet.core.match import matches
from mpnet.errors import UsageError
from mpnet.lab.faults import Fault, parse_fault, parse_fault_assignment
from mpnet.lab.messages import is_request, place, synthesize
from mpnet.lab.profile_export import write_profile


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("geo_block", Fault("geo_block")),
        ("WAF", Fault("waf")),
        ("rate-limit", Fault("rate_limit")),
        ("slow", Fault("slow")),
        ("slow:0.5", Fault("slow", 0.5)),
        ("drop_after:3", Fault("drop_after", 3)),
        ("clock_skew:-120", Fault("clock_skew", -120)),
        ("feed_lag:3000", Fault("feed_lag", 3000)),
        ("feed-lag:0.5", Fault("feed_lag", 0.5)),
        ("no_data", Fault("no_data")),
    ],
)
def test_parse_fault(text: str, expected: Fault) -> None:
    assert parse_fault(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("teapot", "unknown lab fault"),
        ("drop_after", "needs a value"),
        ("clock_skew", "needs a value"),
        ("waf:3", "takes no value"),
        ("drop_after:1.5", "whole number"),
        ("drop_after:-1", "whole number"),
        ("slow:-1", "negative"),
        ("slow:abc", "not a number"),
        ("clock_skew:inf", "finite"),
        ("feed_lag", r"needs a value: feed_lag:MS"),
        ("feed_lag:-5", "negative"),
        ("feed_lag:nan", "finite"),
    ],
)
def test_parse_fault_refuses(text: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        parse_fault(text)


def test_fault_prints_as_written() -> None:
    assert [str(parse_fault(t)) for t in ("drop_after:3", "slow:0.5", "waf")] == [
        "drop_after:3",
        "slow:0.5",
        "waf",
    ]


@pytest.mark.parametrize("text", ["binance", "=waf", "binance:waf"])
def test_parse_fault_assignment_refuses(text: str) -> None:
    with pytest.raises(UsageError):
        parse_fault_assignment(text)


def test_parse_fault_assignment() -> None:
    assert parse_fault_assignment(" OKX=drop_after:2") == ("okx", Fault("drop_after", 2))


@pytest.mark.parametrize(
    ("pattern", "template", "expected"),
    [
        ({"id": 1, "result": None}, None, {"id": 1, "result": None}),
        ({"e": "24hrTicker"}, {"e": "other", "c": "1.0"}, {"e": "24hrTicker", "c": "1.0"}),
        ({"data": "$list"}, {"data": [1, 2], "x": 1}, {"data": [1, 2], "x": 1}),
        ({"data": "$list"}, {"data": "no"}, {"data": []}),
        (["$number", "$list"], None, [0, []]),
        (["$number", "$list"], [5, [1.0], "extra"], [5, [1.0], "extra"]),
        ({"a": {"b": "$dict"}}, {"a": {"c": 1}}, {"a": {"c": 1, "b": {}}}),
        ("pong", None, "pong"),
        ({"info": "$string"}, None, {"info": ""}),
        ({"x": "*"}, None, {"x": True}),
        ({"x": "*"}, {"x": 0}, {"x": 0}),
    ],
)
def test_synthesize(pattern: Any, template: Any, expected: Any) -> None:
    produced = synthesize(pattern, template)
    assert produced == expected
    assert matches(pattern, produced)


@pytest.mark.parametrize(
    ("message", "received", "expected"),
    [
        (
            {"time": "$now", "channel": "spot.ping"},
            {"time": 1795000000, "channel": "spot.ping"},
            True,
        ),
        ({"time": "$now", "channel": "spot.ping"}, {"time": "x", "channel": "spot.ping"}, False),
        ({"op": "subscribe", "args": ["a"]}, {"op": "subscribe", "args": ["a"]}, True),
        ({"op": "subscribe", "args": ["a"]}, {"op": "subscribe", "args": ["b"]}, False),
        ("ping", "ping", True),
        ("ping", {"ping": 1}, False),
    ],
)
def test_is_request(message: Any, received: Any, expected: bool) -> None:
    assert is_request(message, received) is expected


@pytest.mark.parametrize(
    ("document", "dotted", "expected"),
    [
        ({}, "data.token", {"data": {"token": "T"}}),
        (
            None,
            "data.instanceServers.0.endpoint",
            {"data": {"instanceServers": [{"endpoint": "T"}]}},
        ),
        (
            {"data": {"instanceServers": [{"endpoint": "old", "pingInterval": 1}]}},
            "data.instanceServers.0.endpoint",
            {"data": {"instanceServers": [{"endpoint": "T", "pingInterval": 1}]}},
        ),
        ([], "1", [None, "T"]),
    ],
)
def test_place(document: Any, dotted: str, expected: Any) -> None:
    assert place(document, dotted, "T") == expected


@pytest.mark.parametrize("name", ["binance", "okx", "kucoin"])
def test_profiles_written_back_keep_their_rate_limit(name: str, tmp_path: Path) -> None:
    profile = load_profiles().get(name)
    loaded = load_profile_file(write_profile(profile, tmp_path / f"{name}.yaml"))
    assert loaded.rate_limit == profile.rate_limit and loaded.rate_limit is not None


@pytest.mark.parametrize("name", ["kucoin", "kraken", "bitfinex", "bybit"])
def test_profiles_written_back_keep_their_time_fields(name: str, tmp_path: Path) -> None:
    profile = load_profiles().get(name)
    loaded = load_profile_file(write_profile(profile, tmp_path / f"{name}.yaml"))
    assert profile.rest is not None and loaded.rest is not None
    assert loaded.rest.server_time == profile.rest.server_time
    assert loaded.rest.time == profile.rest.time
    assert profile.websocket is not None and loaded.websocket is not None
    assert loaded.websocket.event_time == profile.websocket.event_time
    assert loaded.websocket.ping == profile.websocket.ping
