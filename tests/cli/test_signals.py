"""SIGTERM and SIGHUP end ``lab``, ``watch --lab`` and ``serve --lab`` promptly and remove the
lab's temporary directory (CA, written profiles), as Ctrl-C does.

Each command runs as a child process with its own TMPDIR, so the test can see the directory
appear and go. "Promptly" is a bound on waiting, not a measurement.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

#: How long the child may take to get ready, and to end after the signal.
PATIENCE_S = 60.0

COMMANDS = {
    "lab": (["lab", "deribit"], "Ctrl-C stops the lab."),
    "watch": (["watch", "--lab", "deribit", "--interval", "0.5"], "simulated exchange"),
    "serve": (["serve", "--lab", "--listen", "127.0.0.1:0"], "mpnet: serving probes of"),
}

#: (command, signal) -> exit code: a service stops normally on SIGTERM (and the lab on SIGHUP
#: too); otherwise a signal ends the run as Ctrl-C does (130, after cleaning up).
EXPECTED_EXIT = {
    ("lab", signal.SIGTERM): 0,
    ("lab", signal.SIGHUP): 0,
    ("watch", signal.SIGTERM): 130,
    ("watch", signal.SIGHUP): 130,
    ("serve", signal.SIGTERM): 0,
    ("serve", signal.SIGHUP): 130,
}


async def _read_until(stream: asyncio.StreamReader, marker: str, seen: list[str]) -> None:
    while True:
        line = await stream.readline()
        if not line:
            raise AssertionError(f"mpnet ended before {marker!r}: {''.join(seen)[-2000:]}")
        seen.append(line.decode(errors="replace"))
        if marker in seen[-1]:
            return


# SIGHUP takes the same handler as SIGTERM (cli/live.py INTERRUPT_SIGNALS): CI's second step
# sends it too.
@pytest.mark.parametrize(
    "signum",
    [signal.SIGTERM, pytest.param(signal.SIGHUP, marks=pytest.mark.slow)],
    ids=["SIGTERM", "SIGHUP"],
)
@pytest.mark.parametrize("command", list(COMMANDS))
async def test_signal_removes_the_lab_directory_and_exits_promptly(
    command: str, signum: signal.Signals, tmp_path: Path, env_clean: dict[str, str]
) -> None:
    args, ready = COMMANDS[command]
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mpnet",
        *args,
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**env_clean, "TMPDIR": str(temporary), "XDG_CONFIG_HOME": str(tmp_path)},
    )
    seen: list[str] = []
    try:
        assert process.stderr is not None
        async with asyncio.timeout(PATIENCE_S):
            await _read_until(process.stderr, ready, seen)
        [workdir] = temporary.glob("mpnet-lab-*")
        assert (workdir / "mpnet-lab-ca.pem").is_file()

        process.send_signal(signum)
        async with asyncio.timeout(PATIENCE_S):
            out, rest = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    stderr = "".join(seen) + rest.decode(errors="replace")
    assert process.returncode == EXPECTED_EXIT[command, signum], stderr
    assert not workdir.exists(), stderr
    assert list(temporary.iterdir()) == []
    assert "Traceback" not in stderr
    if command == "lab":
        assert out.decode().splitlines()[0] == "mpnet lab: 1 exchange simulator on 127.0.0.1 (TLS)"
