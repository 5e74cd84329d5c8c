"""mpnet.client: NetworkConnectionManager's layer decisions, sessions, stats and
test_connectivity, the shared manager across event loops, against servers and pproxy on
127.0.0.1.

The module-level helpers are reached as ``client.test_connectivity`` (never imported by name:
pytest would collect a module-level ``test_connectivity`` as a test)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from http_fixtures import ScriptedApp, running_app

import mpnet
from fixtures_servers import PROXY_PASSWORD, TLSMaterial, WebSocketServer, closed_port
from mpnet import client
from mpnet.client import USE_CONFIG, ConnectivityResult, NetworkConnectionManager, NetworkStats
from mpnet.config.model import ConfigFile, ExchangeNetwork
from mpnet.config.profiles import ProfileSet, load_profiles
from mpnet.core.proxy_url import parse_proxy_url
from mpnet.errors import ConnectError, InvalidProxyURL, ProxyUnreachable, UsageError
from mpnet.net.ws import WebSocketWrapper


def _manager(env: dict[str, str] | None = None) -> NetworkConnectionManager:
    # An empty config and profile set: nothing from the developer's machine is read.
    return NetworkConnectionManager(config=ConfigFile(), profiles=ProfileSet({}), env=env or {})


@pytest.fixture
async def app() -> AsyncIterator[ScriptedApp]:
    async with running_app() as server:
        yield server


@pytest.fixture
async def nm() -> AsyncIterator[NetworkConnectionManager]:
    async with _manager() as manager:
        yield manager


# -- decisions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proxy", "env", "layer", "proxied"),
    [
        (USE_CONFIG, {}, "default", False),
        (USE_CONFIG, {"https_proxy": "http://127.0.0.1:3128"}, "env", True),
        (None, {"https_proxy": "http://127.0.0.1:3128"}, "cli", False),
        ("socks5h://127.0.0.1:1080", {}, "cli", True),
    ],
    ids=["default", "env", "none-forces-direct", "explicit"],
)
def test_proxy_argument_has_three_meanings(
    proxy: object, env: dict[str, str], layer: str, proxied: bool
) -> None:
    decision, _ = _manager(env).decide("https://api.example.test/", proxy=proxy)
    assert decision.layer == layer
    assert (decision.proxy is not None) is proxied


def test_network_config_is_the_exchange_layer() -> None:
    network = ExchangeNetwork(
        proxy_rest=parse_proxy_url("http://127.0.0.1:3128"), origin="test network_config"
    )
    env = {"https_proxy": "http://127.0.0.1:9999"}
    decision, _ = _manager(env).decide("https://api.example.test/", network_config=network)
    assert decision.layer == "exchange"
    assert decision.proxy is not None and decision.proxy.port == 3128


def test_insecure_and_ca_bundle_decide_tls(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, tls = _manager().decide("https://x.test/", insecure=True)
    assert not tls.verify and tls.warnings
    with pytest.raises(UsageError):
        _manager().decide("https://x.test/", insecure=True, ca_bundle=str(tmp_path / "ca.pem"))


def test_unconfigured_exchange_means_no_exchange_layer() -> None:
    env = {"https_proxy": "http://127.0.0.1:3128"}
    proxy, tls = _manager(env).decide("https://x.test/", exchange_name="mybroker")
    assert (proxy.layer, proxy.proxy is not None) == ("env", True)
    assert tls.layer == "default"
    for trace in (proxy.trace, tls.trace):
        (exchange,) = [entry for entry in trace if entry.layer == "exchange"]
        assert exchange.verdict == "unset"
        assert "no exchange layer" in exchange.detail and "'mybroker'" in exchange.detail
    # Without an exchange name the trace carries no such note.
    known, _ = _manager().decide("https://x.test/")
    assert all("no exchange layer" not in entry.detail for entry in known.trace)


def test_exchange_known_only_to_the_config_file() -> None:
    config = ConfigFile(
        exchanges={"custom": ExchangeNetwork(proxy_rest="direct", proxy_ws="direct")}
    )
    nm = NetworkConnectionManager(
        config=config, profiles=ProfileSet({}), env={"https_proxy": "http://127.0.0.1:1"}
    )
    decision, _ = nm.decide("https://x.test/", exchange_name="custom")
    assert decision.layer == "exchange"
    assert decision.proxy is None


def test_use_config_is_a_named_singleton() -> None:
    assert repr(USE_CONFIG) == "USE_CONFIG"
    assert type(USE_CONFIG)() is USE_CONFIG


def test_package_network_manager_follows_the_live_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The documented entry point (`from mpnet import network_manager`) reads os.environ when it
    # decides, not a copy taken at import: a proxy set later is used, one removed is not.
    from mpnet import network_manager as shared

    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    decision, _ = shared.decide("https://api.example.test/")
    assert decision.layer == "env" and decision.proxy is not None
    assert decision.proxy.port == 3128
    monkeypatch.delenv("HTTPS_PROXY")
    decision, _ = shared.decide("https://api.example.test/")
    assert decision.layer == "default" and decision.proxy is None


def test_package_exports_resolve_and_unknown_names_fail() -> None:
    # Every name `mpnet` advertises is importable from it (its lazy table has no stale entry).
    missing = [name for name in mpnet.__all__ if not hasattr(mpnet, name)]
    assert missing == []
    assert isinstance(mpnet.network_manager, mpnet.NetworkConnectionManager)
    with pytest.raises(AttributeError, match="'no_such_name'"):
        mpnet.no_such_name  # noqa: B018


# -- test_connectivity --------------------------------------------------------------------------


async def test_http_connectivity_reports_phases(
    nm: NetworkConnectionManager, app: ScriptedApp
) -> None:
    result = await nm.test_connectivity(app.url("/json"), connection_type="http")
    assert result.success
    assert result.status == 200
    assert {"dns", "tcp", "http"} <= set(result.phases)
    assert result.error is None
    assert result.peer is not None
    assert result.to_dict()["proxy"]["layer"] == "default"


async def test_https_connectivity_through_an_authenticated_proxy(
    nm: NetworkConnectionManager, proxies: dict[str, str], tls_material: TLSMaterial
) -> None:
    async with running_app(tls_material.server_context()) as server:
        result = await nm.test_connectivity(
            server.url("/json"),
            connection_type="http",
            proxy=proxies["http_auth"],
            ca_bundle=str(tls_material.ca_pem),
        )
    assert result.success
    assert {"dns", "tcp", "proxy", "tls", "http"} <= set(result.phases)
    shown = json.dumps(result.to_dict())
    assert PROXY_PASSWORD not in shown
    assert result.to_dict()["proxy"]["layer"] == "cli"
    assert result.to_dict()["ssl"]["verify"] is True


async def test_http_error_status_is_not_success(
    nm: NetworkConnectionManager, app: ScriptedApp
) -> None:
    result = await nm.test_connectivity(app.url("/status/451"), connection_type="http")
    assert not result.success
    assert result.status == 451
    assert result.error is not None
    assert (result.error.phase, result.error.kind) == ("http", "http_status")


@pytest.mark.parametrize("connection_type", ["http", "websocket"])
async def test_connectivity_never_raises_for_a_closed_port(
    nm: NetworkConnectionManager, connection_type: str
) -> None:
    scheme = "http" if connection_type == "http" else "ws"
    result = await nm.test_connectivity(
        f"{scheme}://127.0.0.1:{closed_port()}/", connection_type=connection_type, timeout=5
    )
    assert not result.success
    assert result.error is not None
    assert (result.error.phase, result.error.kind) == ("tcp", "refused")
    assert "dns" in result.phases


@pytest.mark.parametrize("connection_type", ["http", "websocket"])
async def test_connectivity_never_raises_for_an_unresolvable_name(
    nm: NetworkConnectionManager, connection_type: str
) -> None:
    scheme = "http" if connection_type == "http" else "ws"
    result = await nm.test_connectivity(
        f"{scheme}://name.invalid/", connection_type=connection_type, timeout=5
    )
    assert not result.success
    assert result.error is not None
    assert result.error.phase == "dns"


async def test_connectivity_through_a_dead_proxy(
    nm: NetworkConnectionManager, app: ScriptedApp
) -> None:
    result = await nm.test_connectivity(
        app.url("/json"),
        connection_type="http",
        proxy=f"http://user:{PROXY_PASSWORD}@127.0.0.1:{closed_port()}",
    )
    assert not result.success
    assert result.error is not None
    assert PROXY_PASSWORD not in json.dumps(result.to_dict())


async def test_websocket_connectivity(
    nm: NetworkConnectionManager, ws_server: WebSocketServer
) -> None:
    result = await nm.test_connectivity(ws_server.url("/echo"), connection_type="websocket")
    assert result.success, result.error
    assert {"dns", "tcp", "ws_upgrade"} <= set(result.phases)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"connection_type": "ftp"}, UsageError),
        ({"proxy": "ftp://127.0.0.1:21"}, InvalidProxyURL),
        ({"connection_type": None}, UsageError),  # ftp:// has no connection type
    ],
)
async def test_bad_input_raises(
    nm: NetworkConnectionManager, kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        url = "ftp://127.0.0.1:1/" if "connection_type" in kwargs else "http://127.0.0.1:1/"
        await nm.test_connectivity(url, **kwargs)


# -- sessions, retries, stats -------------------------------------------------------------------


async def test_request_with_retry_creates_the_session(
    nm: NetworkConnectionManager, app: ScriptedApp
) -> None:
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    app.script.append((503, {"Retry-After": "3"}))
    response = await nm.request_with_retry(
        "GET", app.url("/script"), session_name="api", sleep=sleep
    )
    assert response.status == 200
    assert response.attempts == 2
    assert delays == [3.0]
    sessions = nm.get_network_stats().connections
    assert [(c.type, c.session) for c in sessions] == [("http", "api")]


async def test_stats_count_sessions_by_proxy(
    nm: NetworkConnectionManager, proxies: dict[str, str], app: ScriptedApp
) -> None:
    direct = await nm.create_http_session("direct", url=app.url("/"), proxy=None)
    proxied = await nm.create_http_session("proxied", url=app.url("/"), proxy=proxies["http_auth"])
    again = await nm.create_http_session("direct", url=app.url("/"), proxy=None)
    assert again is direct
    async with proxied.get(app.url("/json")) as response:
        assert response.status == 200
    stats = nm.get_network_stats()
    assert isinstance(stats, NetworkStats)
    overview = stats.overview
    assert overview.total_connections == 2
    assert overview.active_connections == 2
    assert overview.http_sessions == 2
    assert overview.proxy_connections == 1
    assert overview.direct_connections == 1
    assert overview.failed_connections == 0
    by_session = {c.session: c for c in stats.connections}
    assert by_session["direct"].proxy is None
    assert by_session["direct"].proxy_layer == "cli"
    proxied_url = by_session["proxied"].proxy
    assert proxied_url is not None
    assert proxied_url.endswith(f"@127.0.0.1:{proxies['http_auth'][-5:]}")
    shown = stats.to_dict()
    assert PROXY_PASSWORD not in json.dumps(shown)
    assert shown["overview"] == {
        "total_connections": 2,
        "active_connections": 2,
        "failed_connections": 0,
        "websocket_connections": 0,
        "http_sessions": 2,
        "proxy_connections": 1,
        "direct_connections": 1,
    }
    assert [c["session"] for c in shown["connections"]] == ["direct", "proxied"]
    assert all(c.state == "open" and c.age_seconds >= 0 for c in stats.connections)

    await nm.close_all()
    assert direct.closed and proxied.closed
    overview = nm.get_network_stats().overview
    assert overview.active_connections == 0
    assert overview.total_connections == 2


async def test_failed_websocket_is_counted(nm: NetworkConnectionManager) -> None:
    from mpnet.errors import ConnectError

    with pytest.raises(ConnectError):
        await nm.create_websocket_connection(f"ws://127.0.0.1:{closed_port()}/", timeout=5)
    overview = nm.get_network_stats().overview
    assert (overview.failed_connections, overview.active_connections) == (1, 0)


@pytest.mark.parametrize("backend", ["websockets", "aiohttp"])
async def test_websocket_is_tracked_and_closed(
    nm: NetworkConnectionManager, ws_server: WebSocketServer, backend: str
) -> None:
    ws = await nm.create_websocket_connection(
        ws_server.url("/echo"), exchange_name=None, proxy=None, backend=backend
    )
    await ws.send("hello")
    assert await ws.recv(timeout=5) == "hello"
    stats = nm.get_network_stats()
    overview = stats.overview
    assert (overview.websocket_connections, overview.active_connections) == (1, 1)
    assert stats.connections[0].type == "websocket"
    assert stats.connections[0].proxy_layer == "cli"
    await nm.close_all()
    assert ws.closed
    assert nm.get_network_stats().overview.active_connections == 0


async def test_http_session_needs_a_url(nm: NetworkConnectionManager) -> None:
    with pytest.raises(UsageError):
        await nm.create_http_session("x")


async def test_context_manager_closes_sessions(app: ScriptedApp) -> None:
    async with _manager() as manager:
        session = await manager.create_http_session("s", url=app.url("/"))
    assert session.closed


async def test_refused_upgrade_keeps_the_completed_phases(
    nm: NetworkConnectionManager, ws_server: WebSocketServer, proxies: dict[str, str]
) -> None:
    result = await nm.test_connectivity(
        ws_server.url("/forbidden"), connection_type="websocket", proxy=proxies["socks5"]
    )
    assert not result.success
    assert result.error is not None
    assert (result.error.phase, result.error.status) == ("ws_upgrade", 403)
    assert {"dns", "tcp", "proxy"} <= set(result.phases)
    assert result.to_dict()["error"]["kind"] == "ws_upgrade_rejected"


# -- the server's clock -------------------------------------------------------------------------


async def test_http_connectivity_reads_the_date_header_as_the_coarse_clock(
    nm: NetworkConnectionManager, app: ScriptedApp
) -> None:
    result = await nm.test_connectivity(app.url("/json"), connection_type="http")
    clock = result.clock
    assert clock is not None and clock.source == "date" and clock.coarse
    assert clock.offset_ms is not None and clock.error_ms is not None
    assert abs(clock.offset_ms) <= clock.error_ms  # the same machine's clock
    assert result.to_dict()["clock"]["source"] == "date"


async def test_http_connectivity_reads_the_exchanges_time_field() -> None:
    from mpnet.config.profiles import load_profiles
    from mpnet.lab import Lab

    async with Lab([load_profiles().get("binance")], faults={"binance": "clock_skew:2"}) as lab:
        profile = lab.profile("binance")
        manager = NetworkConnectionManager(
            config=ConfigFile(), profiles=ProfileSet({"binance": profile}), env={}
        )
        async with manager:
            assert profile.rest is not None
            result = await manager.test_connectivity(
                profile.rest.health_url,
                connection_type="http",
                exchange_name="binance",
                ca_bundle=lab.ca_file,
            )
            elsewhere = await manager.test_connectivity(
                profile.rest.base_url + "/api/v3/ping",
                connection_type="http",
                exchange_name="binance",
                ca_bundle=lab.ca_file,
            )
    clock = result.clock
    assert clock is not None and clock.source == "rest.server_time" and clock.path == "serverTime"
    assert clock.offset_ms is not None and clock.error_ms is not None
    assert abs(clock.offset_ms - 2000) <= clock.error_ms
    assert result.to_dict()["clock"]["offset_ms"] == pytest.approx(clock.offset_ms, abs=0.001)
    # Another path of the same exchange carries no time field: only its Date (a 404 here).
    assert elsewhere.clock is not None and elsewhere.clock.source == "date"


# -- one event loop after another ---------------------------------------------------------------


@pytest.fixture
def shared(monkeypatch: pytest.MonkeyPatch) -> NetworkConnectionManager:
    """The process-wide manager, with an empty config file (nothing from this machine's)."""
    monkeypatch.setattr(client.network_manager, "_config", ConfigFile())
    return client.network_manager


def test_shared_manager_requests_across_asyncio_runs(shared: NetworkConnectionManager) -> None:
    # The original networking layer's failure: the second asyncio.run() reused the first
    # loop's pooled session and raised "Event loop is closed".
    async def once() -> tuple[int, aiohttp.ClientSession]:
        async with running_app() as app:
            response = await shared.request_with_retry("GET", app.url("/json"))
            session = await client.create_http_session(url=app.url("/"))
            return response.status, session

    first_status, first_session = asyncio.run(once())
    # Closed when its loop shut down, not left to the garbage collector.
    assert first_session.closed
    assert shared.get_network_stats().overview.active_connections == 0
    second_status, second_session = asyncio.run(once())
    assert (first_status, second_status) == (200, 200)
    assert second_session is not first_session and second_session.closed


def test_helpers_test_connectivity_across_asyncio_runs(
    shared: NetworkConnectionManager, tls_material: TLSMaterial
) -> None:
    async def once() -> ConnectivityResult:
        async with running_app(tls_material.server_context()) as app:
            return await client.test_connectivity(
                app.url("/json"), ca_bundle=str(tls_material.ca_pem)
            )

    results = [asyncio.run(once()), asyncio.run(once())]
    assert [(r.success, r.status, r.connection_type) for r in results] == [
        (True, 200, "http"),
        (True, 200, "http"),
    ]
    assert all(r.tls.verify and "tls" in r.phases for r in results)


def test_websocket_of_a_finished_loop_is_closed(
    shared: NetworkConnectionManager, tmp_path: object
) -> None:
    async def opened() -> WebSocketWrapper:
        server = await WebSocketServer().start()
        try:
            ws = await client.create_websocket_connection(server.url("/echo"), proxy=None)
            await ws.send("hi")
            assert await ws.recv(timeout=5) == "hi"
            return ws
        finally:
            await server.stop()

    ws = asyncio.run(opened())
    assert ws.closed
    states = [c.state for c in client.get_network_stats().connections if c.type == "websocket"]
    assert states and states[-1] == "closed"


def test_package_names_are_the_shared_managers() -> None:
    for name in (
        "test_connectivity",
        "create_websocket_connection",
        "create_http_session",
        "request_with_retry",
        "get_network_stats",
        "close_all",
    ):
        assert getattr(mpnet, name) == getattr(mpnet.network_manager, name), name


# -- arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [("http", "http"), ("https", "http"), ("ws", "websocket"), ("wss", "websocket")],
)
async def test_connection_type_follows_the_scheme(
    nm: NetworkConnectionManager, scheme: str, expected: str
) -> None:
    assert client.connection_type_of(f"{scheme.upper()}://x.test/") == expected
    result = await nm.test_connectivity(f"{scheme}://127.0.0.1:{closed_port()}/", timeout=5)
    assert result.connection_type == expected
    assert result.error is not None
    assert (result.error.phase, result.error.kind) == ("tcp", "refused")


async def test_https_without_a_type_is_an_http_test(
    nm: NetworkConnectionManager, tls_material: TLSMaterial
) -> None:
    async with running_app(tls_material.server_context()) as server:
        result = await nm.test_connectivity(server.url("/json"), ca_bundle=str(tls_material.ca_pem))
    assert (result.success, result.connection_type, result.status) == (True, "http", 200)
    assert "http" in result.phases and "ws_upgrade" not in result.phases


async def test_websocket_without_a_type(
    nm: NetworkConnectionManager, wss_server: WebSocketServer, tls_material: TLSMaterial
) -> None:
    result = await nm.test_connectivity(wss_server.url("/echo"), ca_bundle=str(tls_material.ca_pem))
    assert (result.success, result.connection_type) == (True, "websocket"), result.error
    assert {"tls", "ws_upgrade"} <= set(result.phases)


async def test_unconfigured_exchange_connects_without_an_exchange_layer(
    nm: NetworkConnectionManager, app: ScriptedApp
) -> None:
    result = await nm.test_connectivity(app.url("/json"), exchange_name="mybroker")
    assert result.success and result.status == 200
    trace = result.to_dict()["proxy"]["trace"]
    (exchange,) = [entry for entry in trace if entry["layer"] == "exchange"]
    assert "no exchange layer" in exchange["detail"]
    # And for a session, when a URL says where to.
    session = await nm.create_http_session("s", exchange_name="mybroker", url=app.url("/"))
    async with session.get(app.url("/json")) as response:
        assert response.status == 200


@pytest.mark.parametrize(
    "call",
    [
        lambda nm, url: nm.test_connectivity(url, "http"),
        lambda nm, url: nm.create_websocket_connection(url, "deribit"),
        lambda nm, url: nm.create_http_session("s", "deribit"),
        lambda nm, url: nm.request_with_retry("GET", url, "deribit"),
    ],
    ids=["test_connectivity", "create_websocket_connection", "create_http_session", "request"],
)
async def test_options_are_keyword_only(nm: NetworkConnectionManager, call: Any) -> None:
    with pytest.raises(TypeError, match="positional"):
        await call(nm, "http://127.0.0.1:1/")


# -- errors of pooled sessions --------------------------------------------------------------------


async def test_session_request_to_a_refused_port_raises_mpnets_error(
    nm: NetworkConnectionManager,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    session = await nm.create_http_session("refused", url=url, proxy=None)
    with pytest.raises(ConnectError) as caught:
        async with session.get(url):
            pass
    assert caught.value.kind == "refused"
    assert not isinstance(caught.value, aiohttp.ClientError)
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)


async def test_session_request_through_a_dead_proxy_raises_mpnets_error(
    nm: NetworkConnectionManager, app: ScriptedApp
) -> None:
    proxy = f"http://user:{PROXY_PASSWORD}@127.0.0.1:{closed_port()}"
    session = await nm.create_http_session("dead-proxy", url=app.url("/"), proxy=proxy)
    with pytest.raises(ProxyUnreachable) as caught:
        async with session.get(app.url("/json")):
            pass
    assert PROXY_PASSWORD not in str(caught.value)


# -- the trust store ------------------------------------------------------------------------------


def test_without_a_system_store_the_library_verifies_with_certifi(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mpnet.config import layers
    from mpnet.config.layers import NetworkOptions
    from mpnet.probe.plan import build_plan

    monkeypatch.setattr(layers, "system_trust_store_available", lambda: False)
    _, tls = _manager().decide("https://x.test/")
    assert (tls.ca, tls.ca_kind, tls.layer) == ("certifi", "certifi", "default")
    # The same answer the probe and exporter plan with (the CLI goes through build_plan).
    profiles = load_profiles(env={})
    plan = build_plan(
        [profiles.get("deribit")], config=ConfigFile(), options=NetworkOptions(), env={}
    )
    assert {t.tls.ca for t in plan.targets} == {"certifi"}
    monkeypatch.setattr(layers, "system_trust_store_available", lambda: True)
    _, tls = _manager().decide("https://x.test/")
    assert (tls.ca, tls.ca_kind) == ("system", "system")


def test_net_does_not_read_the_configuration() -> None:
    # The facade reads the config file; net/ only takes decisions (docs/architecture.md, "Layers").
    import ast
    from pathlib import Path

    import mpnet.net

    offenders = []
    for path in sorted(Path(mpnet.net.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            if any(name.startswith(("mpnet.config", "mpnet.client")) for name in names):
                offenders.append(path.name)
    assert offenders == []


@pytest.mark.parametrize("answer", ["short_body", "stalled_body"])
async def test_a_session_body_that_fails_raises_mpnets_error(
    nm: NetworkConnectionManager, answer: str
) -> None:
    """Reading the body happens after the request returned (outside the middleware): a body
    cut short, or one that stops coming until the session's timeout, is mpnet's error too."""
    from mpnet.errors import ProbeError

    done = asyncio.Event()
    handlers: list[asyncio.Future[None]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        handlers.append(finished)
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            await writer.drain()
            if answer == "stalled_body":
                await done.wait()  # until the test is over
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            finished.set_result(None)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    try:
        session = await nm.create_http_session("s", url=url, proxy=None, timeout=0.5)
        async with session.get(url) as response:
            assert response.status == 200
            with pytest.raises(ProbeError) as caught:
                await response.read()
        assert not isinstance(caught.value, aiohttp.ClientError)
        assert caught.value.phase.value == "http"
    finally:
        done.set()
        await nm.close_all()
        server.close()
        # The handlers finish closing on this loop, not after it (a ResourceWarning later).
        async with asyncio.timeout(5):
            await asyncio.gather(*handlers)
