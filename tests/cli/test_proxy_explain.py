"""``mpnet proxy explain`` through Typer's runner, plus one real subprocess run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mpnet.cli.app import get_app
from mpnet.config.profiles import load_profiles
from mpnet.core.libraries import LIBRARIES

runner = CliRunner()


def run(args: list[str], env: dict[str, str] | None = None) -> Any:
    return runner.invoke(get_app(), ["proxy", "explain", *args], env=env or {})


def run_json(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    result = run([*args, "--format", "json"], env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_issue_acceptance_env_layer_wins_password_masked() -> None:
    env = {"HTTPS_PROXY": "http://u:p4ssw0rd@corp:3128", "NO_PROXY": ".internal"}
    result = run(["--url", "https://api.example.com/v1", "--format", "json"], env)
    assert result.exit_code == 0, result.output
    assert "p4ssw0rd" not in result.output
    doc = json.loads(result.stdout)
    assert doc["exchange"] is None
    (target,) = doc["targets"]
    assert target["target"] == "rest"
    assert target["url"] == "https://api.example.com/v1"
    assert target["decision"] == {
        "proxy": "http://u:***@corp:3128",
        "scheme": "http",
        "layer": "env",
        "source": "HTTPS_PROXY",
        "no_proxy_match": None,
    }
    assert [t["layer"] for t in target["trace"]] == [
        "cli",
        "exchange",
        "service",
        "env",
        "default",
    ]
    assert set(target["trace"][0]) == {"layer", "value", "verdict", "detail"}
    assert list(target["libraries"]) == list(LIBRARIES)
    assert all(v == "http://u:***@corp:3128" for v in target["libraries"].values())


def test_issue_acceptance_table() -> None:
    env = {"HTTPS_PROXY": "http://u:p4ssw0rd@corp:3128", "NO_PROXY": ".internal"}
    result = run(["--url", "https://api.example.com/v1"], env)
    assert result.exit_code == 0, result.output
    assert "p4ssw0rd" not in result.output
    assert "http://u:***@corp:3128" in result.stdout
    for name in LIBRARIES:
        assert name in result.stdout


def test_no_proxy_match_reported() -> None:
    env = {"HTTPS_PROXY": "http://corp:3128", "NO_PROXY": "localhost,.internal"}
    doc = run_json(["--url", "https://db.internal/x"], env)
    decision = doc["targets"][0]["decision"]
    assert decision["proxy"] is None
    assert decision["no_proxy_match"] == ".internal"
    # Direct because NO_PROXY said so: the environment chose it, not the default.
    assert (decision["layer"], decision["source"]) == ("env", "NO_PROXY")
    assert doc["targets"][0]["trace"][3]["verdict"] == "bypassed by no_proxy"


def test_ws_url_is_a_ws_target_and_disagreements_are_flagged() -> None:
    env = {"HTTPS_PROXY": "http://corp:3128"}
    doc = run_json(["--url", "wss://stream.example.com/ws"], env)
    target = doc["targets"][0]
    assert target["target"] == "ws"
    assert target["decision"]["proxy"] == "http://corp:3128"
    # aiohttp reads only WSS_PROXY for wss: it would go direct.
    assert target["libraries"]["aiohttp"] == "direct"
    table = run(["--url", "wss://stream.example.com/ws"], env)
    assert "differs from mpnet" in table.stdout


@pytest.mark.parametrize(
    ("flags", "layer", "source", "proxy"),
    [
        (
            ["--proxy", "socks5h://u:pw123456@127.0.0.1:1080"],
            "cli",
            "--proxy",
            "socks5h://u:***@127.0.0.1:1080",
        ),
        (["--no-proxy"], "cli", "--no-proxy", None),
    ],
)
def test_cli_layer(flags: list[str], layer: str, source: str, proxy: str | None) -> None:
    env = {"HTTPS_PROXY": "http://corp:3128"}
    result = run(["--url", "https://x.example.com", *flags, "--format", "json"], env)
    assert result.exit_code == 0, result.output
    assert "pw123456" not in result.output
    decision = json.loads(result.stdout)["targets"][0]["decision"]
    assert (decision["layer"], decision["source"], decision["proxy"]) == (layer, source, proxy)


def test_exchange_gives_one_target_per_profile_target() -> None:
    profile = load_profiles(env={}).get("deribit")
    doc = run_json(["deribit"])
    assert doc["exchange"] == "deribit"
    got = [(t["target"], t["url"]) for t in doc["targets"]]
    assert got == [(t, profile.url_for(t)) for t in profile.targets]
    assert {t["target"] for t in doc["targets"]} == {"rest", "ws"}


def test_config_file_service_and_exchange_layers(tmp_path: Path) -> None:
    config = tmp_path / "mpnet.yaml"
    config.write_text(
        "proxy:\n"
        "  https: http://svc:s3cr3tpw@svc-proxy:3128\n"
        "exchanges:\n"
        "  deribit:\n"
        "    proxy: {rest: direct, ws: socks5h://127.0.0.1:1080}\n",
        encoding="utf-8",
    )
    env = {"HTTPS_PROXY": "http://corp:3128"}
    result = run(["deribit", "--config", str(config), "--format", "json"], env)
    assert result.exit_code == 0, result.output
    assert "s3cr3tpw" not in result.output
    targets = {t["target"]: t for t in json.loads(result.stdout)["targets"]}
    assert targets["rest"]["decision"]["layer"] == "exchange"
    assert targets["rest"]["decision"]["proxy"] is None
    assert targets["ws"]["decision"]["proxy"] == "socks5h://127.0.0.1:1080"
    assert "exchanges.deribit" in targets["ws"]["decision"]["source"]
    # The service layer is shadowed, and shown masked.
    assert targets["ws"]["trace"][2]["verdict"] == "shadowed"
    assert targets["ws"]["trace"][2]["value"] == "http://svc:***@svc-proxy:3128"

    only_url = run(["--url", "https://x.example.com", "--config", str(config), "--format", "json"])
    decision = json.loads(only_url.stdout)["targets"][0]["decision"]
    assert (decision["layer"], decision["source"]) == ("service", "proxy.https")


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["deribit", "--url", "https://x.example.com"],
        ["--url", "https://x.example.com", "--proxy", "http://p:3128", "--no-proxy"],
        ["--url", "ftp://x.example.com"],
        ["--url", "https://x.example.com", "--format", "yaml"],
        ["no-such-exchange"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = run(args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "env", "where"),
    [
        (["--proxy", "ftp://user:hunter2hunter2@corp:21"], {}, "--proxy"),
        (["--proxy", "user:hunter2hunter2@corp:3128"], {}, "--proxy"),
        ([], {"HTTPS_PROXY": "http://user:hunter2hunter2@corp:99999"}, "HTTPS_PROXY"),
        ([], {"https_proxy": "user:hunter2hunter2@corp"}, "https_proxy"),
    ],
)
def test_bad_proxy_url_one_line_no_password(
    args: list[str], env: dict[str, str], where: str
) -> None:
    result = run(["--url", "https://x.example.com", *args], env)
    assert result.exit_code == 2
    assert "hunter2hunter2" not in result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and where in lines[0]


def test_subprocess_json(env_clean: dict[str, str]) -> None:
    env = {**env_clean, "HTTPS_PROXY": "http://u:p4ssw0rd@127.0.0.1:3128", "NO_PROXY": "localhost"}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mpnet",
            "proxy",
            "explain",
            "--url",
            "https://127.0.0.1:9/x",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "p4ssw0rd" not in completed.stdout + completed.stderr
    doc = json.loads(completed.stdout)
    target = doc["targets"][0]
    # localhost does not cover 127.0.0.1: the proxy is used, by mpnet and by all five.
    assert target["decision"]["proxy"] == "http://u:***@127.0.0.1:3128"
    assert set(target["libraries"].values()) == {"http://u:***@127.0.0.1:3128"}


def test_case_conflict_shows_both_spellings_who_reads_which_and_masks_passwords() -> None:
    env = {
        "https_proxy": "http://alice:lowerS3cret@lower.corp:3128",
        "HTTPS_PROXY": "http://bob:upperS3cret@upper.corp:3128",
        "COLUMNS": "80",
        "TERM": "dumb",
    }
    result = run(["--url", "https://api.example.com/v1"], env)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "lowerS3cret" not in result.output and "upperS3cret" not in result.output
    assert "https_proxy and HTTPS_PROXY are both set, to different values:" in text
    block = text.split("different values:", 1)[1]
    lower = block.index("https_proxy")
    upper = block.index("HTTPS_PROXY")
    assert "http://alice:***@lower.corp:3128" in block[lower:upper]
    assert "read by mpnet, urllib, aiohttp," in block[lower:upper]
    assert "http://bob:***@upper.corp:3128" in block[upper:]
    assert "ignored by mpnet, urllib, aiohttp," in " ".join(block[upper:].split())
    assert "curl reads lower case first" in " ".join(block.split())
    assert "mpnet: http://alice:***@lower.corp:3128  (env layer, https_proxy)" in text

    doc = run_json(["--url", "https://api.example.com/v1"], env)
    (conflict,) = doc["targets"][0]["env_conflicts"]
    assert conflict["variable"] == "https_proxy"
    by_name = {s["name"]: s for s in conflict["spellings"]}
    assert by_name["HTTPS_PROXY"]["read_by"] == []
    assert by_name["https_proxy"]["read_by"] == ["mpnet", *LIBRARIES]
    assert by_name["HTTPS_PROXY"]["value"] == "http://bob:***@upper.corp:3128"


def test_empty_lower_case_splits_the_tools() -> None:
    env = {"https_proxy": "", "HTTPS_PROXY": "http://upper.corp:3128"}
    doc = run_json(["--url", "https://api.example.com/v1"], env)
    (conflict,) = doc["targets"][0]["env_conflicts"]
    by_name = {s["name"]: s for s in conflict["spellings"]}
    assert by_name["https_proxy"]["value"] == "(empty)"
    assert by_name["HTTPS_PROXY"]["read_by"] == ["curl"]
    assert doc["targets"][0]["libraries"]["curl"] == "http://upper.corp:3128"
    assert doc["targets"][0]["decision"]["proxy"] is None


def test_explain_says_which_store_checks_the_proxy_and_which_the_exchange(
    tmp_path: Path,
) -> None:
    import trustme

    bundle = tmp_path / "office-proxy.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))
    args = ["--url", "https://api.example.com/v1", "--proxy-ca-bundle", str(bundle)]
    https = run_json(args, {"HTTPS_PROXY": "https://corp:3128"})["targets"][0]["stores"]
    assert https["proxy"] == f"the proxy CA bundle {bundle} (from --proxy-ca-bundle)"
    assert str(bundle) not in https["exchange"]
    # A plain http:// proxy has no certificate to check.
    plain = run_json(args, {"HTTPS_PROXY": "http://corp:3128"})["targets"][0]["stores"]
    assert plain["proxy"] is None
