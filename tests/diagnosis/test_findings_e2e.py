"""Every diagnosis code, triggered end to end: `mpnet probe` (CliRunner, the real plan, engine
and net layer) against the lab's fault modes, pproxy, trustme servers, a closed port, a full
accept queue and an unresolvable name. Nothing is built by hand: each finding below is what a
user would see for that fault.

For each code: the failing phase in the JSON ``error.phase``, the finding's code, evidence in its
message that the error line alone does not give, a hint that names a flag, a config key or a
command, and the exit code (1 for failures, 0 when only warnings remain). A few also check the
table a person reads by default.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fixtures_servers import PROXY_PASSWORD, PROXY_USER, closed_port, with_scheme
from mpnet.cli.app import get_app

from .conftest import EXPIRING_IN_DAYS, Servers

#: Seconds per attempt: loopback answers in milliseconds; only the timeouts wait this long.
TIMEOUT = "1"

#: An actionable hint names something to type or edit: a flag, a `backticked` config key or
#: command, or an mpnet subcommand.
ACTIONABLE = re.compile(r"--[a-z][a-z-]+|`[^`]+`|\bmpnet [a-z]+")


@dataclass(frozen=True)
class Probed:
    """One `mpnet probe` run: exit code, both streams, and the JSON report when asked for."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        return json.loads(self.stdout)

    def result(self, exchange: str, target: str = "rest") -> dict[str, Any]:
        [found] = [
            r for r in self.report["results"] if r["exchange"] == exchange and r["target"] == target
        ]
        return found

    def finding(self, exchange: str, target: str, code: str) -> dict[str, Any]:
        """The one finding with ``code`` on that result, after checking it explains rather than
        repeats the error line and carries an actionable hint."""
        result = self.result(exchange, target)
        matching = [f for f in result["findings"] if f["code"] == code]
        assert len(matching) == 1, result["findings"]
        [finding] = matching
        error = result["error"]
        if error is not None:
            assert finding["message"] != error["message"]
            assert error["message"] not in finding["message"], "the finding repeats the error"
        assert finding["hint"].strip(), finding
        assert ACTIONABLE.search(finding["hint"]), f"nothing to act on: {finding['hint']!r}"
        return finding


def probe(*args: str, json_format: bool = True) -> Probed:
    argv = ["probe", "--timeout", TIMEOUT, *args]
    if json_format:
        argv += ["--format", "json"]
    outcome = CliRunner().invoke(get_app(), argv)
    if outcome.exception is not None and not isinstance(outcome.exception, SystemExit):
        raise outcome.exception
    return Probed(outcome.exit_code, outcome.stdout, outcome.stderr)


def assert_failed(probed: Probed, exchange: str, target: str, phase: str) -> dict[str, Any]:
    """Exit 1 and the result failed in ``phase``; returns the result."""
    assert probed.exit_code == 1, probed.stderr
    result = probed.result(exchange, target)
    assert result["ok"] is False
    assert result["error"] is not None
    assert result["error"]["phase"] == phase, result["error"]
    return result


def assert_table(probed: Probed, phase: str, code: str) -> None:
    """The default table names the failing phase, the code and a hint."""
    table = probed.stdout
    assert f"FAIL {phase}" in table, table
    assert code in table
    assert "hint:" in table


# -- DNS and TCP --------------------------------------------------------------------------------


def test_dns_failure_for_a_name_that_does_not_exist(profiles_dir: Path) -> None:
    probed = probe("nxdomain", "--profiles", str(profiles_dir))
    result = assert_failed(probed, "nxdomain", "rest", "dns")
    assert result["error"]["kind"] == "nxdomain"
    finding = probed.finding("nxdomain", "rest", "DNS_FAILURE")
    assert "api.exchange.invalid" in finding["message"]
    assert "NXDOMAIN" in finding["message"]
    assert "the connection is direct (no proxy is configured)" in finding["message"]
    assert "getent hosts api.exchange.invalid" in finding["hint"]


def test_dns_failure_without_a_resolver_shows_in_the_table(profiles_dir: Path) -> None:
    probed = probe("noresolver", "--profiles", str(profiles_dir))
    result = assert_failed(probed, "noresolver", "rest", "dns")
    assert result["error"]["kind"] == "no_resolver"
    finding = probed.finding("noresolver", "rest", "DNS_FAILURE")
    assert "no DNS resolver answered for api.exchange.example" in finding["message"]
    assert "the connection is direct (no proxy is configured)" in finding["message"]
    assert "socks5h://" in finding["hint"]

    table = probe("noresolver", "--profiles", str(profiles_dir), json_format=False)
    assert table.exit_code == 1
    assert_table(table, "dns", "DNS_FAILURE")


def test_connect_refused_on_a_closed_port(profiles_dir: Path) -> None:
    probed = probe("refused", "--profiles", str(profiles_dir))
    result = assert_failed(probed, "refused", "rest", "tcp")
    port = result["url"].split(":")[2].split("/")[0]
    finding = probed.finding("refused", "rest", "CONNECT_REFUSED")
    assert f"127.0.0.1:{port} refused the TCP connection" in finding["message"]
    assert "a direct connection, no proxy is configured" in finding["message"]
    assert f"nc -vz 127.0.0.1 {port}" in finding["hint"]


def test_connect_timeout_on_a_full_accept_queue(servers: Servers, profiles_dir: Path) -> None:
    if servers.full_backlog is None:
        pytest.skip("this kernel completes handshakes past a full accept queue (listen(0))")
    probed = probe("blackhole", "--profiles", str(profiles_dir))
    result = assert_failed(probed, "blackhole", "rest", "tcp")
    assert result["error"]["kind"] == "timeout"
    finding = probed.finding("blackhole", "rest", "CONNECT_TIMEOUT")
    assert f"127.0.0.1:{servers.full_backlog} got no answer at all" in finding["message"]
    assert "no proxy is configured" in finding["message"]
    assert "--proxy" in finding["hint"]


# -- proxies ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "socks5"])
def test_proxy_unreachable_on_a_closed_port(scheme: str) -> None:
    proxy = f"{scheme}://127.0.0.1:{closed_port()}"
    probed = probe("binance", "--lab", "--no-ws", "--proxy", proxy)
    result = assert_failed(probed, "binance", "rest", "tcp")
    finding = probed.finding("binance", "rest", "PROXY_UNREACHABLE")
    assert f"the proxy {proxy} (chosen by cli --proxy)" in finding["message"]
    assert "refused the TCP connection" in finding["message"]
    assert result["proxy"]["layer"] == "cli"
    port = proxy.rsplit(":", 1)[1]
    assert f"nc -vz 127.0.0.1 {port}" in finding["hint"]
    assert "--no-proxy" in finding["hint"]


@pytest.mark.parametrize("listener", ["http_auth", "socks5_auth"])
@pytest.mark.parametrize("credentials", ["missing", "wrong"])
def test_proxy_auth_required(pproxy_urls: dict[str, str], listener: str, credentials: str) -> None:
    with_auth = pproxy_urls[listener]
    bare = with_auth.replace(f"{PROXY_USER}:{PROXY_PASSWORD}@", "")
    proxy = bare if credentials == "missing" else with_auth.replace(PROXY_PASSWORD, "not-it")
    probed = probe("binance", "--lab", "--proxy", proxy)
    for target in ("rest", "ws"):
        assert_failed(probed, "binance", target, "proxy")
        finding = probed.finding("binance", target, "PROXY_AUTH_REQUIRED")
        message, hint = finding["message"], finding["hint"]
        if listener == "http_auth":
            assert "answered 407" in message
            assert "it asks for 'Basic realm=\"simple\"'" in message  # pproxy's challenge
        elif credentials == "missing":
            assert "asked for SOCKS authentication" in message
        else:
            assert "refused SOCKS authentication" in message
        if credentials == "missing":
            assert "no credentials were sent" in message
            assert "USER:PASSWORD@127.0.0.1" in hint
        else:
            assert f"credentials for user {PROXY_USER!r} were sent" in message
            assert "not-it" not in message + hint + probed.stdout
            assert "percent-encode" in hint
        assert "cli --proxy" in message
        assert "`--proxy`" in hint


def test_proxy_auth_required_shows_in_the_table(pproxy_urls: dict[str, str]) -> None:
    bare = pproxy_urls["http_auth"].replace(f"{PROXY_USER}:{PROXY_PASSWORD}@", "")
    probed = probe("binance", "--lab", "--no-ws", "--proxy", bare, json_format=False)
    assert probed.exit_code == 1
    assert_table(probed, "proxy", "PROXY_AUTH_REQUIRED")


def test_proxy_auth_required_by_an_ntlm_only_proxy(servers: Servers) -> None:
    proxy = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{servers.ntlm_proxy}"
    probed = probe("binance", "--lab", "--no-ws", "--proxy", proxy)
    assert_failed(probed, "binance", "rest", "proxy")
    finding = probed.finding("binance", "rest", "PROXY_AUTH_REQUIRED")
    assert "it asks for 'NTLM, Negotiate'" in finding["message"]
    assert "cntlm" in finding["hint"]
    assert PROXY_PASSWORD not in probed.stdout


def test_proxy_denied_when_connect_gets_403(servers: Servers) -> None:
    proxy = f"http://127.0.0.1:{servers.denying_proxy}"
    probed = probe("binance", "--lab", "--no-ws", "--proxy", proxy)
    result = assert_failed(probed, "binance", "rest", "proxy")
    target_port = result["url"].split(":")[2].split("/")[0]
    finding = probed.finding("binance", "rest", "PROXY_DENIED")
    assert f"the proxy {proxy} (chosen by cli --proxy)" in finding["message"]
    message = finding["message"]
    assert f"refused to open a tunnel to 127.0.0.1:{target_port} (status 403)" in message
    assert "page 'CONNECT to this destination is not allowed by policy'" in message
    assert f"allow-list 127.0.0.1:{target_port}" in finding["hint"]
    assert "mpnet proxy explain binance" in finding["hint"]


def test_path_divergence_names_both_routes_and_layers(
    pproxy_urls: dict[str, str], tmp_path: Path
) -> None:
    proxy = pproxy_urls["http"]
    config = tmp_path / "mpnet.yaml"
    config.write_text(
        f"exchanges:\n  binance:\n    proxy: {{rest: {proxy}, ws: direct}}\n", encoding="utf-8"
    )
    probed = probe("binance", "--lab", "--config", str(config))
    assert probed.exit_code == 0, probed.stdout
    rest, ws = probed.result("binance", "rest"), probed.result("binance", "ws")
    assert rest["ok"] and ws["ok"]
    assert rest["proxy"]["url"] == proxy and ws["proxy"]["url"] is None
    for target in ("rest", "ws"):
        finding = probed.finding("binance", target, "PATH_DIVERGENCE")
        assert finding["severity"] == "warning"
        message = finding["message"]
        assert f"REST ({rest['url']}) goes via {proxy}" in message
        assert f"WebSocket ({ws['url']}) goes direct" in message
        assert message.count("exchanges.binance") == 2  # the layer of each route
        assert "`exchanges.binance.proxy`" in finding["hint"]


# -- TLS ----------------------------------------------------------------------------------------


def test_tls_untrusted_when_the_lab_ca_is_not_trusted(servers: Servers) -> None:
    probed = probe("binance", "--lab", "--ca-bundle", str(servers.tls.ca_pem))
    for target in ("rest", "ws"):
        assert_failed(probed, "binance", target, "tls")
        finding = probed.finding("binance", target, "TLS_UNTRUSTED")
        message = finding["message"]
        assert "O=mpnet lab" in message  # the issuer
        assert str(servers.tls.ca_pem) in message  # the bundle that did not trust it
        assert "--ca-bundle" in finding["hint"]
        assert "exchanges.binance.ssl.ca_bundle" in finding["hint"]


def test_tls_untrusted_server_of_an_unknown_ca(servers: Servers, profiles_dir: Path) -> None:
    probed = probe(
        "untrusted", "--profiles", str(profiles_dir), "--ca-bundle", str(servers.tls.ca_pem)
    )
    assert_failed(probed, "untrusted", "rest", "tls")
    finding = probed.finding("untrusted", "rest", "TLS_UNTRUSTED")
    assert "Testing CA" in finding["message"]  # trustme's issuer name
    assert "--ca-bundle" in finding["hint"]


def test_tls_expired_shows_in_the_table(servers: Servers, profiles_dir: Path) -> None:
    args = ["expired", "--profiles", str(profiles_dir), "--ca-bundle", str(servers.tls.ca_pem)]
    probed = probe(*args)
    assert_failed(probed, "expired", "rest", "tls")
    finding = probed.finding("expired", "rest", "TLS_EXPIRED")
    assert f"127.0.0.1:{servers.expired}" in finding["message"]
    assert "Testing CA" in finding["message"]
    assert "has expired" in finding["message"]
    assert "date -u" in finding["hint"]
    # The CA is the one the user passed: a private issuer is no sign of TLS inspection here.
    assert "inspecting" not in finding["hint"]

    table = probe(*args, json_format=False)
    assert table.exit_code == 1
    assert_table(table, "tls", "TLS_EXPIRED")


def test_tls_hostname_mismatch(servers: Servers, profiles_dir: Path) -> None:
    probed = probe(
        "wronghost", "--profiles", str(profiles_dir), "--ca-bundle", str(servers.tls.ca_pem)
    )
    assert_failed(probed, "wronghost", "rest", "tls")
    finding = probed.finding("wronghost", "rest", "TLS_HOSTNAME_MISMATCH")
    assert "does not list 127.0.0.1 among its names" in finding["message"]
    assert "Testing CA" in finding["message"]
    assert f"chains to the CA bundle {servers.tls.ca_pem}" in finding["message"]
    assert "mpnet profiles show wronghost" in finding["hint"]


def test_cert_expiring_is_a_warning_on_a_working_probe(
    servers: Servers, profiles_dir: Path
) -> None:
    probed = probe(
        "expiring", "--profiles", str(profiles_dir), "--ca-bundle", str(servers.tls.ca_pem)
    )
    assert probed.exit_code == 0, probed.stdout
    result = probed.result("expiring", "rest")
    assert result["ok"] and result["error"] is None
    finding = probed.finding("expiring", "rest", "CERT_EXPIRING")
    assert finding["severity"] == "warning"
    assert f"expires in {EXPIRING_IN_DAYS} days" in finding["message"]
    assert result["tls"]["cert_not_after"] in finding["message"]
    assert "Testing CA" in finding["message"]
    assert "inspecting" not in finding["hint"]  # the user's own CA (--ca-bundle)
    assert "mpnet probe expiring" in finding["hint"]


def test_insecure_tls_is_warned_on_every_surface() -> None:
    probed = probe("binance", "--lab", "--insecure")
    assert probed.exit_code == 0, probed.stdout
    warning = [line for line in probed.stderr.splitlines() if line.startswith("mpnet: warning:")]
    assert len(warning) == 1, probed.stderr
    assert "verification is OFF" in warning[0] and "--insecure" in warning[0]
    for target in ("rest", "ws"):
        result = probed.result("binance", target)
        assert result["ok"]
        assert result["ssl"]["verify"] is False
        finding = probed.finding("binance", target, "INSECURE_TLS")
        assert finding["severity"] == "warning"
        assert "the cli layer turned verification off" in finding["message"]
        assert "`--insecure`" in finding["hint"]


# -- what the exchange answers ------------------------------------------------------------------


def test_geo_blocked_rest_and_ws_shows_in_the_table() -> None:
    args = ["binance", "--lab", "--fault", "binance=geo_block"]
    probed = probe(*args)
    for target, phase in (("rest", "http"), ("ws", "ws_upgrade")):
        assert_failed(probed, "binance", target, phase)
        finding = probed.finding("binance", target, "GEO_BLOCKED")
        assert "answered 451" in finding["message"]
        assert "restricted location" in finding["message"]
        assert "`exchanges.binance.proxy`" in finding["hint"]

    table = probe(*args, json_format=False)
    assert table.exit_code == 1
    assert_table(table, "http", "GEO_BLOCKED")
    assert_table(table, "ws_upgrade", "GEO_BLOCKED")


def test_waf_blocked() -> None:
    probed = probe("binance", "--lab", "--fault", "binance=waf")
    for target, phase in (("rest", "http"), ("ws", "ws_upgrade")):
        assert_failed(probed, "binance", target, phase)
        finding = probed.finding("binance", target, "WAF_BLOCKED")
        assert "got 403 from CloudFront" in finding["message"]
        assert "Server: CloudFront" in finding["message"]
        assert "`exchanges.binance.proxy`" in finding["hint"]


def test_rate_limited_hint_waits_for_retry_after() -> None:
    probed = probe("binance", "--lab", "--fault", "binance=rate_limit")
    for target, phase in (("rest", "http"), ("ws", "ws_upgrade")):
        assert_failed(probed, "binance", target, phase)
        finding = probed.finding("binance", target, "RATE_LIMITED")
        assert "429 Too Many Requests" in finding["message"]
        assert "Retry-After: 7" in finding["message"]
        assert "wait 7 s" in finding["hint"]
        assert "`-n`" in finding["hint"]


def test_ws_upgrade_rejected() -> None:
    probed = probe("binance", "--lab", "--fault", "binance=refuse_upgrade")
    assert probed.result("binance", "rest")["ok"]
    result = assert_failed(probed, "binance", "ws", "ws_upgrade")
    finding = probed.finding("binance", "ws", "WS_UPGRADE_REJECTED")
    assert f"the upgrade of {result['url']} got HTTP 403 instead of 101" in finding["message"]
    assert "body" in finding["message"]
    assert "mpnet ws " in finding["hint"]


def test_no_data_after_the_subscription() -> None:
    probed = probe("binance", "--lab", "--no-rest", "--fault", "binance=no_data")
    result = assert_failed(probed, "binance", "ws", "first_message")
    assert {"tcp", "tls", "ws_upgrade"} <= set(result["phases"])
    finding = probed.finding("binance", "ws", "NO_DATA")
    assert result["url"] in finding["message"]
    assert "`data_match`" in finding["message"]
    # The lab acknowledged the subscription: the finding quotes that answer.
    assert "the server answered" in finding["message"]
    assert """(the last: '{"result":null""" in finding["message"]  # Binance's ack
    assert "mpnet profiles show binance" in finding["hint"]


def test_clock_skew_is_a_warning_on_a_working_probe() -> None:
    probed = probe("binance", "--lab", "--no-ws", "--fault", "binance=clock_skew:5")
    assert probed.exit_code == 0, probed.stdout
    result = probed.result("binance", "rest")
    assert result["ok"]
    finding = probed.finding("binance", "rest", "CLOCK_SKEW")
    assert finding["severity"] == "warning"
    # The simulator's clock runs 5 s ahead: its serverTime says this machine is behind.
    offset = re.search(
        r"this machine's clock is (\d+) ms behind binance's \(offset \+\d+ ±(\d+) ms, "
        r"from serverTime in the REST answer",
        finding["message"],
    )
    assert offset is not None, finding["message"]
    assert abs(int(offset.group(1)) - 5000) <= int(offset.group(2)) + 1
    assert "recvWindow" in finding["message"]
    assert "timedatectl" in finding["hint"]
    clock = result["clock"]
    assert clock["source"] == "rest.server_time" and clock["path"] == "serverTime"
    assert abs(clock["offset_ms"] - 5000) <= clock["error_ms"]


def test_socks5h_url_view_is_the_same_listener(pproxy_urls: dict[str, str]) -> None:
    """A control for the proxy tests above: with the right credentials the same pproxy
    listeners carry both targets, so their failures come from the credentials alone."""
    proxy = with_scheme(pproxy_urls["socks5_auth"], "socks5h")
    probed = probe("binance", "--lab", "--proxy", proxy)
    assert probed.exit_code == 0, probed.stdout
    assert PROXY_PASSWORD not in probed.stdout + probed.stderr
