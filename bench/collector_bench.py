"""What pausing Python's garbage collector during a probe run does to the loop lag and memory.

Against the lab started in a separate process (pinned as ``truth_bench.py`` pins it), the 13
exchanges REST + WebSocket, ``-n 5``, at the default concurrency, in alternating runs: mpnet as
it is (the collector paused while attempts run, ``mpnet/probe/gcpause.py``) and the same mpnet
with the pause replaced by a no-op (the reference). Prints per mode the attempts whose loop lag
was over 1 ms (of 130) and the largest lag of each run, then each run's peak RSS and the
garbage a final collection found (what the pause left for later).

Run: ``python bench/collector_bench.py [--rounds 6]``. Everything is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import truth_bench

#: Runs mpnet's CLI with the pause on ("on") or replaced by a no-op ("off"), then reports its
#: peak RSS and what a last collection found, on stderr.
_WRAPPER = r"""
import atexit, contextlib, gc, resource, runpy, sys
if sys.argv[1] == "off":
    import mpnet.probe.gcpause as pause
    pause.collector_paused = contextlib.nullcontext
def report():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"BENCH rss_mib={rss:.1f} garbage={gc.collect()}", file=sys.stderr)
atexit.register(report)
sys.argv = ["mpnet", *sys.argv[2:]]
runpy.run_module("mpnet", run_name="__main__", alter_sys=True)
"""


def one_run(mode: str, args: list[str]) -> tuple[list[float], float, int]:
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, mode, "probe", "--format", "json", *args],
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=truth_bench._pinned("near"),
    )
    report: dict[str, Any] = json.loads(done.stdout)
    lags = [
        s["loop_lag_ms"]
        for r in report["results"]
        for s in truth_bench.samples_of(r)
        if s.get("loop_lag_ms") is not None
    ]
    line = next(x for x in done.stderr.splitlines() if x.startswith("BENCH "))
    fields = dict(item.split("=") for item in line.split()[1:])
    return lags, float(fields["rss_mib"]), int(fields["garbage"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="runs per mode (alternating)")
    args = parser.parse_args()
    print("CPUs:", truth_bench.pin_cpus())
    runs: dict[str, list[tuple[list[float], float, int]]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp, truth_bench.lab_process() as (profiles, ca):
        bundle = truth_bench.realistic_bundle(ca, Path(tmp))
        common = ["--profiles", profiles, "--ca-bundle", str(bundle), "--no-proxy"]
        for index in range(args.rounds):
            order = ("on", "off") if index % 2 == 0 else ("off", "on")
            for mode in order:
                runs[mode].append(one_run(mode, [*common, "--all", "-n", "5"]))
    labels = {"on": "collector paused", "off": "not paused (ref)"}
    mean_over: dict[str, float] = {}
    for mode, label in labels.items():
        over = [sum(1 for lag in lags if lag > truth_bench.GOAL_MS) for lags, _, _ in runs[mode]]
        mean_over[mode] = statistics.mean(over)
        largest = [max(lags) for lags, _, _ in runs[mode]]
        within = sum(1 for x in largest if x <= truth_bench.GOAL_MS)
        print(
            f"  {label:18} attempts over 1 ms per run {over} (mean {mean_over[mode]:.1f});"
            f" largest lag {[round(x, 2) for x in largest]}, {within} of {len(largest)} runs"
            " within 1 ms"
        )
        print(
            f"  {'':18} peak RSS {statistics.median(r for _, r, _ in runs[mode]):.1f} MiB"
            f" (median), garbage left for the last collection"
            f" {statistics.median(g for _, _, g in runs[mode]):.0f} objects (median)"
        )
    difference = mean_over["on"] - mean_over["off"]
    print(f"  paused minus reference: {difference:+.1f} attempts over 1 ms per run")


if __name__ == "__main__":
    main()
