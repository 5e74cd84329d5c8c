"""The exporter's pure parts: --listen parsing, the scrape-timeout budget and its pacing."""

from __future__ import annotations

import pytest

from mpnet.errors import UsageError
from mpnet.serve.app import probe_budget
from mpnet.serve.listen import Listen, parse_listen


@pytest.mark.parametrize(
    ("text", "host", "port", "loopback"),
    [
        ("127.0.0.1:9115", "127.0.0.1", 9115, True),
        ("127.0.0.2:0", "127.0.0.2", 0, True),
        ("localhost:9115", "localhost", 9115, True),
        ("[::1]:9115", "::1", 9115, True),
        ("0.0.0.0:9115", "0.0.0.0", 9115, False),
        ("10.1.2.3:80", "10.1.2.3", 80, False),
        ("[::]:9115", "::", 9115, False),
        ("exporter.internal:9115", "exporter.internal", 9115, False),
    ],
)
def test_parse_listen(text: str, host: str, port: int, loopback: bool) -> None:
    listen = parse_listen(text)
    assert listen == Listen(host=host, port=port)
    assert listen.loopback is loopback


@pytest.mark.parametrize(
    "text", ["", "9115", ":9115", "127.0.0.1", "127.0.0.1:", "host:port", "h:70000", "::1:9115"]
)
def test_parse_listen_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="--listen"):
        parse_listen(text)


@pytest.mark.parametrize(
    ("timeout", "header", "budget"),
    [
        (10.0, None, 10.0),
        (10.0, "15", 10.0),
        (10.0, "5", 4.5),
        (3.0, "3.2", 2.7),
        (10.0, "0.4", 0.1),  # never zero or negative: the probe still gets a sliver
        (10.0, "junk", 10.0),
        (10.0, "nan", 10.0),
        (10.0, "-1", 10.0),
    ],
)
def test_probe_budget(timeout: float, header: str | None, budget: float) -> None:
    assert probe_budget(timeout, header) == pytest.approx(budget)


@pytest.mark.parametrize(
    ("exchange", "target", "budget", "timeout", "pacing"),
    [
        # Bitfinex: 0.3 requests/s, so the WebSocket request waits 3.33 s after the REST one.
        ("bitfinex", None, 10.0, 10 - 1 / 0.3, 1 / 0.3),
        ("bitfinex", "ws", 10.0, 10.0, 0.0),  # one request: nothing to wait for
        ("okx", None, 10.0, 10 - 1 / 3, 1 / 3),
        ("kraken", None, 4.0, 0.1, 4.0),  # 4 s of spacing leave less than the floor: the floor
    ],
)
def test_a_scrapes_budget_leaves_room_for_the_exchanges_pacing(
    exchange: str, target: str | None, budget: float, timeout: float, pacing: float
) -> None:
    from mpnet.config.layers import NetworkOptions
    from mpnet.config.model import ConfigFile
    from mpnet.config.profiles import load_profiles
    from mpnet.probe.exporter import ProbeExporter, pacing_s

    exporter = ProbeExporter(
        list(load_profiles()),
        config=ConfigFile(),
        options=NetworkOptions(),
        env={},
        timeout=10,
        system_store=False,
    )
    plan = exporter.plan(exchange, target, budget)
    assert plan.timeout == pytest.approx(timeout)
    assert pacing_s(plan) == pytest.approx(pacing)
