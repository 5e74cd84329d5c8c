"""Commands that never touch the network must not import aiohttp or websockets (start-up time)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROGRAM = """
import sys
from mpnet.cli.entry import main
sys.argv = ["mpnet", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
heavy = sorted(m for m in ("aiohttp", "websockets") if m in sys.modules)
sys.stderr.write("HEAVY=" + ",".join(heavy) + "\\n")
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["--help"],
        ["probe", "--help"],
        ["proxy", "explain", "--url", "https://www.deribit.com/api/v2/public/test"],
        ["ssl", "explain", "deribit"],
        ["profiles", "list"],
    ],
)
def test_no_network_library_imported(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, *argv], capture_output=True, text=True, timeout=60
    )
    assert "HEAVY=\n" in done.stderr, done.stderr[-2000:]
