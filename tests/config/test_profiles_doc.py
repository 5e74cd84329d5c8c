"""docs/profiles.md stays true: its worked example is a profile ``mpnet profiles validate``
accepts and loads as the text says, its misspelt copy fails with the line the page shows, and its
schema reference names every key the loader accepts (and no key it refuses)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mpnet.cli.app import get_app
from mpnet.config import profiles as loader
from mpnet.config.profiles import load_profile_file, load_profiles

DOC = Path(__file__).resolve().parents[2] / "docs" / "profiles.md"
MARKER = "<!-- validated by tests/config/test_profiles_doc.py"
TERMINAL = {"COLUMNS": "80", "TERM": "dumb"}


def validated_blocks() -> list[str]:
    """The fenced blocks that follow a validation marker, in page order."""
    text = DOC.read_text(encoding="utf-8")
    blocks = []
    for part in text.split(MARKER)[1:]:
        match = re.search(r"```[a-z]*\n(.*?)```", part, re.S)
        assert match is not None
        blocks.append(match.group(1))
    return blocks


def example(tmp_path: Path) -> tuple[Path, str]:
    text = validated_blocks()[0]
    directory = tmp_path / "my-profiles"
    directory.mkdir()
    path = directory / "acme-gateway.yaml"
    path.write_text(text, encoding="utf-8")
    return path, text


def validate(path: Path, cwd: Path) -> object:
    import os

    here = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(
            get_app(), ["profiles", "validate", str(path.relative_to(cwd))], env=TERMINAL
        )
    finally:
        os.chdir(here)


def test_the_page_has_its_two_checked_blocks() -> None:
    assert len(validated_blocks()) == 2


def test_the_worked_example_validates_as_the_page_shows(tmp_path: Path) -> None:
    path, _ = example(tmp_path)
    result = validate(path, tmp_path)
    assert result.exit_code == 0, result.output
    shown = DOC.read_text(encoding="utf-8")
    assert f"$ mpnet profiles validate my-profiles/acme-gateway.yaml\n{result.stdout}" in shown


def test_the_worked_example_means_what_the_page_says(tmp_path: Path) -> None:
    path, _ = example(tmp_path)
    profile = load_profile_file(path)
    assert profile.targets == ("rest", "ws")
    assert profile.rest is not None and profile.websocket is not None
    health = profile.rest.health
    assert health.status_endpoint and health.expect_json == {"status": "up"}
    assert profile.websocket.error_match == {"op": "error"}
    assert profile.websocket.welcome == {"op": "hello"}
    assert profile.websocket.ping is not None and not profile.websocket.ping.frame
    assert profile.rate_limit is not None and profile.rate_limit.spacing_s == 0.5
    assert profile.network is not None and profile.network.proxy_for("ws") == "direct"
    # And it is found by name from a --profiles directory, as the page's commands use it.
    assert "acme-gateway" in load_profiles([path.parent], env={})


def test_the_misspelt_example_fails_with_the_line_the_page_shows(tmp_path: Path) -> None:
    path, text = example(tmp_path)
    path.write_text(text.replace("ack_match:", "ack_macth:"), encoding="utf-8")
    result = validate(path, tmp_path)
    assert result.exit_code == 2
    command, shown = validated_blocks()[1].strip().split("\n")
    assert command == "$ mpnet profiles validate my-profiles/acme-gateway.yaml"
    assert result.stderr.strip() == shown


def reference() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text[text.index("## The schema") : text.index("## Patterns")]


@pytest.mark.parametrize(
    ("prefix", "keys"),
    [
        ("", loader.PROFILE_KEYS),
        ("", loader.REST_KEYS),
        ("health.", loader.HEALTH_KEYS),
        ("", loader.WS_KEYS),
        ("bootstrap.", loader.BOOTSTRAP_KEYS),
        ("", loader.RATE_LIMIT_KEYS),
        ("", ("proxy", "ssl")),
    ],
)
def test_the_reference_names_every_key_the_loader_accepts(
    prefix: str, keys: tuple[str, ...]
) -> None:
    text = reference()
    for key in keys:
        assert f"`{prefix}{key}:`" in text, key


def test_the_reference_names_no_key_the_loader_refuses() -> None:
    accepted = {
        *loader.PROFILE_KEYS, *loader.REST_KEYS, *loader.HEALTH_KEYS, *loader.WS_KEYS,
        *loader.BOOTSTRAP_KEYS, *loader.RATE_LIMIT_KEYS, "proxy", "ssl",
    }  # fmt: skip
    named = {k.rsplit(".", 1)[-1] for k in re.findall(r"^\| `([a-z_.]+):`", reference(), re.M)}
    assert named == accepted
