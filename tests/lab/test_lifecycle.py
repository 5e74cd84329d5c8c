"""Stopping and restarting one simulator on the same port, clean shutdown, plain mode, and the
profiles directory the lab writes."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from tests.lab.conftest import SHIPPED_NAMES, open_socket, wait_closed

from mpnet.config.profiles import ProfileSet, load_profiles
from mpnet.core.match import matches
from mpnet.lab import Lab


async def test_restart_keeps_the_port_and_serves_again(
    shipped: ProfileSet, http: aiohttp.ClientSession
) -> None:
    async with Lab([shipped.get("okx"), shipped.get("htx")]) as lab:
        before = lab.profile("okx")
        assert before.rest is not None and before.websocket is not None
        socket = await open_socket(http, before, lab.client_ssl_context())
        await socket.send(before.websocket.subscribe[0])
        assert matches(before.websocket.ack_match, await socket.receive())

        await lab.stop_exchange("okx")
        assert await wait_closed(socket.ws) == aiohttp.WSCloseCode.GOING_AWAY
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(before.rest.health_url, ssl=lab.client_ssl_context())
        # The other simulator is untouched.
        htx = lab.profile("htx")
        assert htx.rest is not None
        async with http.get(htx.rest.health_url, ssl=lab.client_ssl_context()) as response:
            assert response.status == 200

        await lab.start_exchange("okx")
        await lab.restart("okx")
        after = lab.profile("okx")
        assert after == before
        async with http.get(after.rest.health_url, ssl=lab.client_ssl_context()) as response:
            assert response.status == 200
        socket = await open_socket(http, after, lab.client_ssl_context())
        try:
            await socket.send(before.websocket.subscribe[0])
            assert matches(before.websocket.ack_match, await socket.receive())
        finally:
            await socket.ws.close()
        assert lab.connections("okx") == 2


async def test_stop_leaves_no_task_and_removes_the_ca(
    shipped: ProfileSet, http: aiohttp.ClientSession
) -> None:
    lab = Lab(shipped, server_ping_interval=0.05)
    await lab.start()
    assert lab.ca_file is not None and Path(lab.ca_file).is_file()
    ca_file = lab.ca_file
    sockets = []
    for name in ("htx", "binance", "kucoin"):
        profile = lab.profile(name)
        socket = await open_socket(http, profile, lab.client_ssl_context())
        assert profile.websocket is not None
        await socket.send(profile.websocket.subscribe[0])
        sockets.append(socket)
    await lab.stop()
    for socket in sockets:
        assert await wait_closed(socket.ws) is not None
    assert not Path(ca_file).exists()
    assert lab.ca_file is None
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_plain_mode_serves_http_and_ws(
    shipped: ProfileSet, http: aiohttp.ClientSession
) -> None:
    async with Lab([shipped.get("deribit")], tls=False) as lab:
        assert lab.ca_file is None and lab.client_ssl_context() is None
        rest_url, ws_url = lab.urls()["deribit"]
        assert rest_url is not None and rest_url.startswith("http://127.0.0.1:")
        assert ws_url is not None and urlsplit(ws_url).scheme == "ws"
        assert urlsplit(ws_url).path == "/ws/api/v2"
        async with http.get(rest_url) as response:
            assert (await response.json())["result"] == {"version": "1.2.26"}


async def test_lab_profiles_keep_the_real_paths(lab: Lab, shipped: ProfileSet) -> None:
    for name in SHIPPED_NAMES:
        real, simulated = shipped.get(name), lab.profile(name)
        assert real.websocket is not None and simulated.websocket is not None
        real_url, lab_url = urlsplit(real.websocket.url), urlsplit(simulated.websocket.url)
        assert lab_url.hostname == "127.0.0.1"
        assert lab_url.path == (real_url.path or "/")
        assert dataclasses.replace(simulated.websocket, url=real.websocket.url) == real.websocket


async def test_written_profiles_load_back_identical(lab: Lab, tmp_path: Path) -> None:
    written = lab.write_profiles_dir(tmp_path / "lab-profiles")
    loaded = load_profiles(extra_dirs=[written])
    assert loaded.names() == sorted(SHIPPED_NAMES)
    for name in SHIPPED_NAMES:
        assert dataclasses.replace(loaded.get(name), source="") == dataclasses.replace(
            lab.profile(name), source=""
        )


async def test_lab_profiles_are_not_paced(lab: Lab, shipped: ProfileSet) -> None:
    """A simulator has no public limit: its profiles carry no rate_limit (the shipped ones do)."""
    for name in SHIPPED_NAMES:
        assert shipped.get(name).rate_limit is not None
        assert lab.profile(name).rate_limit is None
