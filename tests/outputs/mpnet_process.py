"""Run ``python -m mpnet`` as a child process and wait for what it prints (not for time)."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time

#: A bound on how long a child may stay silent before the test gives up; not a measurement.
PATIENCE_S = 30.0


def clean_environment(home: str) -> dict[str, str]:
    """This environment without proxy, CA or mpnet variables, and with a config home of its own.

    Module-scoped fixtures start children before the autouse clean-up fixture runs, so the
    child's environment is cleaned here as well.
    """
    dropped = ("proxy", "ssl_cert", "mpnet_", "request_method")
    env = {k: v for k, v in os.environ.items() if not any(d in k.lower() for d in dropped)}
    env["XDG_CONFIG_HOME"] = home
    return env


class MpnetProcess:
    """One ``mpnet`` child with its stdout and stderr collected as they arrive."""

    def __init__(self, *args: str, cwd: str) -> None:
        """Start ``mpnet ARGS`` in ``cwd`` (an empty directory: no stray ./mpnet.yaml)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mpnet", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=clean_environment(cwd),
        )
        self._raw = {"stdout": b"", "stderr": b""}

    @property
    def stdout(self) -> str:
        return self._raw["stdout"].decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self._raw["stderr"].decode("utf-8", "replace")

    def wait_for(self, pattern: str, *, stream: str = "stderr") -> re.Match[str]:
        """Read until ``pattern`` appears in ``stream``; fail if the child ends or stays silent."""
        deadline = time.monotonic() + PATIENCE_S
        while True:
            match = re.search(pattern, getattr(self, stream))
            if match:
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} on {stream}: {self.describe()}")
            if not self._read_some(deadline - time.monotonic()) and self.proc.poll() is not None:
                self._read_rest()
                match = re.search(pattern, getattr(self, stream))
                if match:
                    return match
                raise AssertionError(f"mpnet exited before {pattern!r}: {self.describe()}")

    def interrupt(self, signum: signal.Signals = signal.SIGINT) -> int:
        """Send ``signum`` and wait for the exit code, collecting the rest of the output."""
        self.proc.send_signal(signum)
        return self.finish()

    def finish(self) -> int:
        try:
            out, err = self.proc.communicate(timeout=PATIENCE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        self._raw["stdout"] += out
        self._raw["stderr"] += err
        return self.proc.returncode

    def stop(self) -> None:
        """Make sure the child is gone (for finally blocks and fixtures)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def describe(self) -> str:
        return (
            f"rc={self.proc.poll()} stdout={self.stdout[-2000:]!r} stderr={self.stderr[-2000:]!r}"
        )

    def _read_some(self, wait: float) -> bool:
        """Read whatever one pipe has (raw, so nothing hides in a text buffer)."""
        streams: dict[int, str] = {}
        if self.proc.stdout is not None:
            streams[self.proc.stdout.fileno()] = "stdout"
        if self.proc.stderr is not None:
            streams[self.proc.stderr.fileno()] = "stderr"
        with selectors.DefaultSelector() as selector:
            for fd in streams:
                selector.register(fd, selectors.EVENT_READ)
            events = selector.select(timeout=max(0.0, min(wait, 1.0)))
        got = False
        for key, _ in events:
            chunk = os.read(key.fd, 65536)
            if chunk:
                got = True
                self._raw[streams[key.fd]] += chunk
        return got

    def _read_rest(self) -> None:
        for stream, name in ((self.proc.stdout, "stdout"), (self.proc.stderr, "stderr")):
            if stream is not None:
                self._raw[name] += stream.read()
