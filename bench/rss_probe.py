"""Peak memory of ``mpnet probe --lab --all --format json``, next to the bare interpreter and a
bare ``import mpnet.cli.app`` of the same venv. Goal: the probe's peak RSS <= 120 MB.

Each command runs as a child process and its peak resident set comes from the kernel
(``os.wait4`` rusage ``ru_maxrss``, which covers the child's own children too); the median and
the largest of N runs are printed. ``--tracemalloc`` also runs the probe once in-process under
tracemalloc and prints where Python's allocations peak (by file).

Run: ``python bench/rss_probe.py [--runs 3] [--tracemalloc]``. The probe targets the local lab
on 127.0.0.1 only. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys

GOAL_MB = 120.0


def peak_rss_mb(argv: list[str], env: dict[str, str]) -> tuple[float, int, bytes]:
    """Run ``argv``; its peak RSS in MB (ru_maxrss is in KiB on Linux), exit status, stdout."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert process.stdout is not None
    output = process.stdout.read()
    process.stdout.close()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, process.returncode, output


def clean_environment() -> dict[str, str]:
    env = dict(os.environ)
    for name in list(env):
        if name.lower().endswith("_proxy") or name.startswith("MPNET_"):
            del env[name]
    return env


def tracemalloc_report(top: int = 12) -> None:
    """Run the probe in this process under tracemalloc and print the peak by file."""
    import tracemalloc

    from typer.testing import CliRunner

    tracemalloc.start(1)
    from mpnet.cli.app import get_app

    app = get_app()
    imported, _ = tracemalloc.get_traced_memory()
    snapshot_after_import = tracemalloc.take_snapshot()
    tracemalloc.reset_peak()
    result = CliRunner().invoke(app, ["probe", "--lab", "--all", "--format", "json"])
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    print(f"\ntracemalloc, probe in-process (exit {result.exit_code}), Python allocations only:")
    print(f"  after importing the CLI {imported / 2**20:.1f} MB")
    print(f"  peak during the probe   {peak / 2**20:.1f} MB")
    print(f"  after it (collected)    {current / 2**20:.1f} MB")
    print("Largest holders after import, by file:")
    for stat in snapshot_after_import.statistics("filename")[:top]:
        print(f"  {stat.size / 2**20:6.2f} MB  {stat.traceback[0].filename}")
    print("Grown during the probe, by file:")
    for diff in snapshot.compare_to(snapshot_after_import, "filename")[:top]:
        print(f"  {diff.size_diff / 2**20:+6.2f} MB  {diff.traceback[0].filename}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args()
    python = sys.executable
    env = clean_environment()
    commands = {
        "python -c pass": [python, "-c", "pass"],
        "import mpnet.cli.app": [python, "-c", "import mpnet.cli.app"],
        "probe --lab --all (json)": [
            python,
            *("-m", "mpnet", "probe", "--lab", "--all", "--format", "json"),
        ],
    }
    print(f"peak RSS, {args.runs} runs each (median, max)")
    for label, argv in commands.items():
        samples = []
        for _ in range(args.runs):
            rss, code, output = peak_rss_mb(argv, env)
            samples.append(rss)
        note = ""
        if "probe" in label:
            summary = json.loads(output)["summary"]
            note = (
                f"   exit {code}, {summary['ok']}/{summary['total']} ok; goal <= {GOAL_MB:.0f} MB"
            )
            note += " (met)" if max(samples) <= GOAL_MB else " (NOT met)"
        print(f"  {label:26} {statistics.median(samples):6.1f} MB  {max(samples):6.1f} MB{note}")
    if args.tracemalloc:
        tracemalloc_report()


if __name__ == "__main__":
    main()
