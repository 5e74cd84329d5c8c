"""``--output FILE``: checked before any work, written atomically.

A report file is read by something else: CI (JUnit), node_exporter's textfile collector
(Prometheus), a dashboard (JSON). So:

* :func:`check_output` runs before anything is sent: a file that cannot be written (no such
  directory, a directory, no permission, a read-only file system) is one usage error (exit 2),
  found in a second rather than after a probe run that then has nowhere to go;
* :func:`write_output_file` writes a temporary file in the same directory and renames it over
  the target (``os.replace``): a reader sees the previous file or the new one, never half of one,
  and a run that fails or is interrupted while writing leaves the previous file as it was.

The new file gets the mode an ordinary ``open(path, "w")`` would give it (0666 less the umask),
or the previous file's mode when it replaces one, so a collector running as another user can
still read it. A symbolic link is followed: the file it points to is replaced, not the link. A
path that is not a regular file (``/dev/stdout``, a FIFO) is written in place: there is nothing
to replace atomically.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from mpnet.errors import UsageError

#: Mode of a new file before the umask, as ``open(path, "w")`` creates one.
NEW_FILE_MODE = 0o666


def check_output(path: str | None, *, option: str = "--output") -> None:
    """Refuse an output path that cannot be written, before any work is done.

    Raises:
        UsageError: the directory is missing or not a directory, the path is a directory, or
            the file or its directory cannot be written.
    """
    if not path:
        return
    where = f"{option} {path}"
    target = Path(os.path.realpath(path))
    if target.is_dir():
        raise UsageError(f"{where}: is a directory; name a file in it")
    if target.exists() and not target.is_file():
        # A device or a FIFO: written in place, so it only has to be writable.
        if not os.access(target, os.W_OK):
            raise UsageError(f"{where}: not writable")
        return
    directory = target.parent
    if not directory.is_dir():
        blocking = _nearest_file(directory)
        if blocking is not None:
            raise UsageError(f"{where}: {blocking} is not a directory")
        raise UsageError(f"{where}: no such directory: {directory}")
    if target.exists() and not os.access(target, os.W_OK):
        raise UsageError(f"{where}: permission denied (the file is read-only)")
    # What the write will do: create a file in that directory (permissions, ACLs, a read-only
    # file system, a full quota all show here and nowhere cheaper).
    try:
        with _temporary_in(directory, target.name):
            pass
    except OSError as exc:
        raise UsageError(f"{where}: cannot write in {directory}: {_reason(exc)}") from None


def write_output_file(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see the module's docstring)."""
    with open_output_file(path) as fh:
        fh.write(text)


@contextlib.contextmanager
def open_output_file(path: str) -> Iterator[TextIO]:
    """A text file to write the output into; it replaces ``path`` only when the block ends
    without an exception (an exception or Ctrl-C leaves ``path`` as it was)."""
    target = Path(os.path.realpath(path))
    try:
        previous = target.stat()
    except FileNotFoundError:
        previous = None
    if previous is not None and not stat.S_ISREG(previous.st_mode):
        with open(target, "w", encoding="utf-8") as fh:
            yield fh
        return
    with _temporary_in(target.parent, target.name) as (fh, temporary):
        yield fh
        fh.flush()
        os.fsync(fh.fileno())
        if previous is not None:
            os.chmod(temporary, stat.S_IMODE(previous.st_mode))
        os.replace(temporary, target)


@contextlib.contextmanager
def _temporary_in(directory: Path, name: str) -> Iterator[tuple[TextIO, Path]]:
    """A new, exclusive file ``.NAME.XXXX.tmp`` in ``directory``, removed at the end unless it
    was renamed away."""
    for _ in range(100):
        temporary = directory / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE)
        except FileExistsError:
            continue
        break
    else:  # pragma: no cover - 100 collisions of 32 random bits
        raise FileExistsError(f"{directory}: no free temporary name")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh, temporary
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _nearest_file(directory: Path) -> Path | None:
    """The first component of ``directory`` that exists and is not a directory, if any."""
    for parent in reversed((directory, *directory.parents)):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()
