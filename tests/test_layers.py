"""The folder names keep telling the truth (issue 12; docs/architecture.md, "Layers").

:data:`ALLOWED` is the table of docs/architecture.md: what each layer may import of mpnet. On top
of it, ``core/`` and ``render/`` are pure (no module that does I/O, runs an event loop or reads
the environment), the client libraries of the network (websockets, python-socks, aiohttp-socks,
h11) are imported only under ``net/``, and only ``net/`` catches their exceptions or aiohttp's,
ssl's and socket's. Modules stay under :data:`MAX_LINES` lines.

Every import counts: at module level, inside functions (lazy imports) and under
``TYPE_CHECKING`` (except ``errors.py``'s one type-only import). The source is read with
:mod:`ast`, never imported.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mpnet"

#: What each layer may import of mpnet (besides itself). ``mpnet.__version__`` is open to all.
#: A layer is a package under src/mpnet, or one of the modules errors.py, client.py and
#: client_results.py (``client`` below covers both client modules).
ALLOWED: dict[str, tuple[str, ...]] = {
    "errors": (),
    "core": ("errors",),
    "config": ("core", "errors"),
    "net": ("core", "errors"),
    "lab": ("config", "core", "errors"),
    "probe": ("net", "config", "core", "errors"),
    "client": ("net", "config", "core", "errors"),
    "render": ("probe", "core", "errors"),
    "serve": ("render", "probe", "core", "errors"),
    "cli": ("serve", "render", "probe", "lab", "net", "config", "core", "errors"),
}
#: What errors.py may name for type checking only (its exceptions carry a TLSInfo).
ERRORS_TYPE_ONLY = ("mpnet.core.result",)

#: Modules that do I/O, run an event loop or read the environment: never in core/ or render/.
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
#: Client libraries of the network: imported under net/ only.
NET_ONLY = ("websockets", "python_socks", "aiohttp_socks", "h11")
#: Libraries whose exceptions only net/ catches (and translates into mpnet.errors).
TRANSLATED = ("aiohttp", "websockets", "python_socks", "aiohttp_socks", "h11", "ssl", "socket")
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


def impure_imports(source: str, module: str) -> list[str]:
    """Imports of modules that do I/O, run an event loop or read the environment."""
    return [
        f"{module}:{line} imports {name} (no I/O, no asyncio here)"
        for line, name in imports_of(source, module)
        if _under(name, CORE_FORBIDDEN)
    ]


def core_violations(source: str, module: str) -> list[str]:
    return impure_imports(source, module) + layer_violations(source, module)


def layer_of(module: str) -> str | None:
    """The layer of an mpnet module (``mpnet.net.dial`` -> ``net``), None outside mpnet."""
    parts = module.split(".")
    if parts[0] != "mpnet" or len(parts) == 1:
        return None
    if parts[1] == "client_results":
        return "client"
    return parts[1]


def layer_violations(source: str, module: str) -> list[str]:
    """Imports of ``source`` (the module ``module``) that the table :data:`ALLOWED` refuses."""
    own = layer_of(module)
    assert own is not None and own in ALLOWED, module
    allowed = {own, "__version__", *ALLOWED[own]}
    type_only = _type_checking_lines(source) if own == "errors" else set()
    found = []
    for line, name in imports_of(source, module):
        layer = layer_of(name)
        if layer is None or layer in allowed:
            continue
        if line in type_only and name in ERRORS_TYPE_ONLY:
            continue
        found.append(f"{module}:{line} imports {name} ({own} may import {sorted(allowed)})")
    return found


def _type_checking_lines(source: str) -> set[int]:
    """Lines of the imports under ``if TYPE_CHECKING:``."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            for inner in node.body:
                lines |= {
                    n.lineno for n in ast.walk(inner) if isinstance(n, ast.Import | ast.ImportFrom)
                }
    return lines


def net_only_violations(source: str, module: str) -> list[str]:
    return [
        f"{module}:{line} imports {name} (only net/ uses the network's client libraries)"
        for line, name in imports_of(source, module)
        if _under(name, NET_ONLY)
    ]


def caught_violations(source: str, module: str) -> list[str]:
    """``except`` clauses outside net/ that name an exception of :data:`TRANSLATED`."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # local name -> the third-party module it is or comes from
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[(alias.asname or alias.name).split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = node.module
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.ExceptHandler) and node.type is not None):
            continue
        for name in ast.walk(node.type):
            if isinstance(name, ast.Name) and _under(aliases.get(name.id, ""), TRANSLATED):
                found.append(
                    f"{module}:{node.lineno} catches {ast.unparse(node.type)} "
                    "(only net/ catches and translates third-party exceptions)"
                )
                break
    return found


def _modules(layer: str | None = None) -> list[tuple[str, str, str]]:
    """(path under src/mpnet, dotted module name, source) of every module of ``layer`` (of every
    layer when None; the package's own ``__init__`` and ``__main__`` belong to none)."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel in ("__init__.py", "__main__.py"):
            continue
        # A package's __init__ keeps its name here: its relative imports start from the package.
        dotted = "mpnet." + rel.removesuffix(".py").replace("/", ".")
        if layer is None or layer_of(dotted) == layer:
            found.append((rel, dotted, path.read_text(encoding="utf-8")))
    return found


def test_the_layers_exist() -> None:
    # An empty walk would pass every rule below; every module belongs to a layer of the table.
    assert len(_modules("core")) >= 10
    assert len(_modules("net")) >= 5
    assert {layer_of(dotted) for _, dotted, _ in _modules()} == set(ALLOWED)


def test_every_layer_imports_only_what_the_table_allows() -> None:
    found = [v for _, dotted, source in _modules() for v in layer_violations(source, dotted)]
    assert found == []


@pytest.mark.parametrize("layer", ["core", "render"])
def test_pure_layers_do_no_io(layer: str) -> None:
    found = [v for _, dotted, source in _modules(layer) for v in impure_imports(source, dotted)]
    assert found == []


def test_only_net_uses_the_network_client_libraries() -> None:
    found = [
        v
        for _, dotted, source in _modules()
        if layer_of(dotted) != "net"
        for v in net_only_violations(source, dotted)
    ]
    assert found == []


def test_only_net_catches_third_party_exceptions() -> None:
    found = [
        v
        for _, dotted, source in _modules()
        if layer_of(dotted) != "net"
        for v in caught_violations(source, dotted)
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

TYPE_ONLY = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
CATCH = "try:\n    pass\nexcept {}:\n    pass\n"


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
    ("module", "source"),
    [
        ("mpnet.net.example", "from mpnet.config.model import Profile\n"),
        ("mpnet.net.example", "def f():\n    from mpnet.probe.engine import run_probes\n"),
        ("mpnet.net.example", "from mpnet import cli\n"),
        ("mpnet.net.example", "from ..render.html import page\n"),
        ("mpnet.net.example", "from mpnet.client import network_manager\n"),
        ("mpnet.render.example", "from mpnet.net.dial import dial\n"),
        ("mpnet.render.example", "from ..config.model import Profile\n"),
        ("mpnet.lab.example", "from mpnet.probe.engine import run_probes\n"),
        ("mpnet.client", "from mpnet.probe.engine import run_probes\n"),
        ("mpnet.client_results", "from mpnet.render.html import page\n"),
        ("mpnet.serve.example", "from mpnet.cli.app import app\n"),
        ("mpnet.errors", "from mpnet.core.result import TLSInfo\n"),
        (
            "mpnet.errors",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mpnet.net import x\n",
        ),
    ],
)
def test_layer_rule_catches(module: str, source: str) -> None:
    assert layer_violations(source, module)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("mpnet.net.example", "from mpnet import __version__\nfrom mpnet.core.tls import x\n"),
        ("mpnet.render.example", "from mpnet.probe.timeline import Timeline\n"),
        ("mpnet.client", "from mpnet.client_results import NetworkStats\n"),
        ("mpnet.cli.example", "from mpnet.serve.app import build_app\nfrom mpnet.lab import Lab\n"),
        (
            "mpnet.errors",
            TYPE_ONLY + "    from mpnet.core.result import TLSInfo\n",
        ),
    ],
)
def test_layer_rule_lets_allowed_imports_pass(module: str, source: str) -> None:
    assert layer_violations(source, module) == []


@pytest.mark.parametrize(
    ("source", "caught"),
    [
        ("import aiohttp\n" + CATCH.format("aiohttp.ClientError"), True),
        (
            "from websockets.exceptions import ConnectionClosed as CC\n"
            + CATCH.format("(OSError, CC)"),
            True,
        ),
        ("import ssl\n" + CATCH.format("ssl.SSLError"), True),
        ("from mpnet.errors import ProbeError\n" + CATCH.format("(ProbeError, OSError)"), False),
    ],
)
def test_caught_rule(source: str, caught: bool) -> None:
    assert bool(caught_violations(source, "mpnet.probe.example")) is caught


def test_net_only_rule_catches() -> None:
    assert net_only_violations("def f():\n    import h11\n", "mpnet.probe.example")
    assert net_only_violations("from python_socks import ProxyType\n", "mpnet.cli.example")
    assert net_only_violations("import aiohttp\nimport json\n", "mpnet.cli.example") == []
