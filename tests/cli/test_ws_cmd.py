"""``mpnet ws`` end to end: Typer's runner against loopback servers and pproxy.

The command calls ``asyncio.run`` itself, so the servers run on their own event loop in a
background thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from fixtures_servers import (
    PROXY_PASSWORD,
    STANDARD_PROXIES,
    TLSMaterial,
    WebSocketServer,
    closed_port,
    make_tls_material,
    start_pproxy,
    with_scheme,
)
from mpnet.cli.app import get_app

SUBSCRIBE = '{"op":"subscribe","args":["BTC-USDT"]}'


@dataclass
class Servers:
    tls: TLSMaterial
    ws: WebSocketServer
    wss: WebSocketServer
    expired: WebSocketServer
    proxies: dict[str, str]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    tls = make_tls_material(tmp_path_factory.mktemp("ws-cli"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    started = [
        run(WebSocketServer().start()),
        run(WebSocketServer(ssl_context=tls.server_context()).start()),
        run(WebSocketServer(ssl_context=tls.expired_context()).start()),
    ]
    proxy_process = start_pproxy(STANDARD_PROXIES)
    try:
        yield Servers(tls, *started, proxies=proxy_process.urls)
    finally:
        proxy_process.stop()
        for server in started:
            run(server.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(get_app(), ["ws", *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_through_socks5h_with_auth(servers: Servers) -> None:
    proxy = with_scheme(servers.proxies["socks5_auth"], "socks5h")
    code, stdout, stderr = _run(
        servers.wss.url("/ticker"),
        "--send",
        SUBSCRIBE,
        "--count",
        "3",
        "--proxy",
        proxy,
        "--ca-bundle",
        str(servers.tls.ca_pem),
        "--format",
        "json",
    )
    assert code == 0, stderr
    data = json.loads(stdout)
    assert set(data) == {"url", "ok", "phases", "proxy", "ssl", "tls", "messages", "error"}
    assert data["ok"] is True and data["error"] is None
    assert list(data["phases"]) == ["dns", "tcp", "proxy", "tls", "ws_upgrade", "first_message"]
    assert next((t["layer"], t["verdict"]) for t in data["proxy"].pop("trace")) == ("cli", "won")
    assert data["proxy"] == {
        "url": proxy.replace(PROXY_PASSWORD, "***"),
        "layer": "cli",
        "scheme": "socks5h",
        "source": "--proxy",
        "no_proxy_match": None,
    }
    assert data["ssl"]["verify"] is True and data["ssl"]["ca"] == str(servers.tls.ca_pem)
    assert data["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    assert [json.loads(m) for m in data["messages"]] == [
        {"event": "subscribed", "args": ["BTC-USDT"]},
        {"tick": 0, "args": ["BTC-USDT"]},
        {"tick": 1, "args": ["BTC-USDT"]},
    ]
    assert PROXY_PASSWORD not in stdout + stderr


@pytest.mark.parametrize("backend", ["websockets", "aiohttp"])
def test_table_shows_waterfall_messages_and_proxy(servers: Servers, backend: str) -> None:
    code, stdout, _ = _run(
        servers.ws.url("/echo"),
        "--send",
        "hello",
        "--send",
        "again",
        "--count",
        "2",
        "--proxy",
        servers.proxies["http_auth"],
        "--backend",
        backend,
    )
    assert code == 0
    for expected in ("OK", "TCP connect", "proxy handshake", "WebSocket upgrade", "hello"):
        assert expected in stdout
    assert "again" in stdout
    assert "mpnet:***@127.0.0.1" in stdout
    assert PROXY_PASSWORD not in stdout


def test_insecure_warns_on_every_surface(servers: Servers) -> None:
    code, stdout, stderr = _run(
        servers.expired.url("/echo"), "--send", "x", "--insecure", "--format", "json"
    )
    assert code == 0
    data = json.loads(stdout)
    assert data["ssl"]["verify"] is False
    assert data["ssl"]["warnings"]
    assert data["tls"]["cert_days_left"] < 0
    assert "warning" in stderr.lower()


def test_expired_certificate_fails_in_tls(servers: Servers) -> None:
    code, stdout, stderr = _run(
        servers.expired.url("/echo"), "--ca-bundle", str(servers.tls.ca_pem), "--format", "json"
    )
    assert code == 1
    data = json.loads(stdout)
    assert data["ok"] is False
    assert data["error"]["phase"] == "tls" and data["error"]["kind"] == "expired"
    assert list(data["phases"]) == ["dns", "tcp", "tls"]
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


def test_refused_upgrade_fails_with_status(servers: Servers) -> None:
    code, stdout, stderr = _run(servers.ws.url("/forbidden"))
    assert code == 1
    assert "FAILED" in stdout and "403" in stdout
    assert "ws_upgrade" in stderr


def test_wrong_proxy_password_is_masked(servers: Servers) -> None:
    wrong = servers.proxies["http_auth"].replace(PROXY_PASSWORD, "hunter2-wrong")
    code, stdout, stderr = _run(servers.ws.url("/echo"), "--proxy", wrong, "--format", "json")
    assert code == 1
    assert json.loads(stdout)["error"]["kind"] == "proxy_auth"
    assert "hunter2-wrong" not in stdout + stderr


def test_unreachable_proxy(servers: Servers) -> None:
    code, stdout, _ = _run(
        servers.ws.url("/echo"),
        "--proxy",
        f"socks5://127.0.0.1:{closed_port()}",
        "--format",
        "json",
    )
    assert code == 1
    assert json.loads(stdout)["error"]["phase"] == "tcp"


@pytest.mark.parametrize(
    "args",
    [
        ["https://127.0.0.1/"],
        ["ws://127.0.0.1/", "--proxy", "ftp://x:1"],
        ["ws://127.0.0.1/", "--proxy", "http://127.0.0.1:1", "--no-proxy"],
        ["ws://127.0.0.1/", "--backend", "curl"],
        ["ws://127.0.0.1/", "--count", "-1"],
        ["wss://127.0.0.1/", "--ca-bundle", "/nonexistent/ca.pem"],
    ],
)
def test_bad_input_exits_2_without_traceback(args: list[str]) -> None:
    code, _, stderr = _run(*args)
    assert code == 2
    assert "Traceback" not in stderr
