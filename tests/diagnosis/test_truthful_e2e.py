"""What the exchange itself says, end to end: `mpnet probe --lab` against the fault modes whose
answers are the exchanges' own (a refused subscription, maintenance on a status endpoint, a ping
that is never answered). The figure or the failure a user sees must be the one the exchange
caused: a rejection is reported as one, at once, quoting the answer; a status endpoint's 200 that
says "maintenance" is maintenance; a feed that delivers data is not failed by its ping.
"""

from __future__ import annotations

import pytest

from .test_findings_e2e import assert_failed, assert_table, probe

SHIPPED = (
    "binance",
    "binance-usdm",
    "bitfinex",
    "bitget",
    "bitmex",
    "bybit",
    "coinbase",
    "deribit",
    "gate",
    "htx",
    "kraken",
    "kucoin",
    "okx",
)


def faults(mode: str, names: tuple[str, ...] = SHIPPED) -> list[str]:
    return [arg for name in names for arg in ("--fault", f"{name}={mode}")]


def test_the_healthy_lab_of_all_13_exchanges_passes_without_findings() -> None:
    probed = probe("--lab", "--all")
    assert probed.exit_code == 0, probed.stdout
    results = probed.report["results"]
    assert len(results) == 2 * len(SHIPPED)
    for result in results:
        assert result["ok"], result
        assert result["findings"] == [], result
        if result["target"] == "ws":
            assert "ping_rtt" in result["phases"], result  # HTX's own ping is answered too


# -- SUBSCRIBE_REJECTED -------------------------------------------------------------------------


def test_subscribe_rejected_quotes_okx_error_at_once_and_shows_in_the_table() -> None:
    # A rejection ends the attempt when it arrives: with a 30 s budget, only the error answer
    # can make this attempt fail with kind "rejected" rather than "timeout".
    args = ["okx", "--lab", "--no-rest", "--timeout", "30", "--fault", "okx=subscribe_error"]
    probed = probe(*args)
    result = assert_failed(probed, "okx", "ws", "first_message")
    assert result["error"]["kind"] == "rejected"
    finding = probed.finding("okx", "ws", "SUBSCRIBE_REJECTED")
    assert f"answered the subscription on {result['url']} with an error" in finding["message"]
    assert '"event":"error","code":"60018"' in finding["message"]
    assert "clock" not in finding["message"]
    assert "`websocket.subscribe`" in finding["hint"] and "mpnet ws " in finding["hint"]
    assert not [f for f in result["findings"] if f["code"] == "NO_DATA"]

    table = probe(*args, json_format=False)
    assert table.exit_code == 1
    assert_table(table, "first_message", "SUBSCRIBE_REJECTED")


def test_subscribe_rejected_on_every_exchange_in_its_own_words() -> None:
    probed = probe("--lab", "--all", "--no-rest", *faults("subscribe_error"))
    assert probed.exit_code == 1
    for name in SHIPPED:
        result = assert_failed(probed, name, "ws", "first_message")
        assert result["error"]["kind"] == "rejected", result["error"]
        finding = probed.finding(name, "ws", "SUBSCRIBE_REJECTED")
        assert "with an error: '" in finding["message"]


def test_gate_rejects_a_subscription_stamped_by_a_clock_more_than_60_s_off() -> None:
    # The lab's Gate runs 120 s ahead: its REST Date shows the skew, and its WebSocket refuses
    # the subscription's `time`, as the real Gate does beyond 60 s.
    probed = probe("gate", "--lab", "--fault", "gate=clock_skew:120")
    assert probed.exit_code == 1
    rest = probed.result("gate", "rest")
    assert rest["ok"]
    assert probed.finding("gate", "rest", "CLOCK_SKEW")["severity"] == "warning"
    result = assert_failed(probed, "gate", "ws", "first_message")
    assert result["error"]["kind"] == "rejected"
    finding = probed.finding("gate", "ws", "SUBSCRIBE_REJECTED")
    message = finding["message"]
    assert '"error":{"code":2,"message":"Invalid argument provided"}' in message
    assert "the subscription carried this machine's time" in message
    gap = int(message.split(" s behind the answer's own time")[0].rsplit(", ", 1)[1])
    assert 115 <= gap <= 125, message  # 120 s, give or take the second boundaries
    assert "more than 60 s" in finding["hint"] and "timedatectl" in finding["hint"]


# -- EXCHANGE_MAINTENANCE -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("bitfinex", "'[0]'"),
        ("kraken", '"status": "maintenance"'),
        ("kucoin", '"status": "close"'),
    ],
)
def test_exchange_maintenance_on_a_status_endpoint_that_answers_200(name: str, quoted: str) -> None:
    probed = probe(name, "--lab", "--fault", f"{name}=maintenance")
    result = assert_failed(probed, name, "rest", "http")
    assert result["error"]["kind"] == "maintenance"
    assert probed.result(name, "ws")["ok"]
    finding = probed.finding(name, "rest", "EXCHANGE_MAINTENANCE")
    assert f"the status endpoint {result['url']} answered HTTP 200" in finding["message"]
    assert quoted in finding["message"]
    assert f"mpnet probe {name}" in finding["hint"]
    assert "not a network fault" in finding["hint"]


def test_exchange_maintenance_shows_in_the_table() -> None:
    table = probe("kraken", "--lab", "--fault", "kraken=maintenance", json_format=False)
    assert table.exit_code == 1
    assert_table(table, "http", "EXCHANGE_MAINTENANCE")


def test_maintenance_without_a_status_endpoint_is_the_503_it_is() -> None:
    probed = probe("okx", "--lab", "--no-ws", "--fault", "okx=maintenance")
    assert_failed(probed, "okx", "rest", "http")
    finding = probed.finding("okx", "rest", "HTTP_ERROR")
    assert "answered 503" in finding["message"]


# -- PING_UNANSWERED ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "what"), [("htx", "application ping"), ("binance", "frame")])
def test_a_feed_that_delivers_data_passes_when_its_ping_is_not_answered(
    name: str, what: str
) -> None:
    probed = probe(name, "--lab", "--no-rest", "--timeout", "2", "--fault", f"{name}=no_pong")
    assert probed.exit_code == 0, probed.stdout
    result = probed.result(name, "ws")
    assert result["ok"] and result["error"] is None
    assert "first_message" in result["phases"]
    assert "ping_rtt" not in result["phases"]  # no figure rather than a made-up one
    finding = probed.finding(name, "ws", "PING_UNANSWERED")
    assert finding["severity"] == "warning"
    assert "data messages arrived" in finding["message"] and what in finding["message"]
    assert "`websocket.ping`" in finding["hint"]


def test_an_unanswered_ping_is_a_warning_in_the_table() -> None:
    table = probe(
        "htx", "--lab", "--no-rest", "--timeout", "2", "--fault", "htx=no_pong", json_format=False
    )
    assert table.exit_code == 0
    assert "FAIL" not in table.stdout
    assert "PING_UNANSWERED" in table.stdout and "hint:" in table.stdout
