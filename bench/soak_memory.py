"""Memory soak: does ``mpnet serve``, ``mpnet watch`` or the library grow as it runs?

Three runs in one sitting, each against the lab (``mpnet lab``, a child process on 127.0.0.1):

1. ``mpnet serve`` (a child process) under N concurrent scrapers of ``/probe`` for M minutes,
   round-robin over the exchanges, each scrape with ``X-Prometheus-Scrape-Timeout-Seconds``.
2. ``mpnet watch`` of the same exchanges (REST and WebSocket targets) at ``--interval 0.5`` for
   M minutes; one exchange's simulator closes every WebSocket after a few dozen data messages
   (``drop_after``), so the feeds reconnect all along.
3. The library (a child process): ``NetworkConnectionManager.test_connectivity(url,
   connection_type="http")`` in a loop, then ``create_websocket_connection`` + ``close``.

For each: the resident set (VmRSS of that process only, read from /proc, never after a forced
collection unless said) at the end of the warm-up and at the end, the growth per thousand
operations (end minus warm-up, and the least-squares slope of every sample after the warm-up,
which is less at the mercy of one noisy sample), and for serve the scrape latency p50/p95 and
every error (non-200 answers, 503 sheds, failed probes, client errors). Goals, printed next to
the figures and never asserted: serve <= 1 MB per 10,000 scrapes after warm-up; watch flat
within 5 MB over 10 minutes (``--minutes 10``); no error under the default concurrency limit.

Run: ``python bench/soak_memory.py [--minutes 2.5] [--warmup S] [--scrapers 16]
[--library-calls 3000] [--only serve,watch,library] [--max-probes N]``. Defaults finish in about
six minutes. Every loop is bounded in time or count and stops by itself; all traffic stays on
127.0.0.1. ``--scrapers 64`` shows the overload path (503s, counted in /metrics).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

EXCHANGES = ("okx", "binance", "kucoin")
#: The simulator whose WebSockets close after this many data messages (watch reconnects).
DROPPING = "okx"
DROP_AFTER = 40
SCRAPE_TIMEOUT_S = 10.0
SAMPLE_EVERY_S = 0.5
PATIENCE_S = 60.0
SERVE_GOAL_MB_PER_10K = 1.0
WATCH_GOAL_MB_PER_10_MIN = 5.0


# -- child processes ----------------------------------------------------------------------------


def clean_environment() -> dict[str, str]:
    """This environment without proxy, CA or mpnet variables (nothing may leave 127.0.0.1)."""
    dropped = ("proxy", "ssl_cert", "mpnet_")
    return {k: v for k, v in os.environ.items() if not any(d in k.lower() for d in dropped)}


class Child:
    """A child process whose stdout and stderr lines are collected by threads as they come."""

    def __init__(self, argv: list[str], *, keep: int = 200) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=clean_environment(),
            text=True,
        )
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.counts: Counter[str] = Counter()
        self._keep = keep
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._collect, args=(name, stream), daemon=True)
            for name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr))
        ]
        for thread in self._threads:
            thread.start()

    def _collect(self, name: str, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._lock:
                kept = self.lines[name]
                kept.append(line.rstrip("\n"))
                if len(kept) > self._keep:
                    del kept[: len(kept) - self._keep]
                self.counts[name] += 1
                if name == "stdout" and line.startswith("cycle "):
                    words = line.split()
                    self.counts["rows"] += 1
                    self.counts["rows_ok" if words[4] == "ok" else "rows_failed"] += 1

    def wait_for(self, pattern: str, stream: str) -> re.Match[str]:
        deadline = time.monotonic() + PATIENCE_S
        while time.monotonic() < deadline:
            with self._lock:
                text = "\n".join(self.lines[stream])
            match = re.search(pattern, text)
            if match:
                return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit(f"bench: {self.argv[3]} did not print {pattern!r}: {self.tail()}")

    def tail(self) -> str:
        with self._lock:
            return " | ".join(self.lines["stderr"][-5:] + self.lines["stdout"][-5:])

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    def stop(self, signum: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for thread in self._threads:
            thread.join(timeout=5)
        return self.proc.returncode


def rss_mb(pid: int | str = "self") -> float:
    """VmRSS of a process in MB (its resident set now, not its peak)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def mpnet(*args: str) -> list[str]:
    return [sys.executable, "-m", "mpnet", *args]


@dataclass
class LabInfo:
    child: Child
    ca_file: str
    profiles_dir: str


def start_lab(exchanges: tuple[str, ...]) -> LabInfo:
    child = Child(mpnet("lab", *exchanges, "--fault", f"{DROPPING}=drop_after:{DROP_AFTER}"))
    ca = child.wait_for(r"CA file:\s+(\S+)", "stdout").group(1)
    profiles = child.wait_for(r"profiles dir:\s+(\S+)", "stdout").group(1)
    return LabInfo(child=child, ca_file=ca, profiles_dir=profiles)


# -- figures ------------------------------------------------------------------------------------


@dataclass
class Samples:
    """(seconds since start, operations done, RSS MB) taken every SAMPLE_EVERY_S."""

    points: list[tuple[float, int, float]] = field(default_factory=list)

    def after(self, warmup_s: float) -> list[tuple[float, int, float]]:
        return [p for p in self.points if p[0] >= warmup_s]


def slope(xs: list[float], ys: list[float]) -> float | None:
    """The least-squares slope of ys over xs (None with fewer than 3 points or no spread)."""
    if len(xs) < 3:
        return None
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def slope_per_1000(points: list[tuple[float, int, float]]) -> float | None:
    """Least-squares MB per 1000 operations over the points."""
    per_op = slope([float(ops) for _, ops, _ in points], [mb for _, _, mb in points])
    return None if per_op is None else per_op * 1000


def growth_lines(label: str, samples: Samples, warmup_s: float, unit: str) -> list[str]:
    kept = samples.after(warmup_s)
    if len(kept) < 2:
        return [f"  {label}: too few samples after the warm-up"]
    (_, ops0, mb0), (_, ops1, mb1) = kept[0], kept[-1]
    done = ops1 - ops0
    first = samples.points[0][2]
    peak = max(mb for _, _, mb in samples.points)
    lines = [
        f"  RSS: start {first:.1f} MB, after warm-up {mb0:.1f} MB, end {mb1:.1f} MB "
        f"(peak {peak:.1f} MB); {done} {unit} after the warm-up"
    ]
    if done > 0:
        two_point = (mb1 - mb0) * 1000 / done
        slope = slope_per_1000(kept)
        fitted = f"{slope:+.3f}" if slope is not None else "-"
        lines.append(
            f"  growth per 1000 {unit}: {two_point:+.3f} MB (end - warm-up), {fitted} MB "
            "(least-squares slope)"
        )
    return lines


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


# -- 1. serve -----------------------------------------------------------------------------------


@dataclass
class ScrapeTally:
    done: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failed_probes: int = 0
    client_errors: Counter[str] = field(default_factory=Counter)
    shed_reasons: Counter[str] = field(default_factory=Counter)


async def scrape_for(
    base: str,
    exchanges: tuple[str, ...],
    scrapers: int,
    seconds: float,
    warmup_s: float,
    sample: Callable[[int], None],
) -> ScrapeTally:
    import aiohttp

    tally = ScrapeTally()
    started = time.monotonic()
    deadline = started + seconds
    turn = 0
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": f"{SCRAPE_TIMEOUT_S:g}"}
    limit = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S + 5)

    async def scraper(session: aiohttp.ClientSession) -> None:
        nonlocal turn
        while time.monotonic() < deadline:
            exchange = exchanges[turn % len(exchanges)]
            turn += 1
            began = time.perf_counter()
            try:
                async with session.get(
                    f"{base}probe?exchange={exchange}", headers=headers
                ) as response:
                    body = await response.text()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                tally.client_errors[type(exc).__name__] += 1
                tally.done += 1
                continue
            elapsed_ms = (time.perf_counter() - began) * 1000
            tally.done += 1
            tally.statuses[status] += 1
            if status == 503:
                tally.shed_reasons[body.strip()[:120]] += 1
            elif status == 200:
                if re.search(r"^mpnet_probe_success\{.*\} 0\.0$", body, re.M):
                    tally.failed_probes += 1
                if time.monotonic() - started >= warmup_s:
                    tally.latencies_ms.append(elapsed_ms)

    async def sampler() -> None:
        while time.monotonic() < deadline:
            sample(tally.done)
            await asyncio.sleep(SAMPLE_EVERY_S)

    async with aiohttp.ClientSession(timeout=limit) as session:
        await asyncio.gather(sampler(), *(scraper(session) for _ in range(scrapers)))
        sample(tally.done)
        async with session.get(f"{base}metrics") as response:
            metrics = await response.text()
    for line in metrics.splitlines():
        if line.startswith(("mpnet_exporter_scrapes_", "mpnet_exporter_probes_running")) and (
            "_created" not in line
        ):
            print(f"  /metrics: {line}")
    return tally


def run_serve(args: argparse.Namespace, lab: LabInfo) -> None:
    seconds = args.serve_minutes * 60
    warmup = warmup_seconds(seconds, args.warmup)
    argv = ["serve", "--listen", "127.0.0.1:0", "--profiles", lab.profiles_dir]
    argv += ["--ca-bundle", lab.ca_file, "--timeout", "5"]
    if args.max_probes is not None:
        argv += ["--max-probes", str(args.max_probes)]
    child = Child(mpnet(*argv))
    try:
        match = child.wait_for(r"on (http://127\.0\.0\.1:\d+/)(.*?at most (\d+) probes)?", "stderr")
        base, limit = match.group(1), match.group(3) or "unbounded"
        print(
            f"\n1. mpnet serve: {args.scrapers} concurrent scrapers for {seconds:g} s "
            f"(warm-up {warmup:g} s), exchanges {', '.join(args.exchanges)}, at most {limit} "
            "probes at once"
        )
        samples = Samples()
        started = time.monotonic()

        def sample(done: int) -> None:
            samples.points.append((time.monotonic() - started, done, child.rss_mb()))

        tally = asyncio.run(
            scrape_for(base, args.exchanges, args.scrapers, seconds, warmup, sample)
        )
    finally:
        child.stop()
    for line in growth_lines("serve", samples, warmup, "scrapes"):
        print(line)
    slope = slope_per_1000(samples.after(warmup))
    if slope is not None:
        print(
            f"  => {slope * 10:+.2f} MB per 10,000 scrapes after warm-up "
            f"(goal <= {SERVE_GOAL_MB_PER_10K:g} MB)"
        )
    if tally.latencies_ms:
        print(
            f"  scrape latency after warm-up: p50 {percentile(tally.latencies_ms, 50):.0f} ms, "
            f"p95 {percentile(tally.latencies_ms, 95):.0f} ms over {len(tally.latencies_ms)}"
        )
    answers = ", ".join(f"{status}: {n}" for status, n in sorted(tally.statuses.items()))
    print(f"  answers: {answers}; failed probes (200, success 0): {tally.failed_probes}")
    errors = sum(tally.client_errors.values()) + sum(
        n for status, n in tally.statuses.items() if status != 200
    )
    print(f"  errors: {errors} (client errors {dict(tally.client_errors) or 0})")
    for reason, n in tally.shed_reasons.most_common(3):
        print(f"  503 x{n}: {reason}")


# -- 2. watch -----------------------------------------------------------------------------------


def run_watch(args: argparse.Namespace, lab: LabInfo) -> None:
    seconds = args.watch_minutes * 60
    warmup = warmup_seconds(seconds, args.warmup)
    argv = ["watch", *args.exchanges, "--profiles", lab.profiles_dir, "--ca-bundle", lab.ca_file]
    argv += ["--interval", "0.5"]
    print(
        f"\n2. mpnet watch {' '.join(args.exchanges)} --interval 0.5 for {seconds:g} s "
        f"(warm-up {warmup:g} s; {DROPPING}'s WebSockets close after {DROP_AFTER} messages)"
    )
    child = Child(mpnet(*argv), keep=50)
    samples = Samples()
    started = time.monotonic()
    try:
        child.wait_for(r"^cycle 1 ", "stdout")
        while (elapsed := time.monotonic() - started) < seconds and child.proc.poll() is None:
            samples.points.append((elapsed, child.counts["rows"], child.rss_mb()))
            time.sleep(SAMPLE_EVERY_S)
    finally:
        code = child.stop()
    for line in growth_lines("watch", samples, warmup, "rows"):
        print(line)
    kept = samples.after(warmup)
    per_second = slope([t for t, _, _ in kept], [mb for _, _, mb in kept])
    if per_second is not None:
        print(
            f"  => {per_second * 600:+.2f} MB per 10 minutes after warm-up (least-squares; "
            f"goal within {WATCH_GOAL_MB_PER_10_MIN:g} MB)"
        )
    reconnects = re.findall(
        rf"^cycle \d+ {DROPPING} ws .* reconnects (\d+)", "\n".join(child.lines["stdout"]), re.M
    )
    print(
        f"  rows: {child.counts['rows']} ({child.counts['rows_failed']} not ok); "
        f"{DROPPING} ws reconnects: {reconnects[-1] if reconnects else '?'}; exit {code}"
    )


# -- 3. the library -----------------------------------------------------------------------------


def run_library(args: argparse.Namespace, lab: LabInfo) -> None:
    urls = json.loads(lab_urls(lab))
    print(
        f"\n3. the library: NetworkConnectionManager in a child process, {args.library_calls} "
        "calls per loop (warm-up: the first 20 %)"
    )
    argv = [sys.executable, __file__, "--library-child", json.dumps(urls)]
    argv += ["--library-calls", str(args.library_calls), "--ca", lab.ca_file]
    done = subprocess.run(
        argv, env=clean_environment(), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        print(f"  library child failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        return
    for line in done.stdout.splitlines():
        print(f"  {line}")


def lab_urls(lab: LabInfo) -> str:
    """The REST health and WebSocket URLs of the first exchange, from the lab's profiles."""
    from mpnet.config.profiles import load_profiles

    profile = load_profiles([lab.profiles_dir], env={}).get(EXCHANGES[0])
    return json.dumps({"rest": profile.url_for("rest"), "ws": profile.url_for("ws")})


async def library_loops(urls: dict[str, str], calls: int, ca: str) -> None:
    import gc

    from mpnet.client import NetworkConnectionManager
    from mpnet.config.model import ConfigFile
    from mpnet.errors import ProbeError

    async def http(nm: NetworkConnectionManager) -> bool:
        result = await nm.test_connectivity(
            urls["rest"], connection_type="http", ca_bundle=ca, timeout=5
        )
        return result.success

    async def websocket(nm: NetworkConnectionManager) -> bool:
        ws = await nm.create_websocket_connection(urls["ws"], ca_bundle=ca, timeout=5)
        await ws.close()
        return True

    for label, call in (
        ('test_connectivity(url, connection_type="http")', http),
        ("create_websocket_connection() + close()", websocket),
    ):
        async with NetworkConnectionManager(config=ConfigFile(), env={}) as nm:
            failed = 0
            warm = max(1, calls // 5)
            started = rss_mb()
            warm_mb = started
            for number in range(1, calls + 1):
                try:
                    failed += not await call(nm)
                except ProbeError:  # a failure is a figure here, not a crash
                    failed += 1
                if number == warm:
                    warm_mb = rss_mb()
            end_mb = rss_mb()
            gc.collect()
            collected_mb = rss_mb()
            after = calls - warm
            per_1000 = (end_mb - warm_mb) * 1000 / after if after else float("nan")
            print(
                f"{label}: RSS start {started:.1f} MB, after warm-up {warm_mb:.1f} MB, end "
                f"{end_mb:.1f} MB ({collected_mb:.1f} MB after gc.collect()); "
                f"{per_1000:+.3f} MB per 1000 calls; {failed} failed",
                flush=True,
            )


# -- main ---------------------------------------------------------------------------------------


def warmup_seconds(total: float, asked: float | None) -> float:
    """The warm-up: as asked, else 40 % of the run, at most 90 s. On this 2-core machine serve's
    resident set settles after about 1500 scrapes (a minute), watch's after about 90 s: the
    first TLS handshakes, the allocator's arenas and the collector's thresholds fill up."""
    if asked is not None:
        return min(asked, total / 2)
    return min(total / 2, 90.0, total * 0.4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2.5, help="serve and watch, each")
    parser.add_argument("--serve-minutes", type=float, default=None)
    parser.add_argument("--watch-minutes", type=float, default=None)
    parser.add_argument("--warmup", type=float, default=None, help="seconds (default: a quarter)")
    parser.add_argument("--scrapers", type=int, default=16)
    parser.add_argument("--max-probes", type=int, default=None, help="serve's --max-probes")
    parser.add_argument("--library-calls", type=int, default=3000)
    parser.add_argument("--only", default="serve,watch,library")
    parser.add_argument("--library-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ca", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.library_child is not None:
        asyncio.run(library_loops(json.loads(args.library_child), args.library_calls, args.ca))
        return
    args.exchanges = EXCHANGES
    args.serve_minutes = args.serve_minutes if args.serve_minutes is not None else args.minutes
    args.watch_minutes = args.watch_minutes if args.watch_minutes is not None else args.minutes
    chosen = {name.strip() for name in args.only.split(",")}
    lab = start_lab(EXCHANGES)
    print(
        f"lab: {', '.join(EXCHANGES)} on 127.0.0.1 (pid {lab.child.proc.pid}); CPUs: "
        f"{len(os.sched_getaffinity(0))}"
    )
    try:
        if "serve" in chosen:
            run_serve(args, lab)
        if "watch" in chosen:
            run_watch(args, lab)
        if "library" in chosen:
            run_library(args, lab)
    finally:
        lab.child.stop()


if __name__ == "__main__":
    main()
