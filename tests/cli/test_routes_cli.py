"""Bad ``--via`` input on probe, watch and serve: one line, exit 2, no traceback, no password.
Nothing here reaches the network: every case is refused before any I/O."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mpnet.cli.app import get_app

PASSWORD = "V1a-Secret-pw"
runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mpnet.yaml"
    path.write_text(
        f"routes:\n  tokyo: socks5h://user:{PASSWORD}@127.0.0.1:1080\n  office: direct\n",
        encoding="utf-8",
    )
    return path


COMMANDS = {
    "probe": ["probe", "okx"],
    "watch": ["watch", "okx", "-c", "1"],
    "serve": ["serve", "--listen", "127.0.0.1:0"],
}

CASES = [
    (
        ["--via", "tokio"],
        "mpnet: error: --via: unknown route 'tokio'; did you mean 'tokyo'?; known routes: "
        "direct, office, tokyo",
    ),
    (["--via", "tokyo", "--via", "tokyo"], "mpnet: error: --via tokyo is given twice"),
    (
        ["--via", "direct", "--via", "office"],
        "mpnet: error: --via direct and --via office are the same route (no proxy)",
    ),
    (
        ["--via", "tokyo", "--proxy", "http://127.0.0.1:3128"],
        "mpnet: error: --via and --proxy contradict each other",
    ),
    (["--via", "direct", "--no-proxy"], "mpnet: error: --via and --no-proxy contradict each other"),
    (
        ["--via", f"http://user:{PASSWORD}@127.0.0.1:notaport"],
        "mpnet: error: --via: 'http://user:***@127.0.0.1:notaport': port must be",
    ),
    (
        ["--via", f"ftp://user:{PASSWORD}@127.0.0.1:21"],
        "mpnet: error: --via: unsupported proxy scheme 'ftp'",
    ),
    (["-4", "-6"], "mpnet: error: -4 and -6 contradict each other; use one"),
]


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(("args", "expected"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_bad_via_is_one_line_and_exit_2(
    command: str, args: list[str], expected: str, config: Path
) -> None:
    result = runner.invoke(get_app(), [*COMMANDS[command], *args, "--config", str(config)])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(expected), lines[0]
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stdout + result.stderr


def test_unknown_route_without_a_config_says_how_to_name_one(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    result = runner.invoke(get_app(), ["probe", "okx", "--via", "tokyo", "--config", str(empty)])
    assert result.exit_code == 2
    assert "known routes: direct (name others under `routes:`" in result.stderr


def test_help_documents_via_and_families() -> None:
    result = runner.invoke(get_app(), ["probe", "--help"], env={"COLUMNS": "200"})
    assert "--via" in result.stdout and "ROUTE" in result.stdout
    assert "-4" in result.stdout and "-6" in result.stdout


def test_proxy_explain_shows_the_route_layer_per_route(config: Path) -> None:
    import json

    args = ["proxy", "explain", "okx", "--via", "tokyo", "--via", "direct", "--config", str(config)]
    environment = {"HTTPS_PROXY": "http://corp.invalid:3128"}
    result = runner.invoke(get_app(), args, env=environment)
    assert result.exit_code == 0, result.stderr
    assert "route" in result.stdout and PASSWORD not in result.stdout
    result = runner.invoke(get_app(), [*args, "--format", "json"], env=environment)
    targets = json.loads(result.stdout)["targets"]
    assert [t["target"] for t in targets] == [
        "rest via tokyo",
        "rest via direct",
        "ws via tokyo",
        "ws via direct",
    ]
    tokyo = targets[0]
    assert tokyo["decision"]["layer"] == "route"
    assert [(e["layer"], e["verdict"]) for e in tokyo["trace"]][:2] == [
        ("route", "won"),
        ("cli", "unset"),
    ]
    assert ("env", "shadowed") in [(e["layer"], e["verdict"]) for e in tokyo["trace"]]
    assert targets[1]["decision"]["proxy"] is None
    assert PASSWORD not in result.stdout
