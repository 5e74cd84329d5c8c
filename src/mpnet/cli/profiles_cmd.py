"""``mpnet profiles list | show NAME | validate PATH...``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from mpnet.cli.app import app
from mpnet.cli.completion import complete_exchange
from mpnet.cli.console import err, guarded, out, show
from mpnet.cli.options import Format, FormatOption, ProfilesOption
from mpnet.config.model import Profile
from mpnet.config.profiles import load_profile_file, load_profiles, shipped_profiles_dir

profiles_app = typer.Typer(help="List, show and validate exchange profiles.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")


def _origin(source: str) -> str:
    try:
        Path(source).resolve().relative_to(shipped_profiles_dir().resolve())
    except ValueError:
        return source
    return "shipped"


@profiles_app.command("list")
def list_profiles(
    profiles: ProfilesOption = None,
    format: FormatOption = Format.table,
) -> None:
    """List known exchanges with their REST and WebSocket URLs."""
    import os

    with guarded():
        found = load_profiles(profiles or (), env=os.environ)
        rows = [
            {
                "name": p.name,
                "title": p.title,
                "rest": p.url_for("rest"),
                "ws": p.url_for("ws"),
                "source": _origin(p.source),
            }
            for p in found
        ]
        if format is Format.json:
            out.print_json(json.dumps({"profiles": rows}))
            return
        from mpnet.render.fit import Fitted

        show(Text(f"{len(rows)} exchange profiles", style="italic"))
        show(Fitted([True, False], lambda wide: _profiles_view(rows, wide=wide)))


def _profiles_view(
    rows: list[dict[str, str | None]], *, wide: bool
) -> tuple[RenderableType, list[RenderableType]]:
    """A table (``wide``); narrower, a block per exchange with each URL on a line of its own:
    a URL is never split across lines."""
    if wide:
        table = Table()
        for column in ("name", "title", "REST health", "WebSocket", "source"):
            table.add_column(column, no_wrap=True)
        for row in rows:
            table.add_row(
                row["name"], row["title"], row["rest"] or "-", row["ws"] or "-", row["source"]
            )
        return table, []
    lines: list[RenderableType] = []
    for row in rows:
        lines.append(
            Text.assemble((f"{row['name']}", "bold"), f"  {row['title']} ({row['source']})")
        )
        # Text wraps between words: a URL too long for its line moves to the next, whole.
        lines.append(Text(f"  REST health  {row['rest'] or '-'}"))
        lines.append(Text(f"  WebSocket    {row['ws'] or '-'}"))
    return Group(*lines), []


@profiles_app.command("show")
def show_profile(
    name: Annotated[
        str,
        typer.Argument(metavar="EXCHANGE", autocompletion=complete_exchange, help="Exchange name."),
    ],
    profiles: ProfilesOption = None,
) -> None:
    """Print a profile's YAML and where it was loaded from."""
    import os

    with guarded():
        profile = load_profiles(profiles or (), env=os.environ).get(name)
        err.print(f"# {profile.title} — from {profile.source}")
        text = Path(profile.source).read_text(encoding="utf-8")
        out.print(_without_passwords(text, profile), markup=False, end="")


def _without_passwords(text: str, profile: Profile) -> str:
    """The profile as written, with the password of every proxy in its ``network:`` block
    masked, however it was spelled (raw or percent-encoded, in any case)."""
    import re
    from urllib.parse import quote

    from mpnet.core.proxy_url import REDACTED, ProxyURL, redact_url_text

    spellings: set[str] = set()
    network = profile.network
    for choice in (network.proxy_rest, network.proxy_ws) if network else ():
        if isinstance(choice, ProxyURL) and choice.password:
            spellings |= {choice.password, quote(choice.password, safe=""), quote(choice.password)}
    pattern = "|".join(re.escape(s) for s in sorted(spellings, key=len, reverse=True))
    lines = []
    for line in redact_url_text(text).splitlines(keepends=True):
        # Only lines that can hold a URL's user information; a short password such as "x"
        # must not garble the rest of the file.
        if pattern and "@" in line:
            line = re.sub(pattern, REDACTED, line, flags=re.IGNORECASE)
        lines.append(line)
    return "".join(lines)


@profiles_app.command("validate")
def validate_profiles(
    paths: Annotated[list[Path], typer.Argument(help="Profile files to check.", metavar="PATH")],
) -> None:
    """Check profile files against the schema; exit 2 at the first invalid one."""
    with guarded():
        for path in paths:
            profile = load_profile_file(path)
            targets = ", ".join(profile.targets)
            out.print(f"ok: {path} ({profile.name}: {targets})")
