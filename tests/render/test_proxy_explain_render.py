"""Rendering of proxy explanations: JSON shape, the table's content, disagreement flags."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from mpnet.core.libraries import LIBRARIES, library_verdicts
from mpnet.core.proxy import resolve_proxy
from mpnet.render.explain import ProxyExplanation, explain_dict, explain_table


def _explanation(url: str, env: dict[str, str]) -> ProxyExplanation:
    return ProxyExplanation(
        target="ws" if url.startswith("ws") else "rest",
        url=url,
        decision=resolve_proxy(url, env=env),
        libraries=library_verdicts(url, env),
    )


def _text(renderable: object) -> str:
    console = Console(width=160, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize(
    ("mpnet_proxy_env", "verdict", "differs"),
    [
        ({"HTTPS_PROXY": "http://corp:3128"}, "http://corp:3128", False),
        ({"HTTPS_PROXY": "http://corp:80"}, "http://corp", False),  # default port spelled out
        ({"HTTPS_PROXY": "http://corp:3128"}, "direct", True),
        ({}, "direct", False),
        ({}, "error: whatever", True),
    ],
)
def test_disagrees(mpnet_proxy_env: dict[str, str], verdict: str, differs: bool) -> None:
    url = "https://x.example.com"
    explanation = ProxyExplanation(
        "rest", url, resolve_proxy(url, env=mpnet_proxy_env), {"curl": verdict}
    )
    assert explanation.disagrees("curl") is differs


def test_dict_is_json_and_complete() -> None:
    env = {"HTTPS_PROXY": "http://u:pw0rd99@corp:3128"}
    doc = explain_dict("deribit", [_explanation("wss://x.example.com/ws", env)])
    text = json.dumps(doc)
    assert "pw0rd99" not in text
    (target,) = doc["targets"]
    assert set(target) == {
        "target",
        "url",
        "decision",
        "trace",
        "libraries",
        "env_conflicts",
        "stores",
    }
    assert target["env_conflicts"] == []
    # No TLS decision given here: no store to name.
    assert target["stores"] is None
    assert set(target["decision"]) == {"proxy", "scheme", "layer", "source", "no_proxy_match"}
    assert list(target["libraries"]) == list(LIBRARIES)
    assert len(target["trace"]) == 5


def test_table_lists_layers_winner_and_flags() -> None:
    env = {"HTTPS_PROXY": "http://u:pw0rd99@corp:3128", "NO_PROXY": ".internal"}
    text = _text(
        explain_table(
            "deribit",
            [_explanation("wss://x.example.com/ws", env), _explanation("https://a.internal", env)],
        )
    )
    assert "pw0rd99" not in text
    for word in ("cli", "exchange", "service", "env", "default", "bypassed by no_proxy"):
        assert word in text
    assert "mpnet: http://u:***@corp:3128  (env layer, HTTPS_PROXY)" in text
    assert "no_proxy entry '.internal'" in text
    # For wss, urllib and aiohttp ignore HTTPS_PROXY: flagged.
    aiohttp_line = next(line for line in text.splitlines() if line.strip().startswith("aiohttp"))
    assert "differs from mpnet" in aiohttp_line


def test_target_url_credentials_masked() -> None:
    url = "https://user:t0psecret@x.example.com/"
    doc = explain_dict(None, [_explanation(url, {})])
    assert "t0psecret" not in json.dumps(doc)
    assert "t0psecret" not in _text(explain_table(None, [_explanation(url, {})]))
