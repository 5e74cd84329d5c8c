"""The two consoles: data to stdout, diagnostics to stderr; and the top-level error guard."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
from collections.abc import Iterator

import typer
from rich.console import Console, RenderableType

from mpnet.cli.exit_codes import ExitCode, exit_code_for
from mpnet.core.proxy_url import redact_url_text
from mpnet.errors import MpnetError

#: Columns of stdout when it is a pipe or a file and COLUMNS is not set (CI logs, ``| less``):
#: wide enough for the full probe table, as curl and pytest assume.
PIPE_WIDTH = 120
#: Columns of a table written to ``--output FILE``.
FILE_WIDTH = 160


def decided_width(console: Console) -> int | None:
    """The columns mpnet lays its output out for, decided here only (the views fit whatever
    width they are printed at).

    COLUMNS when set, also on a dumb terminal where Rich would assume 80 (Emacs' shell says
    ``TERM=dumb`` and sets COLUMNS); else the size a dumb terminal reports; else, on a pipe,
    :data:`PIPE_WIDTH`. None: a terminal Rich measures itself, following resizes (``watch``).
    """
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if not console.is_terminal:
        return PIPE_WIDTH
    if console.is_dumb_terminal:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            return os.get_terminal_size(console.file.fileno()).columns or None
    return None


out = Console(highlight=False, soft_wrap=True)
if (_width := decided_width(out)) is not None:
    if out.is_dumb_terminal:
        # Rich sizes a dumb terminal 80 x 25 unless both are set.
        out.size = (_width, out.height)
    else:
        out.width = _width
err = Console(stderr=True, highlight=False, soft_wrap=True)


def show(renderable: RenderableType, console: Console | None = None) -> None:
    """Print a view to ``console`` (stdout's by default) at its width: tables in the layout
    that fits, text wrapped between words, no spaces at the end of a line."""
    from mpnet.render.fit import Trimmed

    (console or out).print(Trimmed(renderable), soft_wrap=False)


class State:
    """Global options, set by the app callback."""

    debug: bool = False


state = State()


def error_line(message: str) -> None:
    """Print one ``mpnet: error: ...`` line to stderr, passwords masked."""
    err.print(
        f"[bold red]mpnet: error:[/] {redact_url_text(message)}", markup=True, highlight=False
    )


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """Turn mpnet's expected errors and Ctrl-C into one line and the documented exit code.

    With ``--debug`` the traceback is shown too (passwords are still masked in mpnet's own
    messages, which are built from redacted URLs).
    """
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        err.print("mpnet: interrupted")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except MpnetError as exc:
        if state.debug:
            err.print_exception()
        error_line(str(exc))
        raise typer.Exit(exit_code_for(exc)) from None
    except OSError as exc:
        # Files named on the command line (--output, --ca-bundle) that cannot be written or read,
        # and an address to listen on (--listen) that another process holds.
        if state.debug:
            err.print_exception()
        error_line(os_error_text(exc))
        raise typer.Exit(ExitCode.USAGE) from None
    except Exception as exc:
        # A bug, not a user error: one line by default, the traceback with --debug.
        if state.debug:
            err.print_exception()
        error_line(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)")
        raise typer.Exit(ExitCode.PROBE_FAILED) from None


#: asyncio's bind failure: "error while attempting to bind on address ('127.0.0.1', 9879): ..."
_BIND_ADDRESS = re.compile(r"address \('(?P<host>[^']*)', (?P<port>\d+)")


def os_error_text(exc: OSError) -> str:
    """One line for an OSError that reached the top: the file or address, then what is wrong."""
    if exc.errno == errno.EADDRINUSE:
        bound = _BIND_ADDRESS.search(str(exc))
        if bound is not None:
            host, port = bound["host"], bound["port"]
            shown = f"[{host}]" if ":" in host else host
            return (
                f"{shown}:{port} is in use by another process (`ss -ltnp 'sport = :{port}'` "
                "shows which); choose another port"
            )
        return "the address is in use by another process; choose another port"
    reason = exc.strerror or str(exc)
    return f"{exc.filename or ''}: {reason}".lstrip(": ")


def write_output(text: str, output: str | None) -> None:
    """Write rendered data to ``--output FILE`` (atomically: :mod:`mpnet.cli.outfile`) or
    stdout."""
    if output:
        from mpnet.cli.outfile import write_output_file

        write_output_file(output, text if text.endswith("\n") else text + "\n")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
