"""The folder names keep telling the truth (issue 12, docs: DESIGN.md "Layers").

``core/`` is pure: it imports nothing of mpnet but ``core`` and ``errors``, and no module that
does I/O or runs an event loop. ``net/`` is the only I/O layer and sits below ``config/``,
``probe/``, ``serve/``, ``render/``, ``cli/`` and ``lab/``: it imports none of them. Modules stay
under :data:`MAX_LINES` lines.

Every import counts: at module level, inside functions (lazy imports) and under
``TYPE_CHECKING``. The source is read with :mod:`ast`, never imported.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mpnet"

#: What core/ may import of mpnet.
CORE_ALLOWED = ("mpnet.core", "mpnet.errors")
#: Modules that do I/O, run an event loop or read the environment: never in core/.
CORE_FORBIDDEN = (
    "asyncio",
    "socket",
    "ssl",
    "selectors",
    "subprocess",
    "threading",
    "os",
    "pathlib",
    "aiohttp",
    "aiohttp_socks",
    "websockets",
    "python_socks",
    "certifi",
    "yaml",
)
#: Layers above net/ (net/ imports none of them).
NET_FORBIDDEN = (
    "mpnet.config",
    "mpnet.probe",
    "mpnet.serve",
    "mpnet.render",
    "mpnet.cli",
    "mpnet.lab",
)
MAX_LINES = 800


def imports_of(source: str, module: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, the module ``module``
    (dotted, e.g. ``mpnet.core.clock``) being where relative imports start from."""
    package = module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            if name == "mpnet":
                # `from mpnet import net` imports the subpackage it names.
                for alias in node.names:
                    yield node.lineno, f"mpnet.{alias.name}"
            else:
                yield node.lineno, name


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def core_violations(source: str, module: str) -> list[str]:
    found = []
    for line, name in imports_of(source, module):
        if _under(name, CORE_FORBIDDEN):
            found.append(f"{module}:{line} imports {name} (core/ does no I/O, no asyncio)")
        elif _under(name, ("mpnet",)) and not _under(name, CORE_ALLOWED):
            found.append(f"{module}:{line} imports {name} (core/ imports only core and errors)")
    return found


def net_violations(source: str, module: str, path: str) -> list[str]:
    found = []
    for line, name in imports_of(source, module):
        for layer in NET_FORBIDDEN:
            if _under(name, (layer,)):
                found.append(f"{module}:{line} imports {name} (net/ is below {layer})")
    return found


def _modules(layer: str) -> list[tuple[str, str, str]]:
    """(path under src/mpnet, dotted module name, source) of every module of ``layer``."""
    found = []
    for path in sorted((SRC / layer).rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        # A package's __init__ keeps its name here: its relative imports start from the package.
        dotted = "mpnet." + rel.removesuffix(".py").replace("/", ".")
        found.append((rel, dotted, path.read_text(encoding="utf-8")))
    return found


def test_the_layers_exist() -> None:
    # An empty walk would pass every rule below.
    assert len(_modules("core")) >= 10
    assert len(_modules("net")) >= 5


def test_core_is_pure() -> None:
    found = [v for _, dotted, source in _modules("core") for v in core_violations(source, dotted)]
    assert found == []


def test_net_imports_no_layer_above_it() -> None:
    found = [
        v for rel, dotted, source in _modules("net") for v in net_violations(source, dotted, rel)
    ]
    assert found == []


def test_no_module_is_over_the_line_limit() -> None:
    long = {
        path.relative_to(SRC).as_posix(): lines
        for path in SRC.rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


# -- the rules catch what they are meant to catch -------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio\n",
        "import socket as _s\n",
        "from aiohttp import web\n",
        "def f():\n    import os\n    return os.environ\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mpnet.net.dial import x\n",
        "from mpnet.probe.engine import run_probes\n",
        "from mpnet import config\n",
        "from ..render import html\n",
    ],
)
def test_core_rule_catches(source: str) -> None:
    assert core_violations(source, "mpnet.core.example")


@pytest.mark.parametrize(
    "source",
    [
        "from mpnet.core.result import Attempt\nfrom mpnet.errors import ProbeError\n",
        "from . import clock\nfrom .result import Attempt\n",
        "import re\nimport time\n",
    ],
)
def test_core_rule_lets_pure_imports_pass(source: str) -> None:
    assert core_violations(source, "mpnet.core.example") == []


@pytest.mark.parametrize(
    "source",
    [
        "from mpnet.config.model import Profile\n",
        "def f():\n    from mpnet.probe.engine import run_probes\n",
        "from mpnet import cli\n",
        "from ..render.html import page\n",
    ],
)
def test_net_rule_catches(source: str) -> None:
    assert net_violations(source, "mpnet.net.example", "net/example.py")
