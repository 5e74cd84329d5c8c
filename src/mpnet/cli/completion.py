"""Shell completion of the words only mpnet knows: exchange names, lab fault modes, routes.

Typer completes commands, options and fixed choices (``--format``, ``--backend``) itself, for
bash, zsh and fish (``mpnet --install-completion``, ``mpnet --show-completion``); the callbacks
here are given to the arguments and options whose values come from files: the profiles, the
lab's fault modes and the config file's ``routes:`` mapping.

A completion runs on every TAB, with whatever the line holds so far: a callback never raises and
never prints; a profile or config file it cannot read gives no candidates rather than an error.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

#: The environment variable Typer's completion scripts set (``_MPNET_COMPLETE=complete_bash``).
COMPLETE_VAR = "_MPNET_COMPLETE"


def complete_exchange(ctx: Any, incomplete: str) -> list[tuple[str, str]]:
    """Exchange names from the profiles (shipped, ``$MPNET_PROFILES``, ``--profiles DIR``
    given earlier on the line), each with its title."""
    modes = _bash_fault_modes(os.environ)
    if modes is not None:
        # bash split `--fault okx=sl` at the `=`, so this word is the mode, not an exchange.
        return [(mode, "lab fault mode") for mode in modes if mode.startswith(incomplete)]
    return [(name, title) for name, title in exchange_names(_param(ctx, "profiles"))]


def complete_fault(ctx: Any, incomplete: str) -> list[tuple[str, str]]:
    """``EXCHANGE=MODE``: exchange names followed by ``=``, then the fault modes."""
    name, equals, _ = incomplete.partition("=")
    if not equals:
        return [(f"{name}=", title) for name, title in exchange_names(_param(ctx, "profiles"))]
    return [(f"{name}={mode}", "lab fault mode") for mode in fault_modes()]


def complete_route(ctx: Any, incomplete: str) -> list[tuple[str, str]]:
    """Route names from the ``routes:`` mapping of the config file, if it has one."""
    return [(name, "route in the config file") for name in route_names(_param(ctx, "config"))]


def exchange_names(profile_dirs: Any = None) -> list[tuple[str, str]]:
    """(name, title) of every profile, or of the shipped ones when an extra directory cannot be
    read; nothing when not even those can."""
    from mpnet.config.profiles import load_profiles

    extra = [str(d) for d in profile_dirs or ()]
    for dirs, env in ((extra, os.environ), ((), {})):
        with contextlib.suppress(Exception):
            return [(p.name, p.title) for p in load_profiles(dirs, env=env)]
    return []


def fault_modes() -> list[str]:
    """Each lab fault mode as it is typed: ``drop_after:`` for a mode that needs a value."""
    from mpnet.lab.faults import FAULT_MODES

    return [f"{mode}:" if needs_value else mode for mode, needs_value in FAULT_MODES.items()]


def route_names(config: Any = None, *, env: Mapping[str, str] | None = None) -> list[str]:
    """The keys of the config file's ``routes:`` mapping, read leniently: no file, a file that
    is not YAML or has no ``routes:`` mapping all give no names."""
    import yaml

    from mpnet.config.file import find_config

    environ = os.environ if env is None else env
    with contextlib.suppress(Exception):
        found = find_config(config if isinstance(config, str) else None, env=environ)
        if found is not None:
            document = yaml.safe_load(Path(found).read_text(encoding="utf-8"))
            routes = document.get("routes") if isinstance(document, dict) else None
            if isinstance(routes, dict):
                return [str(name) for name in routes]
    return []


def _param(ctx: Any, name: str) -> Any:
    """The value of an option given earlier on the command line, if any."""
    return (getattr(ctx, "params", None) or {}).get(name)


def _bash_fault_modes(env: Mapping[str, str]) -> list[str] | None:
    """The fault modes when bash is completing the word after ``--fault NAME=``.

    bash splits words at ``=`` (COMP_WORDBREAKS), so ``--fault okx=sl`` reaches mpnet as the
    words ``--fault okx = sl``: the option takes ``okx`` and ``=`` looks like an exchange
    argument. Only bash does this; zsh and fish pass ``okx=sl`` whole to :func:`complete_fault`.
    """
    if env.get(COMPLETE_VAR) != "complete_bash":
        return None
    words = list(_words(env.get("COMP_WORDS", "")))
    try:
        cword = int(env.get("COMP_CWORD", ""))
    except ValueError:
        return None
    before = words[:cword]
    if len(before) >= 3 and before[-1] == "=" and before[-3] == "--fault":
        return fault_modes()
    return None


def _words(line: str) -> Iterator[str]:
    try:
        yield from shlex.split(line)
    except ValueError:
        yield from line.split()


#: Shells whose completion scripts Typer writes.
SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")
#: The root options that print or install a completion script, by what they do.
SCRIPT_OPTIONS = {"--show-completion": "show", "--install-completion": "install"}


def explicit_shell(args: list[str], commands: set[str]) -> tuple[str, str] | None:
    """``("show", "zsh")`` for ``mpnet --show-completion zsh`` (or ``=zsh``), else None.

    Typer's two options take no value where it can detect the shell it runs in (it always can
    from a terminal), so ``--show-completion zsh`` would silently print bash's script from bash.
    The shell named after them is honoured here.

    Raises:
        UsageError: the word after the option names a shell Typer cannot complete for.
    """
    from mpnet.errors import UsageError

    for index, word in enumerate(args):
        option, equals, value = word.partition("=")
        action = SCRIPT_OPTIONS.get(option)
        if action is None:
            continue
        if not equals:
            following = args[index + 1] if index + 1 < len(args) else ""
            if not following or following.startswith("-") or following in commands:
                return None
            value = following
        if value not in SHELLS:
            raise UsageError(f"{option} {value!r}: expected one of: {', '.join(SHELLS[:3])}")
        return action, value
    return None


def run_script_option(action: str, shell: str) -> None:
    """Print or install the completion script of ``shell``, as Typer's options do."""
    from typer._completion_shared import get_completion_script, install

    if action == "show":
        script = get_completion_script(prog_name="mpnet", complete_var=COMPLETE_VAR, shell=shell)
        print(script)
        return
    _, path = install(shell=shell, prog_name="mpnet", complete_var=COMPLETE_VAR)
    print(f"{shell} completion installed in {path}")
    print("Completion will take effect once you restart the terminal")
