"""Help text the way curl and httpie users read it: metavars, not Python types.

Typer shows each parameter's Python type (``<bool>``, ``<list[str]>``, ``<int range>``) and
writes usage lines such as ``{PATH...}...``. :func:`polish` turns every parameter of a built
command tree into one of the two classes below (same state, other display methods), so that:

* a flag shows no type at all, a value shows its metavar (``S``, ``N``, ``URL``, ``PATH``,
  ``EXCHANGE=MODE``): the declared one, else one made from the type (seconds are ``S``, whole
  numbers ``N``, choices ``a|b|c``, paths ``PATH``, anything else ``TEXT``);
* an argument reads ``URL`` when required, ``[EXCHANGE]`` when not, and ends in ``...`` when it
  takes several (``[EXCHANGE]...``, ``PATH...``);
* a number's allowed range is said in its help text, not as ``[x>=0]``;
* a ``--rest/--no-rest`` flag's default is the flag itself (``[default: --rest]``);
* a docstring's paragraphs are reflowed: its line breaks are the source's, not the terminal's.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from typer.core import TyperArgument, TyperOption

#: Metavars of plain Python types, when a parameter declares none.
TYPE_METAVARS: dict[type, str] = {int: "N", float: "S", str: "TEXT"}


class MpnetOption(TyperOption):
    """A Typer option shown with a metavar and no Python type."""

    def display_type_rich(self, ctx: Any) -> str | None:
        if self.metavar is not None:
            return self.metavar
        if self.is_flag or self.count:
            return None
        return _metavar_for(self)

    def _get_number_range_help_str(self) -> str | None:
        return None

    def _get_default_string(
        self, *, ctx: Any, show_default_is_str: bool, default_value: Any
    ) -> str:
        if self.is_flag and self.secondary_opts and isinstance(default_value, bool):
            return _long(self.opts if default_value else self.secondary_opts)
        return super()._get_default_string(
            ctx=ctx, show_default_is_str=show_default_is_str, default_value=default_value
        )


class MpnetArgument(TyperArgument):
    """A Typer argument shown by its metavar: ``URL``, ``[EXCHANGE]...``, ``PATH...``."""

    @property
    def display_name_raw(self) -> str:
        # The Arguments panel and error messages: EXCHANGE..., URL.
        return self._base_name() + ("..." if self.nargs != 1 else "")

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _rich_display_name(self) -> str:
        return self.display_name_raw

    def _usage_display_name(self) -> str:
        name = self._base_name()
        if not self.required:
            name = f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")

    def _base_name(self) -> str:
        return self.metavar or (self.name or "").upper()

    def _get_number_range_help_str(self) -> str | None:
        return None


def polish(command: Any) -> None:
    """Give every parameter of ``command`` and of its subcommands the display above, and reflow
    their help texts. Idempotent: each run of the app calls it on the tree Typer just built."""
    for each in _tree(command):
        each.help = reflow(each.help)
        help_option = _help_option(each)
        for param in [*each.params, *([help_option] if help_option is not None else [])]:
            if type(param) is TyperOption:
                param.__class__ = MpnetOption
            elif type(param) is TyperArgument:
                param.__class__ = MpnetArgument


def reflow(text: str | None) -> str | None:
    """Paragraphs of ``text`` each on one line (Typer keeps a docstring's line breaks); a
    paragraph that starts with ``\\b`` keeps its lines, as in click."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)


def _tree(command: Any) -> Iterator[Any]:
    yield command
    for sub in getattr(command, "commands", {}).values():
        yield from _tree(sub)


def _help_option(command: Any) -> Any:
    """The command's ``--help`` option, which click makes on first use and then keeps."""
    from typer._click import Context

    return command.get_help_option(Context(command))


def _metavar_for(option: TyperOption) -> str:
    descriptor = option.type_descriptor
    choices = descriptor.choices
    if choices:
        return "|".join(str(getattr(choice, "value", choice)) for choice in choices)
    if descriptor.is_path or descriptor.is_file:
        return "PATH"
    annotation: Any = descriptor.annotation
    args: tuple[Any, ...] = getattr(annotation, "__args__", ())
    if descriptor.is_list and len(args) == 1:
        annotation = args[0]
    return TYPE_METAVARS.get(annotation, "TEXT") if isinstance(annotation, type) else "TEXT"


def _long(opts: list[str]) -> str:
    return next((opt for opt in opts if opt.startswith("--")), opts[0])
