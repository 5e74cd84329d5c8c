"""Start-up cost: ``mpnet --version`` (and ``--help``) against the bare interpreter of the same
venv, median of N runs each, measured side by side. Goal: --version <= 150 ms more than bare.

Run: ``python bench/startup_bench.py [--runs 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def median_ms(argv: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    python = sys.executable
    bare = median_ms([python, "-c", "pass"], args.runs)
    print(f"bare interpreter       {bare:7.1f} ms")
    for label, argv in (
        ("mpnet --version", [python, "-m", "mpnet", "--version"]),
        ("mpnet --help", [python, "-m", "mpnet", "--help"]),
        (
            "mpnet proxy explain",
            [python, "-m", "mpnet", "proxy", "explain", "--url", "https://x.test"],
        ),
    ):
        ms = median_ms(argv, args.runs)
        print(f"{label:22} {ms:7.1f} ms  (+{ms - bare:.1f} ms over bare; median of {args.runs})")


if __name__ == "__main__":
    main()
