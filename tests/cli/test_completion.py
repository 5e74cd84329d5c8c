"""Shell completion for bash, zsh and fish: commands and options (Typer's), and the words only
mpnet knows: exchange names from the profiles, lab fault modes, output formats, and route names
from the config file's ``routes:`` mapping.

Completions are asked the way the shells' scripts ask them: Typer's environment variables
(``_MPNET_COMPLETE=complete_bash`` with ``COMP_WORDS``/``COMP_CWORD``, ``complete_zsh`` and
``complete_fish`` with ``_TYPER_COMPLETE_ARGS``), and once through bash itself running the script
``mpnet --show-completion bash`` prints.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mpnet.cli.app import get_app
from mpnet.cli.completion import complete_route, route_names
from mpnet.config.profiles import load_profiles
from mpnet.lab.faults import FAULT_MODES

SHIPPED = sorted(p.name for p in load_profiles(env={}))


def complete(shell: str, line: str, **env: str) -> list[str]:
    """What mpnet offers for the last word of ``line`` (a trailing space: a new, empty word)."""
    variables = {"_MPNET_COMPLETE": f"complete_{shell}", **env}
    if shell == "bash":
        words = line.split(" ")
        variables |= {"COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
    else:
        variables["_TYPER_COMPLETE_ARGS"] = line
        if shell == "fish":
            variables["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    result = CliRunner().invoke(get_app(), [], env=variables, prog_name="mpnet")
    assert result.exit_code == 0, result.output
    return _values(shell, result.stdout)


def _values(shell: str, output: str) -> list[str]:
    if shell == "bash":
        return output.split()
    if shell == "fish":
        return [line.split("\t")[0] for line in output.splitlines() if line]
    # zsh: _arguments '*: :(("value":"help" "value2"))', a colon in a value escaped.
    import re

    found = re.findall(r'"((?:[^"\\]|\\.)*)"(?::"(?:[^"\\]|\\.)*")?', output)
    return [re.sub(r"\\+:", ":", value) for value in found]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_exchange_names_complete_from_the_profiles(shell: str) -> None:
    assert complete(shell, "mpnet probe bi") == [n for n in SHIPPED if n.startswith("bi")]
    assert complete(shell, "mpnet watch k") == ["kraken", "kucoin"]
    assert complete(shell, "mpnet proxy explain ok") == ["okx"]


def test_shipped_profiles_are_what_is_offered() -> None:
    # Not a fixed list in the test: what `profiles list` knows is what TAB offers.
    assert complete("bash", "mpnet probe ") == SHIPPED
    assert len(SHIPPED) >= 10


def test_an_extra_profiles_directory_earlier_on_the_line_is_read(tmp_path: Path) -> None:
    (tmp_path / "myex.yaml").write_text(
        "name: myexchange\ntitle: Mine\nrest:\n  base_url: https://api.example.com\n"
        "  health: {path: /ping}\n",
        encoding="utf-8",
    )
    assert complete("bash", f"mpnet probe --profiles {tmp_path} my") == ["myexchange"]


def test_an_unreadable_profiles_directory_still_completes_the_shipped_ones(
    tmp_path: Path,
) -> None:
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n", encoding="utf-8")
    assert complete("bash", f"mpnet probe --profiles {tmp_path} ok") == ["okx"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_fault_completes_exchange_then_mode(shell: str) -> None:
    assert complete(shell, "mpnet probe --lab --fault ok") == ["okx="]
    modes = complete(shell, "mpnet probe --lab --fault okx=")
    assert modes == [f"okx={m}:" if FAULT_MODES[m] else f"okx={m}" for m in FAULT_MODES]
    assert complete(shell, "mpnet lab --fault okx=dr") == ["okx=drop_after:"]


def test_fault_modes_complete_in_bash_which_splits_at_the_equals_sign() -> None:
    # bash hands `--fault okx=sl` over as the words `--fault okx = sl`.
    assert complete("bash", "mpnet probe --lab --fault okx = sl") == ["slow"]
    assert complete("bash", "mpnet probe --lab --fault okx = ") == [
        f"{m}:" if FAULT_MODES[m] else m for m in FAULT_MODES
    ]
    # An exchange argument after a completed fault is still an exchange.
    assert complete("bash", "mpnet probe --lab --fault okx=waf ok") == ["okx"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_formats_and_options_complete(shell: str) -> None:
    formats = ["table", "json", "junit", "prometheus", "html"]
    assert complete(shell, "mpnet probe --format ") == formats
    assert complete(shell, "mpnet ws wss://x --backend a") == ["aiohttp"]
    assert "--count" in complete(shell, "mpnet watch --c")
    assert complete(shell, "mpnet pro") == ["probe", "profiles", "proxy"]


def test_route_names_come_from_the_config_files_routes_mapping(tmp_path: Path) -> None:
    config = tmp_path / "mpnet.yaml"
    config.write_text(
        "routes:\n  corp: {proxy: http://proxy.corp:3128}\n  tokyo-socks: {proxy: socks5h://x}\n"
        "exchanges: {}\n",
        encoding="utf-8",
    )
    assert route_names(str(config), env={}) == ["corp", "tokyo-socks"]
    # Found the way every command finds it: $MPNET_CONFIG here.
    assert route_names(None, env={"MPNET_CONFIG": str(config)}) == ["corp", "tokyo-socks"]

    class Ctx:
        def __init__(self) -> None:
            self.params = {"config": str(config)}

    assert complete_route(Ctx(), "") == [
        ("corp", "route in the config file"),
        ("tokyo-socks", "route in the config file"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        None,  # no config file at all
        "proxy: {https: http://p:3128}\n",  # a config file without routes
        "routes: [corp, tokyo]\n",  # routes that are not a mapping
        "routes: {corp: [unclosed\n",  # not YAML
    ],
)
def test_route_names_are_read_tolerantly(tmp_path: Path, text: str | None) -> None:
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    if text is not None:
        (tmp_path / "config.yaml").write_text(text, encoding="utf-8")
        env["MPNET_CONFIG"] = str(tmp_path / "config.yaml")
    assert route_names(None, env=env) == []


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o default -F _mpnet_completion mpnet"),
        ("zsh", "#compdef mpnet"),
        ("fish", "complete --command mpnet"),
    ],
)
def test_show_completion_prints_the_named_shells_script(shell: str, marker: str) -> None:
    for args in (["--show-completion", shell], [f"--show-completion={shell}"]):
        result = CliRunner().invoke(get_app(), args, prog_name="mpnet")
        assert result.exit_code == 0, result.output
        assert marker in result.stdout
        assert "_MPNET_COMPLETE" in result.stdout


def test_an_unknown_shell_is_one_usage_line() -> None:
    result = CliRunner().invoke(get_app(), ["--show-completion", "tcsh"], prog_name="mpnet")
    assert result.exit_code == 2
    assert result.stderr == (
        "mpnet: error: --show-completion 'tcsh': expected one of: bash, zsh, fish\n"
    )


def test_install_completion_writes_the_script_and_sources_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        get_app(), ["--install-completion", "bash"], env={"HOME": str(tmp_path)}, prog_name="mpnet"
    )
    assert result.exit_code == 0, result.output
    script = tmp_path / ".bash_completions" / "mpnet.sh"
    assert "_MPNET_COMPLETE=complete_bash" in script.read_text(encoding="utf-8")
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text(encoding="utf-8")


def test_bash_itself_completes_a_fault_mode_with_the_installed_script() -> None:
    bin_dir = Path(sys.executable).parent
    if shutil.which("bash") is None or not (bin_dir / "mpnet").exists():
        pytest.skip("needs bash and the mpnet console script beside this Python")
    program = (
        'eval "$(mpnet --show-completion bash)"\n'
        "COMP_WORDS=(mpnet probe --lab --fault okx = g); COMP_CWORD=6\n"
        "_mpnet_completion mpnet\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        ["bash", "--norc", "-c", program], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["geo_block"]
