"""The one table that maps outcomes and error classes to exit codes (docs/architecture.md)."""

from __future__ import annotations

from enum import IntEnum

from mpnet.errors import ConfigError, MpnetError, ProbeError


class ExitCode(IntEnum):
    OK = 0
    PROBE_FAILED = 1
    USAGE = 2
    INTERRUPTED = 130


# Most specific first; the first class that matches wins.
ERROR_EXIT_CODES: tuple[tuple[type[MpnetError], ExitCode], ...] = (
    (ConfigError, ExitCode.USAGE),
    (ProbeError, ExitCode.PROBE_FAILED),
)


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code for an error that reached the top level."""
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    for cls, code in ERROR_EXIT_CODES:
        if isinstance(error, cls):
            return code
    return ExitCode.PROBE_FAILED
