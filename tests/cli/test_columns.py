"""Issue 15, point 1: 80-column terminals. ``mpnet probe``, ``proxy explain`` and ``profiles
list`` run as child processes with ``COLUMNS=80 TERM=dumb`` (and on a pseudo-terminal): every
line fits, none ends in spaces, no figure is cut, the header names the unit, KuCoin's bootstrap
has its column (issue 14), and a wide terminal still gets every column. The figures shown are
checked against the JSON of the same run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from typer.testing import CliRunner

from mpnet.cli.app import get_app

NARROW = {"COLUMNS": "80", "TERM": "dumb"}
#: A figure as the table shows it: ``12.3``, ``~0.1``, ``123``, ``-``, ``12.3/45.6``.
FIGURE = re.compile(r"~?\d+(\.\d)?(/\d+(\.\d)?)?|-")
PROXY = "socks5h://trader:pw-not-shown@proxy.corp.example.test:1080"


def run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``mpnet ARGS`` in a child with ``env`` on top of a clean environment (no proxy)."""
    dropped = ("proxy", "ssl_cert", "mpnet_", "columns", "lines", "term")
    clean = {k: v for k, v in os.environ.items() if not any(d in k.lower() for d in dropped)}
    return subprocess.run(
        [sys.executable, "-m", "mpnet", *args],
        env={**clean, "XDG_CONFIG_HOME": str(cwd), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_fits(text: str, width: int) -> None:
    """Every line at most ``width`` columns, none ending in spaces, nothing cut with ``…``."""
    for line in text.splitlines():
        assert cell_len(line) <= width, f"{cell_len(line)} columns: {line!r}"
        assert line == line.rstrip(), f"trailing spaces: {line!r}"
    assert "…" not in text, text


def table_of(stdout: str) -> tuple[list[str], list[dict[str, str]]]:
    """The probe table's column titles (a time column's title over ``ms``) and its rows."""
    lines = stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:2] == ["exchange", "target"])
    assert set(lines[at + 1]) == {"─"}, lines[at + 1]
    # Titles end where their column ends: right-justified over the figures (text columns are
    # left-justified and come first).
    bottom, top = lines[at], lines[at - 1]
    ends = [m.end() for m in re.finditer(r"\S+", bottom)]
    titles = []
    start = 0
    for end in ends:
        above = top[start:end].strip() if start < len(top) else ""
        word = bottom[start:end].strip()
        titles.append(above if word == "ms" else word)
        start = end
    rows = []
    for line in lines[at + 2 :]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        assert len(cells) == len(titles), (titles, line)
        rows.append(dict(zip(titles, cells, strict=True)))
    units = [word for word in bottom.split() if word == "ms"]
    assert len(units) == sum(1 for t in titles if t not in ("exchange", "target", "result", "ok"))
    return titles, rows


def shown(value: float) -> str:
    """A figure rounded as the table rounds it."""
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def close(cell: str, value: float) -> bool:
    """``cell`` shows ``value`` (the JSON keeps 3 decimals: a sum may land a hair off)."""
    figure = cell.removeprefix("~")
    if figure == shown(value):
        return True
    unit = 0.05 if "." in figure else 0.5
    return abs(float(figure) - value) <= unit + 0.002


@pytest.fixture(scope="module")
def narrow(tmp_path_factory: pytest.TempPathFactory) -> str:
    cwd = tmp_path_factory.mktemp("narrow")
    done = run("probe", "--lab", "--all", env=NARROW, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_probe_all_fits_80_columns_with_the_unit_and_no_cut_figure(narrow: str) -> None:
    assert_fits(narrow, 80)
    titles, rows = table_of(narrow)
    assert len(rows) == 26
    # Every time cell is a whole figure (with its ~ when uncertain), never a cut one.
    for row in rows:
        for title in titles[3:-1]:
            assert FIGURE.fullmatch(row[title]), (title, row)
        assert re.fullmatch(r"\d+/\d+", row["ok"]), row
    # KuCoin's WebSocket bootstrap has its own column, so that its row adds up.
    assert "boot" in titles
    kucoin = next(r for r in rows if (r["exchange"], r["target"]) == ("kucoin", "ws"))
    assert kucoin["boot"] != "-"
    assert all(r["boot"] == "-" for r in rows if r is not kucoin)
    # Under the table: the legend of ~ (if any figure has one), the route and the TLS policy.
    marked = any("~" in cell for row in rows for cell in row.values())
    assert marked == ("~ uncertain:" in narrow)
    assert "route: direct (default) — all targets" in narrow
    assert "TLS:   verify against" in narrow


# Slow (a second whole lab run; the 80-column tests run the same table): CI's second step runs it.
@pytest.mark.slow
def test_probe_all_at_140_columns_shows_every_phase_and_the_clock(tmp_path: Path) -> None:
    done = run("probe", "--lab", "--all", env={"COLUMNS": "140"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_fits(done.stdout, 140)
    titles, rows = table_of(done.stdout)
    assert titles == [
        "exchange",
        "target",
        "result",
        "boot",
        "dns",
        "tcp",
        "proxy",
        "tls",
        "http/upg",
        "1st msg",
        "ping",
        "p50/p95",
        "ok",
        "offset",
        "lag p50/p95",
    ]
    assert len(rows) == 26
    assert "offset: the exchange's clock minus this machine's" in " ".join(done.stdout.split())


def test_a_dumb_terminal_is_as_wide_as_it_says(tmp_path: Path) -> None:
    """On a real (pseudo-)terminal, ``TERM=dumb`` made Rich assume 80 columns whatever the
    terminal's size; the size the terminal reports is used instead."""
    pty = pytest.importorskip("pty")
    import fcntl
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 140, 0, 0))
    dropped = ("proxy", "ssl_cert", "mpnet_", "columns", "lines")
    env = {k: v for k, v in os.environ.items() if not any(d in k.lower() for d in dropped)}
    child = subprocess.Popen(
        [sys.executable, "-m", "mpnet", "probe", "--lab", "okx", "--no-ws"],
        env={**env, "TERM": "dumb", "XDG_CONFIG_HOME": str(tmp_path)},
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.DEVNULL,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert child.wait(timeout=60) == 0
    os.close(leader)
    text = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    assert "\x1b[" not in text  # a dumb terminal gets no colours
    assert_fits(text, 140)
    # At 80 columns the clock columns would not fit: at 140 they do.
    titles, _ = table_of(text)
    assert titles[-2:] == ["offset", "lag p50/p95"], titles


def run_in_process(
    monkeypatch: pytest.MonkeyPatch, width: int, *args: str
) -> tuple[str, dict[str, Any]]:
    """``mpnet ARGS`` in this process on a ``width``-column console: the table it prints and
    the JSON report of the same run (the command emits both)."""
    from mpnet.cli import console, probe_cmd

    documents: list[dict[str, Any]] = []
    emit = probe_cmd._emit

    def both(report, format, output, verbose, **kwargs):  # type: ignore[no-untyped-def]
        documents.append(report.to_dict())
        emit(report, format, output, verbose, **kwargs)

    monkeypatch.setattr(probe_cmd, "_emit", both)
    monkeypatch.setattr(console.out, "width", width)
    result = CliRunner().invoke(get_app(), list(args))
    assert result.exit_code == 0, result.output
    [document] = documents
    return result.stdout, document


def test_figures_at_80_columns_are_the_reports_figures_and_add_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stdout, document = run_in_process(
        monkeypatch, 80, "probe", "--lab", "kucoin", "okx", "binance-usdm", "bitfinex"
    )
    assert_fits(stdout, 80)
    titles, rows = table_of(stdout)
    assert "connect" in titles  # dns, tcp, proxy and tls added up at this width
    results = {(r["exchange"], r["target"]): r for r in document["results"]}
    for row in rows:
        result = results[(row["exchange"], row["target"])]
        phases = result["phases"]
        sums = {
            "boot": ["bootstrap"],
            "connect": ["dns", "tcp", "proxy", "tls"],
            "dns": ["dns"],
            "tcp": ["tcp"],
            "tls": ["tls"],
            "proxy": ["proxy"],
            "http/upg": ["http", "ws_upgrade"],
            "1st msg": ["first_message"],
            "ping": ["ping_rtt"],
        }
        for title, names in sums.items():
            if title not in row:
                continue
            present = [phases[n] for n in names if n in phases]
            if not present:
                assert row[title] == "-", (title, row)
            else:
                assert close(row[title], sum(present)), (title, row, phases)
        p50, p95 = row["p50/p95"].removeprefix("~").split("/")
        latency = result["latency_ms"]
        assert close(p50, latency["p50"]) and close(p95, latency["p95"]), (row, latency)
        # The time columns add up to the total (one attempt: p50 is its total).
        columns = [t for t in titles[3:-2] if t != "ping"]
        figures = [row[t].removeprefix("~") for t in columns if row[t] != "-"]
        slack = sum(0.05 if "." in f else 0.5 for f in [*figures, p50]) + 1e-6
        assert abs(sum(float(f) for f in figures) - float(p50)) <= slack, row
    [kucoin] = [r for r in rows if (r["exchange"], r["target"]) == ("kucoin", "ws")]
    assert close(kucoin["boot"], results[("kucoin", "ws")]["phases"]["bootstrap"])


def test_insecure_and_uncertain_marks_survive_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    stdout, document = run_in_process(
        monkeypatch, 80, "probe", "--lab", "okx", "kraken", "--insecure", "-n", "2"
    )
    assert_fits(stdout, 80)
    joined = " ".join(stdout.split())
    assert "TLS: INSECURE, not verified (cli: --insecure) — all targets" in joined
    _, rows = table_of(stdout)
    uncertain = [r for r in document["results"] if r["loop_lag_ms"] and r["loop_lag_ms"] > 1]
    for result in uncertain:
        [row] = [
            r
            for r in rows
            if (r["exchange"], r["target"]) == (result["exchange"], result["target"])
        ]
        assert row["p50/p95"].startswith("~"), row
    assert bool(uncertain) == ("~ uncertain:" in stdout)


def test_proxy_explain_at_80_columns_keeps_every_url_on_one_line(tmp_path: Path) -> None:
    done = run("proxy", "explain", "coinbase", env={**NARROW, "HTTPS_PROXY": PROXY}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_fits(done.stdout, 80)
    assert "pw-not-shown" not in done.stdout
    lines = done.stdout.splitlines()
    redacted = "socks5h://trader:***@proxy.corp.example.test:1080"
    # The proxy in the env layer, mpnet's decision and the tools that use it: whole each time.
    assert sum(redacted in line for line in lines) >= 5, done.stdout
    explained = json.loads(
        run(
            "proxy",
            "explain",
            "coinbase",
            "--format",
            "json",
            env={"HTTPS_PROXY": PROXY},
            cwd=tmp_path,
        ).stdout
    )
    for target in explained["targets"]:
        assert any(target["url"] in line for line in lines), target["url"]
        for verdict in target["libraries"].values():
            for url in re.findall(r"\w+://\S+", verdict):
                assert any(url in line for line in lines), url


def test_profiles_list_at_80_columns_keeps_every_url_on_one_line(tmp_path: Path) -> None:
    done = run("profiles", "list", env=NARROW, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_fits(done.stdout, 80)
    lines = done.stdout.splitlines()
    profiles = json.loads(run("profiles", "list", "--format", "json", env={}, cwd=tmp_path).stdout)
    assert len(profiles["profiles"]) >= 13
    for profile in profiles["profiles"]:
        for url in (profile["rest"], profile["ws"]):
            if url:
                assert any(url in line for line in lines), url
    # Wide enough, the table.
    wide = run("profiles", "list", env={"COLUMNS": "200"}, cwd=tmp_path)
    assert_fits(wide.stdout, 200)
    assert re.search(r"┃ name +┃ title +┃ REST health +┃ WebSocket +┃ source +┃", wide.stdout)
