"""TLS_INTERCEPTED end to end: an office's TLS-inspecting proxy on 127.0.0.1.

The proxy is an HTTP CONNECT proxy that, like mitmproxy or Zscaler, answers every tunnel itself:
each CONNECT, whatever name it asks for, lands on a local server holding a certificate for that
name signed by the office's own CA. The user has put that CA in ``--ca-bundle``, so every
handshake verifies; mpnet still says the exchange's connection is intercepted, as an info
finding that changes no exit code and fails no JUnit case. The exchange's name is never resolved
here: the proxy gets it in the CONNECT line (and the suite's resolver refuses any name anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from mpnet.cli.app import get_app
from route_servers import AnycastRelay

from .conftest import BackgroundLoop

#: A public-looking exchange name under the reserved .example TLD: nothing could answer for it.
HOST = "api.exchange.example"
#: The office CA's organisation, as the issuer shows it.
OFFICE_CA = "Contoso Inspection CA"


@dataclass(frozen=True)
class Office:
    """The inspecting proxy's URL, the office CA's bundle, the profiles, and the relay (it
    counts the tunnels it opened, so a test can tell the probe really went through it)."""

    proxy_url: str
    ca_pem: Path
    profiles: Path
    relay: AnycastRelay


async def _answer_health(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError):
        await reader.readuntil(b"\r\n\r\n")
        body = b'{"ok": true}'
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
    writer.transport.abort()


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Office]:
    directory = tmp_path_factory.mktemp("office")
    ca = trustme.CA(organization_name=OFFICE_CA)
    ca_pem = directory / "office-ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(HOST).configure_cert(context)
    (directory / "intercepted.yaml").write_text(
        "name: intercepted\n"
        "title: Exchange behind the office proxy\n"
        "rest:\n"
        f"  base_url: https://{HOST}\n"
        "  health: {method: GET, path: /health, expect_status: 200}\n",
        encoding="utf-8",
    )
    background = BackgroundLoop()
    server = background.run(asyncio.start_server(_answer_health, "127.0.0.1", 0, ssl=context))
    relay = background.run(AnycastRelay(to_port=int(server.sockets[0].getsockname()[1])).start())
    try:
        yield Office(relay.url, ca_pem, directory, relay)
    finally:

        async def close_all() -> None:
            await relay.stop()
            server.close()
            await server.wait_closed()

        background.run(close_all())
        background.close()


def probe(office: Office, *args: str) -> tuple[int, str]:
    outcome = CliRunner().invoke(
        get_app(),
        [
            *("probe", "intercepted", "--profiles", str(office.profiles)),
            *("--ca-bundle", str(office.ca_pem), "--proxy", office.proxy_url, "--timeout", "5"),
            *args,
        ],
    )
    if outcome.exception is not None and not isinstance(outcome.exception, SystemExit):
        raise outcome.exception
    return outcome.exit_code, outcome.stdout


def test_verified_through_the_inspecting_proxy_is_reported_as_interception(
    office: Office,
) -> None:
    tunnels = office.relay.tunnels
    code, out = probe(office, "--format", "json")
    assert code == 0, out
    assert office.relay.tunnels > tunnels  # the probe went through the inspecting proxy
    [result] = json.loads(out)["results"]
    assert result["ok"] and result["error"] is None and result["ssl"]["verify"] is True
    assert OFFICE_CA in result["tls"]["issuer"]
    [finding] = [f for f in result["findings"] if f["code"] == "TLS_INTERCEPTED"]
    assert finding["severity"] == "info"
    assert f"the certificate for {HOST}:443 via {office.proxy_url}" in finding["message"]
    assert OFFICE_CA in finding["message"]
    assert (
        f"the CA bundle {office.ca_pem} (from the cli layer) trusts that CA" in (finding["message"])
    )
    # How to see it for yourself goes the way mpnet went: through the same proxy.
    port = office.proxy_url.rsplit(":", 1)[1]
    assert f"-connect {HOST}:443 -servername {HOST} -proxy 127.0.0.1:{port}`" in finding["hint"]
    assert "API keys" in finding["hint"]


def test_the_table_shows_it_as_info_and_the_exit_code_stays_0(office: Office) -> None:
    code, out = probe(office)
    assert code == 0, out
    [line] = [line for line in out.splitlines() if "TLS_INTERCEPTED" in line]
    assert line.split()[0] == "i", line  # the info mark, not ✗ nor !
    assert "hint:" in out


def test_junit_keeps_the_case_passing_and_says_it_in_system_out(office: Office) -> None:
    code, out = probe(office, "--format", "junit")
    assert code == 0, out
    suite = ET.fromstring(out.split("\n", 1)[1])
    assert suite.get("failures") == "0"
    [case] = suite.findall("testcase")
    assert case.find("failure") is None
    system_out = case.findtext("system-out") or ""
    assert "info TLS_INTERCEPTED:" in system_out


def test_prometheus_shows_a_private_issuer(office: Office) -> None:
    code, out = probe(office, "--format", "prometheus")
    assert code == 0, out
    labels = {"exchange": "intercepted", "target": "rest"}
    found = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(out)
        for s in family.samples
    }
    private = frozenset((labels | {"issuer_kind": "private"}).items())
    assert found["mpnet_probe_tls_info", private] == 1
    assert not [k for k in found if k[0] == "mpnet_probe_tls_info" and k[1] != private]
    code_label = frozenset((labels | {"code": "TLS_INTERCEPTED"}).items())
    assert found["mpnet_probe_findings", code_label] == 1
    assert found["mpnet_probe_success", frozenset(labels.items())] == 1


def test_the_lab_on_127_0_0_1_with_its_own_ca_stays_quiet() -> None:
    outcome = CliRunner().invoke(get_app(), ["probe", "okx", "--lab", "--format", "json"])
    assert outcome.exit_code == 0, outcome.stdout
    results = json.loads(outcome.stdout)["results"]
    assert results and all(r["tls"] and r["tls"]["issuer"] for r in results)
    assert "mpnet lab" in results[0]["tls"]["issuer"]  # a private CA, on a private address
    assert not [f for r in results for f in r["findings"] if f["code"] == "TLS_INTERCEPTED"]
