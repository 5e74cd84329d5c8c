"""Help reads like curl's: metavars (``S``, ``N``, ``URL``, ``EXCHANGE=MODE``), never Python
types (``<bool>``, ``<list[str]>``), plain usage lines, nothing cut off at 80 columns, and one
spelling of the count option (``-n/--count``) in every command.

Every command's ``--help`` runs through Typer's runner on an 80-column dumb terminal.
"""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from mpnet.cli.app import get_app

TERMINAL = {"COLUMNS": "80", "TERM": "dumb"}

#: A Python type tag as Typer prints it: <bool>, <str>, <list[str]>, <int range>, <a|b>.
TYPE_TAG = re.compile(r"<[\w\[\]|. ,]+>")


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(get_app(), list(args), env=TERMINAL)


def command_paths() -> list[tuple[str, ...]]:
    """Every command and group, as the words that reach it (the root is ``()``)."""
    paths: list[tuple[str, ...]] = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        paths.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, (*path, name))

    walk(typer.main.get_command(get_app()), ())
    return paths


PATHS = command_paths()


def test_the_walk_finds_every_command() -> None:
    # The walk below is only as good as the tree it walks.
    found = {" ".join(path) for path in PATHS}
    for expected in ("probe", "watch", "serve", "ws", "lab", "profiles validate", "ssl explain"):
        assert expected in found


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "mpnet")
def test_help_has_metavars_not_python_types(path: tuple[str, ...]) -> None:
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert TYPE_TAG.search(text) is None, TYPE_TAG.search(text)
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "[[" not in usage and "]]" not in usage and "{" not in usage, usage
    assert "......" not in text and "]...]" not in usage
    # Nothing cut off by the 80-column table: no word ends in an ellipsis.
    assert "…" not in text, text


@pytest.mark.parametrize(
    ("path", "usage"),
    [
        (("probe",), "mpnet probe [OPTIONS] [EXCHANGE]..."),
        (("watch",), "mpnet watch [OPTIONS] [EXCHANGE]..."),
        (("lab",), "mpnet lab [OPTIONS] [EXCHANGE]..."),
        (("ws",), "mpnet ws [OPTIONS] URL"),
        (("profiles", "validate"), "mpnet profiles validate [OPTIONS] PATH..."),
        (("profiles", "show"), "mpnet profiles show [OPTIONS] EXCHANGE"),
        (("proxy", "explain"), "mpnet proxy explain [OPTIONS] [EXCHANGE]"),
    ],
)
def test_usage_lines_name_the_arguments_plainly(path: tuple[str, ...], usage: str) -> None:
    text = invoke(*path, "--help").stdout
    assert f"Usage: {usage}" in " ".join(text.split())


@pytest.mark.parametrize(
    ("path", "option", "metavar"),
    [
        (("probe",), "--timeout", "S"),
        (("probe",), "--interval", "S"),
        (("probe",), "--count", "N"),
        (("probe",), "--proxy", "URL"),
        (("probe",), "--ca-bundle", "PATH"),
        (("probe",), "--fault", "EXCHANGE=MODE"),
        (("probe",), "--format", "FORMAT"),
        (("watch",), "--count", "N"),
        (("ws",), "--header", "NAME:VALUE"),
        (("ws",), "--max-chars", "N"),
        (("serve",), "--listen", "HOST:PORT"),
        (("lab",), "--fault", "EXCHANGE=MODE"),
    ],
)
def test_each_value_option_shows_its_metavar(
    path: tuple[str, ...], option: str, metavar: str
) -> None:
    rows = [
        " ".join(line.strip("│ ").split()) for line in invoke(*path, "--help").stdout.split("\n")
    ]
    row = next(r for r in rows if r.startswith(option + " ") or f" {option} " in f" {r} ")
    assert f" {metavar} " in f" {row} ", row


def test_a_flag_shows_no_type_and_a_switch_pair_defaults_to_its_flag() -> None:
    rows = [
        " ".join(line.strip("│ ").split()) for line in invoke("probe", "--help").stdout.split("\n")
    ]
    insecure = next(r for r in rows if r.startswith("--insecure"))
    assert insecure.startswith("--insecure Do not verify"), insecure
    assert "[default: --rest]" in " ".join(rows)


def test_watch_help_ends_its_last_sentence() -> None:
    text = " ".join(invoke("watch", "--help").stdout.split())
    # The docstring is reflowed, not cut where its source lines broke.
    assert "exits 0 when every cycle was ok, and 1 when any interval had a failure" in text
    assert "Ctrl-C prints a summary and exits 130." in text
    assert "per exchange that reconnects (with backoff)" in text


def test_watch_counts_with_n_like_probe_and_ws_and_keeps_c_hidden() -> None:
    text = invoke("watch", "--help").stdout
    rows = [" ".join(line.strip("│ ").split()) for line in text.split("\n")]
    assert any(r.startswith("--count -n N Stop after N cycles") for r in rows), text
    assert not re.search(r"(^|\s)-c(\s|,|$)", text)
    for command in ("probe", "ws"):
        assert any(
            " ".join(line.strip("│ ").split()).startswith("--count -n N")
            for line in invoke(command, "--help").stdout.split("\n")
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["watch", "okx", "-n", "0"], "--count must be at least 1, not 0"),
        # -c is still read, as the same option: its value meets the same check.
        (["watch", "okx", "-c", "0"], "--count must be at least 1, not 0"),
        (["watch", "okx", "-n", "2", "-c", "3"], "--count 2 and -c 3 disagree"),
    ],
)
def test_watch_n_and_the_hidden_c_are_one_option(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"mpnet: error: {message}"), result.stderr
