"""`mpnet profiles list|show|validate` and `mpnet ssl explain` through Typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mpnet.cli.app import get_app
from mpnet.config.profiles import shipped_profiles_dir

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(get_app(), list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_list_json_names_every_shipped_profile() -> None:
    code, stdout, _ = invoke("profiles", "list", "--format", "json")
    assert code == 0
    rows = {row["name"]: row for row in json.loads(stdout)["profiles"]}
    assert len(rows) == 13
    assert rows["deribit"]["rest"] == "https://www.deribit.com/api/v2/public/test"
    assert rows["deribit"]["ws"] == "wss://www.deribit.com/ws/api/v2"
    assert rows["deribit"]["source"] == "shipped"


def test_list_table_marks_overrides(tmp_path: Path) -> None:
    override = tmp_path / "okx.yaml"
    override.write_text(
        "name: okx\ntitle: Local OKX\nrest: {base_url: 'https://127.0.0.1:1', health: {path: /t}}\n"
    )
    code, stdout, _ = invoke("profiles", "list", "--profiles", str(tmp_path), "--format", "json")
    assert code == 0
    [okx] = [row for row in json.loads(stdout)["profiles"] if row["name"] == "okx"]
    assert okx["title"] == "Local OKX" and okx["source"] == str(override)
    code, stdout, _ = invoke("profiles", "list", "--profiles", str(tmp_path))
    assert code == 0 and "Local OKX" in stdout


def test_show_prints_the_file_and_its_source() -> None:
    code, stdout, stderr = invoke("profiles", "show", "kucoin")
    assert code == 0
    assert stdout == (shipped_profiles_dir() / "kucoin.yaml").read_text()
    assert "kucoin.yaml" in stderr


def test_show_unknown_exchange() -> None:
    code, _, stderr = invoke("profiles", "show", "nope")
    assert code == 2 and "unknown exchange 'nope'" in stderr


def test_validate_ok_and_broken(tmp_path: Path) -> None:
    code, stdout, _ = invoke("profiles", "validate", str(shipped_profiles_dir() / "htx.yaml"))
    assert code == 0 and "ok:" in stdout and "htx: rest, ws" in stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: demo\ntitle: Demo\nrest:\n  base_url: https://x.test\n  health: {}\n")
    code, stdout, stderr = invoke("profiles", "validate", str(broken))
    assert code == 2
    assert f"{broken}:5 rest.health.path: required key is missing" in stderr
    assert "Traceback" not in stdout + stderr


@pytest.fixture(scope="module")
def pem_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Real CA bundles (ssl explain loads the bundle it explains), named as the rows use them."""
    import trustme

    directory = tmp_path_factory.mktemp("pem")
    paths = {}
    for name in ("CORP_PEM", "ENV_PEM"):
        trustme.CA().cert_pem.write_to_path(str(directory / f"{name}.pem"))
        paths[name] = str(directory / f"{name}.pem")
    return paths


@pytest.mark.parametrize(
    ("args", "env", "verify", "layer", "ca"),
    [
        (["deribit"], {}, True, "default", None),
        (["deribit", "--insecure"], {}, False, "cli", None),
        (["deribit", "--ca-bundle", "CORP_PEM"], {}, True, "cli", "CORP_PEM"),
        (["deribit"], {"SSL_CERT_FILE": "ENV_PEM"}, True, "env", "ENV_PEM"),
        (["--url", "wss://127.0.0.1:9/ws"], {}, True, "default", None),
    ],
)
def test_ssl_explain_json(
    args: list[str],
    env: dict[str, str],
    verify: bool,
    layer: str,
    ca: str | None,
    pem_files: dict[str, str],
) -> None:
    args = [pem_files.get(arg, arg) for arg in args]
    env = {key: pem_files.get(value, value) for key, value in env.items()}
    ca = pem_files.get(ca, ca) if ca else None
    code, stdout, stderr = invoke("ssl", "explain", *args, "--format", "json", env=env)
    assert code == 0, stderr
    document = json.loads(stdout)
    for target in document["targets"]:
        decision = target["decision"]
        assert (decision["verify"], decision["layer"]) == (verify, layer)
        if ca:
            assert decision["ca"] == ca
        assert [t["layer"] for t in target["trace"]] == [
            "cli",
            "exchange",
            "service",
            "env",
            "default",
        ]
        assert bool(target["warnings"]) is (not verify)
    if not verify:
        assert "verification is OFF" in stderr


def test_ssl_explain_exchange_layer_from_config(tmp_path: Path) -> None:
    import trustme

    trustme.CA().cert_pem.write_to_path(str(tmp_path / "corp.pem"))
    config = tmp_path / "mpnet.yaml"
    config.write_text(
        "ssl: {ca_bundle: corp.pem}\n"
        "exchanges:\n  deribit:\n    ssl: {verify: false, reason: lab box behind TLS inspection}\n"
    )
    code, stdout, _ = invoke("ssl", "explain", "deribit", "--config", str(config))
    assert code == 0
    assert "verification OFF" in stdout and "lab box behind TLS inspection" in stdout
    assert "shadowed" in stdout
    code, stdout, _ = invoke("ssl", "explain", "okx", "--config", str(config), "--format", "json")
    decision = json.loads(stdout)["targets"][0]["decision"]
    assert decision == {
        "verify": True,
        "ca": str(tmp_path / "corp.pem"),
        "layer": "service",
        "reason": f"CA from {config}:1 ssl",
    }


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "give an EXCHANGE or --url URL"),
        (["okx", "--url", "https://x.test"], "give an EXCHANGE or --url URL"),
        (["okx", "--insecure", "--ca-bundle", "a.pem"], "contradict"),
        (["nope"], "unknown exchange"),
    ],
)
def test_ssl_explain_bad_input(args: list[str], expected: str) -> None:
    code, stdout, stderr = invoke("ssl", "explain", *args)
    assert code == 2 and expected in stderr and "Traceback" not in stdout + stderr


def test_proxy_ca_layers_and_which_store_checks_what(tmp_path: Path) -> None:
    import trustme

    for name in ("service", "exchange", "flag", "exchange-ca"):
        trustme.CA().cert_pem.write_to_path(str(tmp_path / f"{name}.pem"))
    config = tmp_path / "mpnet.yaml"
    config.write_text(
        "proxy_ssl: {ca_bundle: service.pem}\n"
        "exchanges:\n"
        "  deribit:\n"
        "    proxy_ssl: {ca_bundle: exchange.pem}\n"
        "    ssl: {ca_bundle: exchange-ca.pem}\n"
    )

    def proxy_ca(*args: str) -> tuple[dict[str, object], dict[str, object]]:
        code, stdout, stderr = invoke(
            "ssl", "explain", *args, "--config", str(config), "--format", "json"
        )
        assert code == 0, stderr
        target = json.loads(stdout)["targets"][0]
        return target["proxy_ca"], target["stores"]

    # cli > exchange > service, each named where it was written.
    found, stores = proxy_ca("okx")
    assert (found["ca"], found["layer"]) == (str(tmp_path / "service.pem"), "service")
    assert found["origin"] == f"{config}:1 proxy_ssl.ca_bundle"
    found, stores = proxy_ca("deribit")
    assert (found["ca"], found["layer"]) == (str(tmp_path / "exchange.pem"), "exchange")
    # The exchange is checked by its own store, the proxy by the proxy CA: never mixed.
    assert "exchange-ca.pem" in str(stores["exchange"]) and "exchange.pem (" in str(stores["proxy"])
    flag = str(tmp_path / "flag.pem")
    found, stores = proxy_ca("deribit", "--proxy-ca-bundle", flag)
    assert (found["ca"], found["layer"], found["origin"]) == (flag, "cli", "--proxy-ca-bundle")
    assert f"the proxy CA bundle {flag} (from --proxy-ca-bundle)" == stores["proxy"]


def test_without_a_proxy_ca_the_proxy_is_checked_like_the_exchange() -> None:
    code, stdout, stderr = invoke("ssl", "explain", "okx")
    assert code == 0, stderr
    assert "an https:// proxy's certificate: verified against the target's store" in stdout


@pytest.mark.parametrize(
    ("config_text", "args", "expected"),
    [
        ("", ["--proxy-ca-bundle", "/nonexistent/proxy.pem"], "cannot load proxy CA "),
        ("proxy_ssl: {ca_bundle: missing.pem}\n", [], "proxy_ssl.ca_bundle): no such file"),
        ("proxy_ssl: {cafile: x.pem}\n", [], "proxy_ssl.cafile: unknown key"),
        ("proxy_ssl: {}\n", [], "proxy_ssl needs ca_bundle"),
        ("exchanges:\n  okx:\n    proxy_ssl: {ca_bundle: nope.pem}\n", [], "no such file"),
    ],
)
def test_proxy_ca_bad_input_is_one_line_exit_2(
    tmp_path: Path, config_text: str, args: list[str], expected: str
) -> None:
    config = tmp_path / "mpnet.yaml"
    config.write_text(config_text)
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    for command in (["ssl", "explain", "okx"], ["proxy", "explain", "okx"]):
        code, stdout, stderr = invoke(*command, *args, "--config", str(config))
        assert code == 2, (command, stdout, stderr)
        assert expected in stderr and "Traceback" not in stdout + stderr
        assert len(stderr.strip().splitlines()) == 1
    code, _, stderr = invoke("ssl", "explain", "okx", "--proxy-ca-bundle", str(not_pem))
    assert code == 2 and "not a PEM bundle" in stderr
