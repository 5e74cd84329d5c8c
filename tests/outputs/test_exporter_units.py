"""The exporter's pure parts: --listen parsing and the scrape-timeout budget."""

from __future__ import annotations

import pytest

from mpnet.errors import UsageError
from mpnet.probe.exporter import Listen, parse_listen, probe_budget


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
