"""Console-script entry point, kept free of heavy imports.

``mpnet --version`` is answered before Typer and Rich are imported (about 250 ms of a 2-core
machine's start-up); everything else goes to the Typer app.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Run the ``mpnet`` command."""
    if sys.argv[1:] == ["--version"]:
        from mpnet import __version__

        sys.stdout.write(f"mpnet {__version__}\n")
        return
    from mpnet.cli.app import get_app

    get_app()()
