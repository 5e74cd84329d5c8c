"""The probe's progress bar must not take the loop's time while attempts are timed: no Rich
refresh thread (it would take the GIL ten times a second), redraws only when attempts complete."""

from __future__ import annotations

import io
import threading

import pytest
from rich.console import Console

from mpnet.cli import probe_cmd
from mpnet.config.layers import NetworkOptions
from mpnet.config.model import ConfigFile
from mpnet.config.profiles import load_profiles
from mpnet.core.result import Attempt
from mpnet.probe.plan import build_plan


def _refresh_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if type(t).__name__ == "_RefreshThread"]


def test_progress_redraws_on_completion_from_the_caller_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = Console(file=io.StringIO(), force_terminal=True, width=100)
    monkeypatch.setattr(probe_cmd, "err", terminal)
    plan = build_plan(
        [load_profiles().get("okx"), load_profiles().get("deribit")],
        config=ConfigFile(),
        options=NetworkOptions(),
        env={},
        count=2,
    )
    redraws: list[str] = []
    with probe_cmd._progress(plan) as advance:
        assert advance is not None
        assert _refresh_threads() == []
        from rich.progress import Progress

        real = Progress.refresh

        def counted(self: Progress) -> None:
            redraws.append(threading.current_thread().name)
            real(self)

        monkeypatch.setattr(Progress, "refresh", counted)
        for target in plan.targets * plan.count:
            advance(target, Attempt(ok=True))
    # The last completion always redraws; the others at most every PROGRESS_REDRAW_INTERVAL.
    assert 1 <= len(redraws) <= len(plan.targets) * plan.count
    assert set(redraws) == {threading.current_thread().name}
    assert "probing" in terminal.file.getvalue()  # type: ignore[attr-defined]


def test_no_progress_bar_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_cmd, "err", Console(file=io.StringIO()))
    plan = build_plan(
        [load_profiles().get("okx")], config=ConfigFile(), options=NetworkOptions(), env={}
    )
    with probe_cmd._progress(plan) as advance:
        assert advance is None
