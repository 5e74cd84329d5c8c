"""The repository documents itself: no pointer leaves it, and docs/architecture.md names only
modules and functions that exist (issue 12).

Every ``path.py`` (or ``dir/``) written in backticks in docs/architecture.md must exist, under
the repository root when it starts with a top-level directory, else under ``src/mpnet``; every
``path.py:name`` (``name`` may be ``Class.method``) must be defined in that file; every relative
Markdown link must resolve.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from tests.test_layers import ALLOWED

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "mpnet"
ARCHITECTURE = ROOT / "docs" / "architecture.md"

#: Notes that live outside the repository, which nothing in it may point at. Spelt in pieces so
#: that this file does not match itself.
OUTSIDE = ("../" + "shared", "DES" + "IGN.md", "EXCHANGES" + ".md", "STYLE" + ".md")
OUTSIDE += ("LIBRARY" + "-NOTES", "peer" + "-vectors")
#: What is scanned: the code, the tests, the docs and the benchmarks, and the README.
SCANNED = ("src", "tests", "docs", "bench", "profiles")
TEXT_SUFFIXES = (".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".tsv", ".cfg", ".ini")
TOP_LEVEL = ("src/", "tests/", "docs/", "bench/", "profiles/", "README.md", "pyproject.toml")

_SPAN = re.compile(r"`([^`\n]+)`")
_PATH = re.compile(r"(?P<path>[\w./-]+\.(?:py|md|yaml|toml|tsv))(?::(?P<name>[A-Za-z_][\w.]*))?")
_DIR = re.compile(r"[\w/]+/")
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def scanned_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for top in SCANNED:
        files += [
            path
            for path in sorted((ROOT / top).rglob("*"))
            if path.is_file() and path.suffix in TEXT_SUFFIXES and "__pycache__" not in path.parts
        ]
    return files


#: The design note by its bare name, in capitals (a word of its own, not "design").
_BARE_NAME = re.compile(r"\bDES" + r"IGN\b")


def outside_pointers(text: str) -> list[str]:
    found = [marker for marker in OUTSIDE if marker in text]
    return found + _BARE_NAME.findall(text)


def resolve(path: str) -> Path:
    """Where a path written in the architecture document is."""
    return ROOT / path if path.startswith(TOP_LEVEL) else SRC / path


def defines(source: str, dotted: str) -> bool:
    """Whether ``source`` defines ``dotted`` (``name`` or ``Class.member``) at top level."""
    body: list[ast.stmt] = ast.parse(source).body
    for part in dotted.split("."):
        found = _definition(body, part)
        if found is None:
            return False
        body = found.body if isinstance(found, ast.ClassDef) else []
    return True


def _definition(body: list[ast.stmt], name: str) -> ast.stmt | None:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name == name:
                return node
        elif isinstance(node, ast.Assign):
            if any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                return node
        elif (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == name
        ):
            return node
    return None


def broken_references(text: str) -> list[str]:
    """Every path, definition or link of an architecture text that does not exist."""
    broken = []
    for span in _SPAN.findall(text):
        if match := _PATH.fullmatch(span):
            path = resolve(match["path"])
            if not path.is_file():
                broken.append(f"{span}: no file {path.relative_to(ROOT)}")
            elif match["name"] and not defines(path.read_text(encoding="utf-8"), match["name"]):
                broken.append(f"{span}: {match['name']} is not defined there")
        elif _DIR.fullmatch(span) and not resolve(span).is_dir():
            broken.append(f"{span}: no directory {resolve(span).relative_to(ROOT)}")
    for target in _LINK.findall(text):
        if "://" not in target and not (ARCHITECTURE.parent / target).exists():
            broken.append(f"link {target}: no such file")
    return broken


def test_nothing_points_outside_the_repository() -> None:
    files = scanned_files()
    assert len(files) > 100  # an empty walk would pass
    found = {
        path.relative_to(ROOT).as_posix(): markers
        for path in files
        if (markers := outside_pointers(path.read_text(encoding="utf-8", errors="replace")))
    }
    assert found == {}


def test_the_readme_links_the_architecture_document() -> None:
    assert "(docs/architecture.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_module_and_name_in_the_architecture_document_exists() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    named = [span for span in _SPAN.findall(text) if _PATH.fullmatch(span)]
    assert len(named) > 60  # the document names the code it describes
    assert sum(1 for span in named if ":" in span) > 30
    assert broken_references(text) == []


def layer_table(text: str) -> dict[str, tuple[str, ...]]:
    """The "Layers" table of the architecture document: layer -> what it may import."""
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        layer = re.findall(r"`([\w.]+?)(?:/|\.py)?`", cells[0])[0]
        # Plain names only: `probe/timeline.py` or `core/result.py:TLSInfo` are asides.
        table[layer] = tuple(sorted(re.findall(r"`(\w+)`", cells[2])))
    return table


def test_the_layer_table_is_the_one_the_tests_enforce() -> None:
    table = layer_table(ARCHITECTURE.read_text(encoding="utf-8"))
    assert table == {layer: tuple(sorted(allowed)) for layer, allowed in ALLOWED.items()}


# -- the checks catch what they are meant to catch ------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "see `net/nosuch.py`",
        "`net/dial.py:no_such_function`",
        "`probe/engine.py:_ConnectSlot.no_such_method`",
        "`core/result.py:Attempt.ok.nested`",
        "`tests/no_such_test.py`",
        "`nosuchlayer/`",
        "[gone](no-such-page.md)",
    ],
)
def test_broken_references_are_found(text: str) -> None:
    assert broken_references(text)


@pytest.mark.parametrize(
    "text",
    [
        "`net/dial.py:dial` and `probe/engine.py:_ConnectSlot.take`",
        "`cli/exit_codes.py:ERROR_EXIT_CODES`, `net/tls.py:VERIFY_KINDS`",
        "`tests/test_layers.py`, `core/diagnose/`, `profiles/gate.yaml`",
        "[profiles](profiles.md), [README](../README.md), `--proxy URL`",
    ],
)
def test_existing_references_pass(text: str) -> None:
    assert broken_references(text) == []


def test_outside_pointers_are_found() -> None:
    assert outside_pointers("See `" + OUTSIDE[0] + "/" + OUTSIDE[1] + "` for the contract.")
    assert outside_pointers("a copy of the team's " + OUTSIDE[-1] + "/curl-noproxy.tsv")
    assert outside_pointers("# DES" + "IGN's keys are still all there.")
    assert outside_pointers("See docs/architecture.md for the design of the layers.") == []
