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
    assert set(data) == {
        "url",
        "ok",
        "phases",
        "proxy",
        "ssl",
        "tls",
        "messages",
        "error",
        "hint",
    }
    assert data["ok"] is True and data["error"] is None and data["hint"] is None
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


# -- websocat's habits and the hints a failed session needs -------------------------------------


@dataclass
class Extra:
    http_port: int  # a plain web server: 200 to everything, upgrade included
    header_url: str  # a WebSocket server whose first message is the request's X-Token header


@pytest.fixture(scope="module")
def extra() -> Iterator[Extra]:
    from aiohttp import web
    from websockets.asyncio.server import serve

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>hello</html>", content_type="text/html")

    async def start_web() -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/{tail:.*}", page)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    async def tell_headers(connection) -> None:  # type: ignore[no-untyped-def]
        headers = connection.request.headers
        await connection.send(json.dumps({k: headers.get(k) for k in ("X-Token", "Origin")}))
        await connection.wait_closed()

    async def start_ws():  # type: ignore[no-untyped-def]
        return await serve(tell_headers, "127.0.0.1", 0)

    runner = run(start_web())
    server = run(start_ws())
    try:
        yield Extra(
            http_port=runner.addresses[0][1],
            header_url=f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/",
        )
    finally:
        server.close()
        run(server.wait_closed())
        run(runner.cleanup())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def _run_in(*args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(
        get_app(), ["ws", *args], env={"COLUMNS": "80", "TERM": "dumb"}, input=stdin
    )


@pytest.mark.parametrize("backend", ["websockets", "aiohttp"])
def test_a_missing_second_message_is_not_a_first_message_timeout(
    servers: Servers, backend: str
) -> None:
    result = _run_in(
        servers.ws.url("/echo"),
        "--send",
        "once",
        "--count",
        "2",
        "--timeout",
        "0.5",
        "--backend",
        backend,
        "--format",
        "json",
    )
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["messages"] == ["once"]
    assert data["error"] == {
        "phase": "receive",
        "kind": "timeout",
        "message": "message 2 of 2 did not arrive within 0.5 s (1 received)",
    }
    assert "first_message" in data["phases"]  # the first one did arrive, and was timed
    assert result.stderr == (
        "mpnet: error: receive: message 2 of 2 did not arrive within 0.5 s (1 received)\n"
    )


def test_no_message_at_all_is_still_a_first_message_timeout(servers: Servers) -> None:
    result = _run_in(servers.ws.url("/echo"), "--timeout", "0.5", "--format", "json")
    assert json.loads(result.stdout)["error"]["phase"] == "first_message"


@pytest.mark.parametrize("backend", ["websockets", "aiohttp"])
def test_a_web_page_answering_200_is_not_a_websocket_endpoint(extra: Extra, backend: str) -> None:
    url = f"ws://127.0.0.1:{extra.http_port}/api/v1/ticker"
    result = _run_in(url, "--backend", backend)
    assert result.exit_code == 1
    text = " ".join(result.stdout.split())
    assert "answered the WebSocket upgrade with 200 OK, not 101 Switching Protocols" in text
    assert "it is not a WebSocket endpoint" in text
    assert (
        f"hint /api/v1/ticker on 127.0.0.1:{extra.http_port} is a plain HTTP endpoint, not a "
        "WebSocket endpoint: check the path"
    ) in text
    assert "refused" not in result.output
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("backend", ["websockets", "aiohttp"])
def test_wss_to_a_plain_port_and_ws_to_a_tls_port_get_the_other_scheme(
    servers: Servers, backend: str
) -> None:
    plain = servers.ws.url("/echo")
    secure = servers.wss.url("/echo")
    cases = [
        (plain.replace("ws://", "wss://"), "tls", f"plain WebSocket (no TLS), use {plain}"),
        (secure.replace("wss://", "ws://"), "ws_upgrade", f"if it speaks TLS, use {secure}"),
    ]
    for url, phase, advice in cases:
        result = _run_in(
            url, "--ca-bundle", str(servers.tls.ca_pem), "--backend", backend, "--format", "json"
        )
        data = json.loads(result.stdout)
        assert data["error"]["phase"] == phase, data
        assert data["hint"].endswith(advice), data["hint"]


def test_a_certificate_problem_gets_no_scheme_hint(servers: Servers) -> None:
    result = _run_in(servers.expired.url("/echo"), "--ca-bundle", str(servers.tls.ca_pem))
    assert result.exit_code == 1 and "hint" not in result.stdout


def test_send_dash_reads_one_message_per_line_of_stdin(servers: Servers) -> None:
    result = _run_in(
        servers.ws.url("/echo"),
        "--send",
        "first",
        "--send",
        "-",
        "--count",
        "4",
        "--format",
        "json",
        stdin='{"op":"ping"}\n\nsecond line\r\nthird\n',
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["messages"] == [
        "first",
        '{"op":"ping"}',
        "second line",
        "third",
    ]
    twice = _run_in(servers.ws.url("/echo"), "--send", "-", "--send", "-", stdin="x\n")
    assert twice.exit_code == 2
    assert twice.stderr == (
        "mpnet: error: --send - reads stdin, which can be read once: give it once\n"
    )


@pytest.mark.parametrize("backend", ["websockets", "aiohttp"])
def test_headers_reach_the_server(extra: Extra, backend: str) -> None:
    result = _run_in(
        extra.header_url,
        "--header",
        "X-Token: tok-123",
        "-H",
        "Origin:https://example.test",
        "--backend",
        backend,
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    [message] = json.loads(result.stdout)["messages"]
    assert json.loads(message) == {"X-Token": "tok-123", "Origin": "https://example.test"}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("X-Token", "--header: expected NAME:VALUE"),
        (": value", "--header: expected NAME:VALUE"),
        ("Bad Name: v", "--header: 'Bad Name' is not a valid header name"),
        ("Upgrade: h2c", "--header Upgrade: set by the WebSocket handshake itself"),
        ("X-Token: a\nInjected: 1", "--header X-Token: the value has a line break"),
    ],
)
def test_bad_headers_exit_2_without_echoing_the_value(header: str, expected: str) -> None:
    result = _run_in("ws://127.0.0.1:9/", "--header", header)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"mpnet: error: {expected}")
    assert result.stderr.count("\n") == 1 and "Injected" not in result.stderr


def test_max_chars_cuts_the_table_and_zero_writes_json_lines(servers: Servers) -> None:
    long = json.dumps({"data": "x" * 300})
    multi = "line one\nline two"
    args = [servers.ws.url("/echo"), "--send", long, "--send", multi, "--count", "2"]
    cut = _run_in(*args, "--max-chars", "20")
    assert cut.exit_code == 0
    assert f"{long[:20]}... ({len(long)} chars)" in cut.stdout

    full = _run_in(*args, "--max-chars", "0")
    assert full.exit_code == 0, full.output
    assert full.stdout.splitlines() == [long, json.dumps(multi)]
    assert [json.loads(line) for line in full.stdout.splitlines()] == [json.loads(long), multi]
    assert full.stderr.startswith("OK  ws://127.0.0.1:")  # the report, on stderr
    assert "messages (2 received, 2 sent)" in full.stderr and "x" * 30 not in full.stderr
