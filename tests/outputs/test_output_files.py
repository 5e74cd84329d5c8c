"""``--output FILE`` is checked before any work and written atomically.

An output that cannot be written (no such directory, a directory, no permission) is one usage
line and exit 2 before anything is sent: a listening socket the profile points at sees no
connection. A report replaces the previous file whole (a temporary file in the same directory,
then ``os.replace``): a failed or interrupted run leaves the previous file as it was, and no
temporary file behind.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from mpnet_process import MpnetProcess
from typer.testing import CliRunner

from mpnet.cli.app import get_app
from mpnet.cli.outfile import check_output, open_output_file, write_output_file
from mpnet.errors import UsageError

TERMINAL = {"COLUMNS": "80", "TERM": "dumb"}
PREVIOUS = '{"previous": "report"}\n'


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP socket on 127.0.0.1 that accepts nothing: a connection would wait in its queue."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock


@pytest.fixture
def local_profile(tmp_path: Path, listener: socket.socket) -> Path:
    port = listener.getsockname()[1]
    directory = tmp_path / "profiles"
    directory.mkdir()
    (directory / "local.yaml").write_text(
        f"name: local\ntitle: Local\nrest:\n  base_url: http://127.0.0.1:{port}\n"
        "  health: {path: /ping}\n"
        f"websocket:\n  url: ws://127.0.0.1:{port}/ws\n  subscribe: {{op: sub}}\n"
        "  data_match: {op: data}\n",
        encoding="utf-8",
    )
    return directory


def probe(*args: str, profiles: Path) -> object:
    return CliRunner().invoke(
        get_app(),
        ["probe", "local", "--profiles", str(profiles), "--timeout", "2", *args],
        env=TERMINAL,
    )


def nothing_connected(listener: socket.socket) -> bool:
    readable, _, _ = select.select([listener], [], [], 0)
    return not readable


def test_the_listener_sees_a_probe_that_is_sent(
    tmp_path: Path, local_profile: Path, listener: socket.socket
) -> None:
    # The check below can fail: a probe with a writable output does connect.
    result = probe("--no-ws", "-o", str(tmp_path / "ok.json"), profiles=local_profile)
    assert result.exit_code == 1  # nothing answers the HTTP request in time
    assert not nothing_connected(listener)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("missing/report.json", "no such directory: {tmp}/missing"),
        (".", "is a directory; name a file in it"),
        ("plain.txt/report.json", "{tmp}/plain.txt is not a directory"),
    ],
)
def test_an_unwritable_output_is_refused_before_anything_is_sent(
    tmp_path: Path, local_profile: Path, listener: socket.socket, where: str, message: str
) -> None:
    (tmp_path / "plain.txt").write_text("x", encoding="utf-8")
    output = str(tmp_path / where)
    result = probe("-o", output, "--format", "json", profiles=local_profile)
    assert result.exit_code == 2
    assert result.stderr == (
        f"mpnet: error: --output {output}: {message.format(tmp=tmp_path.resolve())}\n"
    )
    assert result.stdout == ""
    assert nothing_connected(listener)


def test_a_directory_the_kernel_will_not_write_in_is_refused(
    local_profile: Path, listener: socket.socket
) -> None:
    # /proc refuses new files even to root, where permission bits would not.
    result = probe("-o", "/proc/mpnet-report.json", profiles=local_profile)
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "mpnet: error: --output /proc/mpnet-report.json: cannot write in /proc: "
    )
    assert result.stderr.count("\n") == 1
    assert nothing_connected(listener)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_no_permission_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    with pytest.raises(UsageError, match=r"cannot write in .*permission denied"):
        check_output(str(locked / "report.json"))
    read_only = tmp_path / "read-only.json"
    read_only.write_text(PREVIOUS, encoding="utf-8")
    read_only.chmod(0o444)
    with pytest.raises(UsageError, match="permission denied"):
        check_output(str(read_only))


def test_a_report_replaces_the_file_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text(PREVIOUS, encoding="utf-8")
    write_output_file(str(target), '{"new": 1}\n')
    assert target.read_text(encoding="utf-8") == '{"new": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


@pytest.mark.parametrize("failure", [RuntimeError("renderer broke"), KeyboardInterrupt()])
def test_a_write_that_fails_halfway_leaves_the_previous_file(
    tmp_path: Path, failure: BaseException
) -> None:
    target = tmp_path / "report.json"
    target.write_text(PREVIOUS, encoding="utf-8")
    with pytest.raises(type(failure)), open_output_file(str(target)) as fh:
        fh.write('{"half": ')
        fh.flush()
        raise failure
    assert target.read_text(encoding="utf-8") == PREVIOUS
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_modes_are_what_open_would_give_or_the_previous_files(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.prom"
        write_output_file(str(fresh), "x\n")
        # Readable by node_exporter's user, as a file from open(path, "w") would be.
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        kept = tmp_path / "kept.prom"
        kept.write_text("old\n", encoding="utf-8")
        kept.chmod(0o640)
        write_output_file(str(kept), "new\n")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640
    finally:
        os.umask(umask)


def test_a_symbolic_link_keeps_pointing_at_the_new_report(tmp_path: Path) -> None:
    real = tmp_path / "reports" / "mpnet.json"
    real.parent.mkdir()
    real.write_text(PREVIOUS, encoding="utf-8")
    link = tmp_path / "latest.json"
    link.symlink_to(real)
    check_output(str(link))
    write_output_file(str(link), "new\n")
    assert link.is_symlink() and real.read_text(encoding="utf-8") == "new\n"


def test_a_fifo_is_written_in_place(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text(encoding="utf-8")))
    reader.start()
    check_output(str(fifo))
    write_output_file(str(fifo), "through the pipe\n")
    reader.join(timeout=30)
    assert received == ["through the pipe\n"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_probe_writes_each_format_atomically(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text(PREVIOUS, encoding="utf-8")
    result = CliRunner().invoke(
        get_app(),
        ["probe", "--lab", "okx", "--no-ws", "--format", "json", "-o", str(target)],
        env=TERMINAL,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(target.read_text(encoding="utf-8"))["summary"]["ok"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_an_interrupted_probe_leaves_the_previous_report(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text(PREVIOUS, encoding="utf-8")
    # The simulator answers after 30 s: Ctrl-C arrives while the attempt waits.
    child = MpnetProcess(
        *("probe", "--lab", "okx", "--no-ws", "--fault", "okx=slow:30", "--timeout", "60"),
        *("--format", "json", "-o", str(target)),
        cwd=str(tmp_path),
    )
    try:
        child.wait_for("simulated exchange")
        assert child.interrupt(signal.SIGINT) == 130, child.describe()
    finally:
        child.stop()
    assert target.read_text(encoding="utf-8") == PREVIOUS
    assert f"{target} not written (left as it was)" in child.stderr
    assert "interrupted: partial results" in child.stdout  # shown here instead
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
