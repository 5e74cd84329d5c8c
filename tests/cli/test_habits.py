"""The habits of curl, httpie and blackbox_exporter users: misspellings get "did you mean",
``--debug`` goes anywhere, and every bad input is one plain line with exit 2.

Commands run through Typer's runner on an 80-column dumb terminal; names other than localhost do
not resolve (the autouse fixture in conftest.py), so nothing leaves the machine.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import trustme
from typer.testing import CliRunner

from mpnet.cli.app import get_app

TERMINAL = {"COLUMNS": "80", "TERM": "dumb"}
PASSWORD = "s3cret-Pa55"


def invoke(*args: str, env: dict[str, str] | None = None, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(get_app(), list(args), env={**TERMINAL, **(env or {})}, input=stdin)


def one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    """The single ``mpnet: error:`` line of a failed command (and nothing else on stderr)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mpnet: error: "), result.stderr
    assert "Traceback" not in result.output and "╭" not in result.output
    return lines[0].removeprefix("mpnet: error: ")


# -- 4. did you mean -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["probe", "derbit"], "unknown exchange 'derbit'; did you mean 'deribit'?"),
        (
            ["probe", "BINANCE-USMD"],
            "unknown exchange 'BINANCE-USMD'; did you mean 'binance-usdm'?",
        ),
        (["proxy", "explain", "krakn"], "unknown exchange 'krakn'; did you mean 'kraken'?"),
        (["ssl", "explain", "okz"], "unknown exchange 'okz'; did you mean 'okx'?"),
        (["probe", "--lab", "okx", "--fault", "okx=wfa"], "did you mean 'waf'?"),
        (["probe", "--lab", "okx", "--fault", "okx=clock-skwe:3"], "did you mean 'clock_skew'?"),
        (["probe", "okx", "--format", "jsn"], "--format 'jsn': did you mean 'json'?"),
        (["ws", "ws://127.0.0.1:9/", "--backend", "aiohtp"], "did you mean 'aiohttp'?"),
        (["profiles", "list", "--format", "tabel"], "--format 'tabel': did you mean 'table'?"),
    ],
)
def test_misspellings_get_did_you_mean(args: list[str], expected: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert one_error_line(result) == expected or expected in one_error_line(result)


def test_nothing_close_lists_what_there_is() -> None:
    result = invoke("probe", "nowhere")
    assert result.exit_code == 2
    assert one_error_line(result).startswith(
        "unknown exchange 'nowhere'; known exchanges: binance, binance-usdm, bitfinex"
    )


def test_format_xml_lists_the_formats_without_a_box() -> None:
    result = invoke("probe", "okx", "--format", "xml")
    assert result.exit_code == 2
    assert one_error_line(result) == (
        "--format 'xml': expected one of: table, json, junit, prometheus, html"
    )
    assert "Value error" not in result.output


def test_a_fault_for_an_exchange_not_probed_says_so() -> None:
    result = invoke("probe", "--lab", "--fault", "okx=waf", "deribit")
    assert result.exit_code == 2
    line = one_error_line(result)
    assert line == (
        "--fault okx=waf: 'okx' is not among the probed exchanges (deribit); name it too, "
        "or drop this --fault"
    )
    assert "unknown exchange" not in line


def test_duplicate_names_are_probed_once_with_and_without_lab() -> None:
    labbed = invoke("probe", "--lab", "deribit", "deribit", "--no-ws", "--format", "json")
    offline = invoke(
        "probe", "deribit", "DERIBIT", "--no-ws", "--format", "json", "--timeout", "10"
    )
    assert labbed.exit_code == 0, labbed.stderr
    assert offline.exit_code == 1, offline.stderr  # no DNS here: the probe fails, once
    for result in (labbed, offline):
        rows = [(r["exchange"], r["target"]) for r in json.loads(result.stdout)["results"]]
        assert rows == [("deribit", "rest")]


# -- 5. --debug after the subcommand ------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--debug", "probe", "derbit"],
        ["probe", "derbit", "--debug"],
        ["proxy", "explain", "derbit", "--debug"],
        ["ws", "ftp://127.0.0.1/", "--debug"],
    ],
)
def test_debug_shows_the_traceback_before_or_after_the_subcommand(args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("mpnet: error: ")


def test_debug_as_an_option_value_is_a_value() -> None:
    # `--send --debug` sends the text "--debug": the parser, not a scan of argv, decides.
    result = invoke("ws", "https://127.0.0.1/", "--send", "--debug")
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
    assert one_error_line(result) == (
        "URL must start with ws:// or wss://, not 'https://127.0.0.1/'"
    )


def test_without_debug_no_traceback() -> None:
    result = invoke("probe", "derbit")
    assert result.exit_code == 2 and "Traceback" not in result.stderr


# -- 8. ssl explain loads the CA bundle it explains ------------------------------------------


@pytest.fixture(scope="module")
def bad_bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("bundles")
    files = {
        "text": b"this is not a certificate\n",
        "binary": bytes(range(256)) * 4,
        "damaged": b"-----BEGIN CERTIFICATE-----\nnot*base64\n-----END CERTIFICATE-----\n",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = directory / f"{name}.pem"
        paths[name].write_bytes(data)
    paths["good"] = directory / "good.pem"
    trustme.CA().cert_pem.write_to_path(str(paths["good"]))
    paths["missing"] = directory / "missing.pem"
    return paths


@pytest.mark.parametrize(
    ("bundle", "problem"),
    [
        ("missing", "no such file or directory"),
        ("text", "not a PEM bundle: no -----BEGIN CERTIFICATE----- block in it"),
        ("binary", "not a PEM bundle: no -----BEGIN CERTIFICATE----- block in it"),
        ("damaged", "a certificate in it is damaged (not valid PEM)"),
    ],
)
@pytest.mark.parametrize("command", [["ssl", "explain", "deribit"], ["probe", "deribit"]])
def test_a_bad_ca_bundle_is_refused_the_same_way_by_ssl_explain_and_probe(
    bad_bundles: dict[str, Path], bundle: str, problem: str, command: list[str]
) -> None:
    path = bad_bundles[bundle]
    result = invoke(*command, "--ca-bundle", str(path))
    assert result.exit_code == 2
    assert one_error_line(result).startswith(
        f"cannot load CA {path} (chosen by cli layer): {problem}"
    )
    assert "_ssl.c" not in result.stderr and "X509" not in result.stderr


def test_ssl_explain_with_a_good_bundle_and_an_env_bundle_that_is_missing(
    bad_bundles: dict[str, Path],
) -> None:
    result = invoke("ssl", "explain", "deribit", "--ca-bundle", str(bad_bundles["good"]))
    assert result.exit_code == 0, result.stderr
    assert str(bad_bundles["good"]) in result.stdout
    missing = bad_bundles["missing"]
    result = invoke("ssl", "explain", "deribit", env={"SSL_CERT_FILE": str(missing)})
    assert result.exit_code == 2
    assert one_error_line(result) == (
        f"cannot load CA {missing} (chosen by env layer): no such file or directory"
    )


def test_ssl_explain_help_says_it_does_not_connect() -> None:
    result = invoke("ssl", "--help")
    assert result.exit_code == 0
    assert "without connecting" in " ".join(result.stdout.split())


# -- 11. messages ---------------------------------------------------------------------------


def test_config_directory_is_a_directory(tmp_path: Path) -> None:
    result = invoke("probe", "okx", "--config", str(tmp_path))
    assert result.exit_code == 2
    assert one_error_line(result) == f"--config {tmp_path}: is a directory, not a config file"
    result = invoke("probe", "okx", env={"MPNET_CONFIG": str(tmp_path)})
    assert one_error_line(result) == (
        f"$MPNET_CONFIG {tmp_path}: is a directory, not a config file"
    )


def test_binary_config_file_is_one_plain_sentence(tmp_path: Path) -> None:
    config = tmp_path / "mpnet.yaml"
    config.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(200)))
    result = invoke("probe", "okx", "--config", str(config))
    assert result.exit_code == 2
    assert one_error_line(result) == f"{config}: is a binary file, not YAML text"
    config.write_bytes(b"proxy:\n  https: http://caf\xe9:3128\n")
    result = invoke("probe", "okx", "--config", str(config))
    assert one_error_line(result) == (
        f"{config}: is not UTF-8 text (byte 26 is 0xe9); save it as UTF-8"
    )
    assert "codec" not in result.stderr


@pytest.mark.parametrize(
    ("proxy", "expected"),
    [
        (
            "http://proxy.corp:3128\nhttp://other:3128",
            "contains a newline (a control character, U+000A); a proxy URL is one line",
        ),
        ("http://proxy.corp:31\t28", "contains a tab (a control character, U+0009)"),
        (
            f"http://alice:pa ss{PASSWORD}@proxy.corp:3128",
            "a space in the user name or password must be percent-encoded as %20",
        ),
        ("http://" + "a" * 254 + ":3128", "the host name is 254 characters long; DNS allows"),
        (
            "http://" + "b" * 64 + ".corp:3128",
            "the host name's label 'bbbbbbbbbbbbbbbbbbbb...' is 64 characters long; DNS allows "
            "at most 63",
        ),
    ],
)
def test_proxy_url_problems_are_named(proxy: str, expected: str) -> None:
    result = invoke("probe", "okx", "--proxy", proxy)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert line.startswith("--proxy: ") and expected in line
    assert "port" not in line.split(": ", 2)[-1]
    assert PASSWORD not in result.output


def test_proxy_host_of_253_characters_is_accepted() -> None:
    host = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(host) == 253
    result = invoke("proxy", "explain", "--url", "https://x.test/", "--proxy", f"http://{host}:1")
    assert result.exit_code == 0, result.stderr


def test_no_proxy_entry_that_never_matches_is_warned_about() -> None:
    result = invoke(
        "proxy",
        "explain",
        "--url",
        "https://10.1.2.3/",
        "--format",
        "json",
        env={"NO_PROXY": "localhost,10.0.0.0/33", "HTTPS_PROXY": "http://proxy.corp:3128"},
    )
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        "mpnet: warning: NO_PROXY entry '10.0.0.0/33' is ignored: prefix length must be a "
        "number from 0 to 32"
    ]
    assert json.loads(result.stdout)["targets"][0]["decision"]["proxy"] == (
        "http://proxy.corp:3128"
    )


def test_a_port_in_use_is_named() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = invoke("serve", "--listen", f"127.0.0.1:{port}")
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"127.0.0.1:{port} is in use by another process")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["probe", "okx", "--bogus"], "no such option: --bogus"),
        (["probe", "okx", "-n", "two"], "-n / --count: expected a whole number"),
        (["ws"], "missing argument 'URL'"),
    ],
)
def test_usage_errors_are_one_line_with_a_pointer_to_help(args: list[str], expected: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert line.startswith(expected) and line.endswith(f"(see `mpnet {args[0]} --help`)")


# -- 10. one cause, one finding -----------------------------------------------------------------


def test_offline_probe_all_prints_one_dns_finding_and_json_keeps_them_all() -> None:
    # The autouse resolver answers "no resolver" for every public name, as an offline box does.
    table = invoke("probe", "--all", "--timeout", "10")
    assert table.exit_code == 1
    findings = table.stdout.split("\nFindings\n", 1)[1]
    assert findings.count("DNS_FAILURE") == 1 and findings.count("hint:") == 1
    # The heading, joined with the lines it wraps onto (its findings start indented).
    heading = " ".join(findings.split("\n  ", 1)[0].split())
    assert heading.startswith("2") and " targets, one cause: binance, binance-usdm," in heading
    for name in ("bitfinex", "bybit", "coinbase", "deribit", "kraken", "okx"):
        assert f" {name}" in heading
    assert "other hosts)" in findings

    document = invoke("probe", "--all", "--timeout", "10", "--format", "json")
    results = json.loads(document.stdout)["results"]
    with_dns = [r for r in results if [f["code"] for f in r["findings"]] == ["DNS_FAILURE"]]
    assert len(with_dns) >= 20
    failed_in_dns = [r for r in results if r["error"] and r["error"]["phase"] == "dns"]
    assert len(with_dns) == len(failed_in_dns)  # one finding per target, none merged
