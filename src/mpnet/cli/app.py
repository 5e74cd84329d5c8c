"""The ``mpnet`` command: parse options, call the library, render, exit with the mapped code.

Each command lives in its own module under ``mpnet.cli`` and registers itself on :data:`app`
(or a sub-app) when imported below. Heavy libraries (aiohttp, websockets) are imported inside
the commands that touch the network, never at module level here.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from mpnet import __version__
from mpnet.cli.completion import explicit_shell, run_script_option
from mpnet.cli.console import error_line, state
from mpnet.cli.exit_codes import exit_code_for
from mpnet.cli.help import polish
from mpnet.errors import UsageError, did_you_mean


class MpnetGroup(TyperGroup):
    """The ``mpnet`` command group, with two habits of curl and httpie users served:

    * a usage error (unknown option, bad choice, missing argument) is one ``mpnet: error:``
      line and exit 2, not a framed box; a choice that is nearly right gets "did you mean";
    * ``--debug`` is accepted after the subcommand too (``mpnet probe x --debug``).
    """

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        debug = _debug_option()
        for command in _commands(self):
            if not any(param.name == "debug" for param in command.params):
                command.params.append(debug)
        _describe_script_options(self)
        polish(self)
        try:
            request = explicit_shell(
                list(sys.argv[1:] if args is None else args), set(self.commands)
            )
            if request is not None:
                run_script_option(*request)
                return self._finish(0, standalone_mode)
            result = super().main(
                args=args,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
            code = result if isinstance(result, int) else 0
        except typer.Abort:
            error_line("aborted")
            code = 1
        except typer.TyperException as exc:
            code = exc.exit_code
            if type(exc).__name__ == "NoArgsIsHelpError":
                # `mpnet proxy` alone: the help is the answer (click prints it to stderr).
                show = getattr(exc, "show", None)
                if show is not None:
                    show()
            else:
                error_line(usage_error_text(exc))
        except UsageError as exc:
            error_line(str(exc))
            code = exit_code_for(exc)
        return self._finish(code, standalone_mode)

    @staticmethod
    def _finish(code: int, standalone_mode: bool) -> int:
        if not standalone_mode:
            return code
        sys.exit(code)


def _describe_script_options(group: Any) -> None:
    """Say in ``mpnet --help`` that the completion options take a shell's name."""
    for param in group.params:
        if param.name in ("install_completion", "show_completion"):
            param.metavar = "[SHELL]"
            verb = "Install" if param.name == "install_completion" else "Print"
            param.help = (
                f"{verb} the completion script for this shell, or for SHELL (bash, zsh, fish)."
            )


def _commands(group: Any) -> Iterator[Any]:
    for command in getattr(group, "commands", {}).values():
        yield command
        yield from _commands(command)


_INVALID_VALUE = re.compile(
    r"^Invalid value for (?P<param>'[^']*'(?: / '[^']*')*): (?P<rest>.*)$", re.S
)
_NOT_ONE_OF = re.compile(r"^(?P<value>'.*') is not one of (?P<choices>'.*')\.?$", re.S)


def usage_error_text(exc: typer.TyperException) -> str:
    """One line for a usage error, without the "Value error," of the validation library and
    with "did you mean" for a misspelt choice (``--format jsn``)."""
    possibilities = sorted(getattr(exc, "possibilities", None) or ())
    option_name = getattr(exc, "option_name", None)
    if option_name and type(exc).__name__ == "NoSuchOption":
        # click's "(Possible options: ...)" are its close matches: say it as everywhere else.
        text = f"no such option: {option_name}"
        if possibilities:
            text += f"; did you mean {' or '.join(possibilities)}?"
        return _with_help_pointer(text, exc)
    text = exc.format_message().replace("Value error, ", "").strip()
    invalid = _INVALID_VALUE.match(text)
    if invalid is not None:
        param = invalid["param"].replace("'", "")
        rest = invalid["rest"].strip()
        choice = _NOT_ONE_OF.match(rest)
        if choice is not None:
            value = choice["value"][1:-1]
            options = re.findall(r"'([^']*)'", choice["choices"])
            return f"{param} {value!r}: {did_you_mean(value, options)}"
        text = f"{param}: {_plain(rest)}"
    else:
        text = text[:1].lower() + text[1:].rstrip(".")
    return _with_help_pointer(text, exc)


#: The validation library's phrases, said the way the rest of mpnet's messages are.
_PLAIN = (
    (re.compile(r"^Input should be a valid integer.*", re.S), "expected a whole number"),
    (re.compile(r"^Input should be a valid number.*", re.S), "expected a number"),
    (re.compile(r"^Input should be a valid boolean.*", re.S), "expected true or false"),
    (re.compile(r"^Input should be (.*)", re.S), r"should be \1"),
)


def _plain(text: str) -> str:
    for pattern, replacement in _PLAIN:
        if pattern.match(text):
            return pattern.sub(replacement, text).rstrip(".")
    return text.rstrip(".")


def _with_help_pointer(text: str, exc: typer.TyperException) -> str:
    path = getattr(getattr(exc, "ctx", None), "command_path", None)
    return f"{text} (see `{path} --help`)" if path else text


def _set_debug(value: bool) -> None:
    if value:
        state.debug = True


def _debug_option() -> Any:
    """A hidden ``--debug`` flag for a subcommand, built by Typer itself from one tiny command."""
    builder = typer.Typer()

    @builder.command()
    def _command(
        debug: Annotated[
            bool,
            typer.Option("--debug", hidden=True, callback=_set_debug, help="Show tracebacks."),
        ] = False,
    ) -> None:
        """Never run."""

    [option] = [p for p in typer.main.get_command(builder).params if p.name == "debug"]
    # Handled by the callback: the command functions have no `debug` parameter.
    option.expose_value = False
    return option


app = typer.Typer(
    name="mpnet",
    cls=MpnetGroup,
    help="Connectivity diagnostics for exchange REST and WebSocket paths, direct or via proxies.",
    no_args_is_help=True,
    add_completion=True,
    # Locals may hold proxy passwords.
    pretty_exceptions_show_locals=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mpnet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for errors (passwords stay masked).")
    ] = False,
) -> None:
    state.debug = debug


def get_app() -> typer.Typer:
    """The app with every command registered (tests use this with Typer's runner)."""
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"mpnet.cli.{name}")
    return app


#: Modules that add commands to :data:`app`; each one imports only what its commands need.
COMMAND_MODULES: tuple[str, ...] = (
    "profiles_cmd",
    "ssl_cmd",
    "probe_cmd",
    "lab_cmd",
    "proxy_cmd",
    "serve_cmd",
    "watch_cmd",
    "ws_cmd",
    "report_cmd",
)
