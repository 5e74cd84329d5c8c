"""Memory of ``mpnet serve``'s status page after many scrapes. Goal: after 10,000 scrapes the
status page (its ring buffer of recent probes and the page itself) has added no more than
10 MB to the exporter's resident memory.

Two ``mpnet serve --lab`` children (13 simulated exchanges on 127.0.0.1) are scraped one after
the other as Prometheus would (``/probe?exchange=NAME``, round robin, a few at a time):

- the reference: the same exporter with the status page's recording switched off (its ring
  buffer's ``add`` made a no-op) and its page never loaded;
- the exporter as shipped, whose status page (``/``) is also loaded every 100 scrapes, so the
  ring buffer fills and turns over many times.

Each child's resident set (``VmRSS`` in /proc) is read before the first scrape, after the
warm-up (the ring is full by then) and at the end. The figure for the goal is the shipped
exporter's growth minus the reference's over the same scrapes, from before the first scrape
(so the ring's own filling counts); each child's growth is printed too, since the exporter's
own memory (TLS contexts, sessions, allocator arenas) grows with or without a status page.

Run: ``python bench/status_page_memory.py [--scrapes 10000] [--warmup 600] [--concurrency 8]``.
Nothing leaves 127.0.0.1. Nothing is asserted; the figures are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

GOAL_MB = 10.0
EXCHANGES = (
    "binance",
    "binance-usdm",
    "bitfinex",
    "bitget",
    "bitmex",
    "bybit",
    "coinbase",
    "deribit",
    "gate",
    "htx",
    "kraken",
    "kucoin",
    "okx",
)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


#: Runs ``mpnet`` with the status page's recording switched off (the reference child).
WITHOUT_STATUS_PAGE = (
    "import sys; import mpnet.probe.recent as r; r.RecentProbes.add = lambda self, report: None; "
    "from mpnet.cli.entry import main; sys.argv = ['mpnet', *sys.argv[1:]]; main()"
)


def start_exporter(*, status_page: bool) -> tuple[subprocess.Popen[bytes], str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.lower().endswith("_proxy") or k.startswith("MPNET_"))
    }
    command = ["-m", "mpnet"] if status_page else ["-c", WITHOUT_STATUS_PAGE]
    process = subprocess.Popen(
        [sys.executable, *command, "serve", "--lab", "--listen", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    ready = threading.Event()
    found: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            match = re.search(rb"on (http://127\.0\.0\.1:\d+/)", raw)
            if match and not found:
                found.append(match.group(1).decode())
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(60) or not found:
        process.kill()
        raise SystemExit("mpnet serve did not start")
    return process, found[0]


async def scrape(
    base: str, count: int, concurrency: int, first: int, *, status_page: bool = True
) -> tuple[int, str]:
    """``count`` probe scrapes (numbered from ``first``), the status page every 100th (when
    ``status_page``).

    Returns the failed scrape count (non-200 answers) and the last status page.
    """
    import aiohttp

    failures = 0
    page = ""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(first, first + count):
        queue.put_nowait(number)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures, page
        while not queue.empty():
            number = queue.get_nowait()
            name = EXCHANGES[number % len(EXCHANGES)]
            headers = {"X-Prometheus-Scrape-Timeout-Seconds": "10"}
            async with session.get(f"{base}probe?exchange={name}", headers=headers) as answer:
                await answer.read()
                failures += answer.status != 200
            if status_page and number % 100 == 99:
                async with session.get(base) as answer:
                    page = await answer.text()

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return failures, page


@dataclass
class Run:
    start: float
    warm: float
    end: float
    failed: int
    seconds: float
    page: str


def measure(args: argparse.Namespace, *, status_page: bool) -> Run:
    process, base = start_exporter(status_page=status_page)
    try:
        start = rss_mb(process.pid)
        began = time.monotonic()
        failed, _ = asyncio.run(
            scrape(base, args.warmup, args.concurrency, 0, status_page=status_page)
        )
        warm = rss_mb(process.pid)
        rest = max(0, args.scrapes - args.warmup)
        more, page = asyncio.run(
            scrape(base, rest, args.concurrency, args.warmup, status_page=status_page)
        )
        end = rss_mb(process.pid)
        return Run(start, warm, end, failed + more, time.monotonic() - began, page)
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    runs = {
        "reference (no status page)": measure(args, status_page=False),
        "with the status page": measure(args, status_page=True),
    }
    shipped = runs["with the status page"]
    print(
        f"mpnet serve --lab: {args.scrapes} scrapes of /probe each ({args.concurrency} at a "
        "time); the status page loaded every 100 scrapes in the second run"
    )
    kept = re.search(r"Recent probes \((\d+) kept, at most (\d+) per target\)", shipped.page)
    if kept:
        print(f"ring buffer at the end: {kept.group(1)} probes kept ({kept.group(2)} per target)")
    print(f"status page size at the end: {len(shipped.page.encode()) / 1024:.0f} KB")
    print(f"{'':28} {'start':>8} {'warm':>8} {'end':>8} {'growth':>8}  scrapes not 200, time")
    for name, run in runs.items():
        print(
            f"{name:28} {run.start:6.1f}MB {run.warm:6.1f}MB {run.end:6.1f}MB "
            f"{run.end - run.start:+6.1f}MB  {run.failed}, {run.seconds:.0f} s"
        )
    reference = runs["reference (no status page)"]
    added = (shipped.end - shipped.start) - (reference.end - reference.start)
    verdict = "within" if added <= GOAL_MB else "OVER"
    print(
        f"the status page's share after {args.scrapes} scrapes: {added:+.1f} MB "
        f"({verdict} the {GOAL_MB:.0f} MB goal)"
    )
    print(
        f"warm -> end: with the status page {shipped.end - shipped.warm:+.1f} MB, "
        f"reference {reference.end - reference.warm:+.1f} MB"
    )


if __name__ == "__main__":
    main()
