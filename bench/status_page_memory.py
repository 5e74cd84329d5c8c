"""Memory of ``mpnet serve`` with its status page after many scrapes. Goal: after 10,000 scrapes
the exporter's resident memory has grown by no more than 10 MB.

A ``mpnet serve --lab`` child (13 simulated exchanges on 127.0.0.1) is scraped as Prometheus
would (``/probe?exchange=NAME``, round robin, a few at a time), and the status page (``/``) is
loaded every 100 scrapes, so the ring buffer of recent probes fills and turns over many times.
The child's resident set (``VmRSS`` in /proc) is read before the first scrape, once the ring is
full (after the warm-up), and at the end; the growth from the warm-up to the end is the figure
the goal is about (the first scrapes also pay for TLS contexts, sessions and the lab's own
start-up, which any exporter pays with or without a status page), and the growth from the start
is printed beside it.

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


def start_exporter() -> tuple[subprocess.Popen[bytes], str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.lower().endswith("_proxy") or k.startswith("MPNET_"))
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "mpnet", "serve", "--lab", "--listen", "127.0.0.1:0"],
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


async def scrape(base: str, count: int, concurrency: int, first: int) -> tuple[int, str]:
    """``count`` probe scrapes (numbered from ``first``), the status page every 100th.

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
            if number % 100 == 99:
                async with session.get(base) as answer:
                    page = await answer.text()

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return failures, page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    process, base = start_exporter()
    try:
        start = rss_mb(process.pid)
        began = time.monotonic()
        failed, _ = asyncio.run(scrape(base, args.warmup, args.concurrency, 0))
        warm = rss_mb(process.pid)
        rest = max(0, args.scrapes - args.warmup)
        more, page = asyncio.run(scrape(base, rest, args.concurrency, args.warmup))
        failed += more
        end = rss_mb(process.pid)
        seconds = time.monotonic() - began
    finally:
        process.terminate()
        process.wait(timeout=30)
    kept = re.search(r"Recent probes \((\d+) kept, at most (\d+) per target\)", page)
    print(f"mpnet serve --lab, {args.scrapes} scrapes of /probe ({args.concurrency} at a time) and")
    print(f"the status page every 100, in {seconds:.0f} s; {failed} scrape(s) not answered 200")
    if kept:
        print(f"ring buffer at the end: {kept.group(1)} probes kept ({kept.group(2)} per target)")
    print(f"status page size at the end: {len(page.encode()) / 1024:.0f} KB")
    print(f"RSS before the first scrape     {start:7.1f} MB")
    print(f"RSS after {args.warmup:5d} scrapes (warm) {warm:7.1f} MB")
    print(f"RSS after {args.scrapes:5d} scrapes       {end:7.1f} MB")
    growth = end - warm
    verdict = "within" if growth <= GOAL_MB else "OVER"
    print(
        f"growth warm -> end: {growth:+.1f} MB ({verdict} the {GOAL_MB:.0f} MB goal); "
        f"from the start: {end - start:+.1f} MB"
    )


if __name__ == "__main__":
    main()
