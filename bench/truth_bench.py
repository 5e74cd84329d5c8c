"""Are mpnet's figures what the network did? Printed side by side in one sitting; nothing asserted.

Against the lab started in a separate process (as real exchanges are), with a trust bundle the
size of a real system store (the system's CA file plus the lab's CA, so building an SSL context
costs what it costs on a real host), this prints:

1. Per phase, the 13 exchanges REST + WebSocket probed concurrently (default concurrency) minus
   the same probed serially (``--concurrency 1``): medians over targets of each target's median.
   Goal: <= 1 ms per phase.
2. The first attempt minus the steady median of the later attempts, per phase (median over
   targets, and the worst target). Goal: within 1 ms.
3. The largest event-loop stall any attempt saw (``loop_lag_ms``). Goal: <= 1 ms. Beside it,
   the machine's own floor in the same sitting: a bare loop, pinned like mpnet and doing nothing
   else, that waits for 2000 answers from the far side's CPU and counts how many it had more
   than 1 ms after their kernel arrival stamp (the process runnable without a CPU, or woken
   late), and how many attempts that rate alone puts over 1 ms.
4. The same endpoint through curl's ``-w`` timings as the outside reference, direct and through a
   local HTTP proxy and a SOCKS5 proxy (pproxy): mpnet's tcp / proxy+tls / http against curl's
   connect / appconnect / starttransfer differences, medians of the same number of runs (in four
   rounds, mpnet's then curl's, so that the machine's drift reaches both). Both
   trust only the lab CA and have it loaded before the compared transfers (curl keeps its parsed
   CA file between the transfers of one invocation; its first transfer, which reads the file inside
   the TLS phase, is dropped). curl's TLS session cache is off (``--no-sessionid``): every mpnet
   attempt makes a full handshake, and a resumed one skips the certificate and its check.
   Goal: within 1 ms.

Where the machine has two CPUs or more, the lab and the proxies (the far side: exchanges and
relays run on other hosts) are pinned to the last CPU and mpnet and curl to the others. On one
shared core the lab's answer preempts the prober inside its own ``send`` (waking a process on
the same CPU runs it there at once), which is the lab's cost, not the network's; ``--no-pin``
measures that setting too.

Run: ``python bench/truth_bench.py [--count 5] [--runs 20] [--no-pin]``. Everything is on
127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PHASES = ("dns", "tcp", "proxy", "tls", "http", "ws_upgrade", "first_message", "ping_rtt")
GOAL_MS = 1.0

#: CPUs for the far side (lab, proxies) and for the near side (mpnet, curl); None: not pinned.
PINS: dict[str, set[int] | None] = {"far": None, "near": None}


def pin_cpus() -> str:
    """Split this process's CPUs: the last for the far side, the rest for mpnet and curl."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        return "not pinned (one CPU)"
    PINS["far"], PINS["near"] = {cpus[-1]}, set(cpus[:-1])
    return f"lab and proxies on CPU {cpus[-1]}, mpnet and curl on CPU {sorted(cpus[:-1])}"


def _pinned(side: str) -> Any:
    cpus = PINS[side]
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


# -- the world: lab, trust bundle, proxies -------------------------------------------------------


@contextmanager
def lab_process() -> Iterator[tuple[str, str]]:
    """``mpnet lab`` in its own process; yields (profiles dir, CA file)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mpnet", "lab"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=_pinned("far"),
    )
    try:
        profiles = ca = None
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("CA file:"):
                ca = line.split(":", 1)[1].strip()
            elif line.startswith("profiles dir:"):
                profiles = line.split(":", 1)[1].strip()
            elif line.startswith("probe them with"):
                break
        if profiles is None or ca is None:
            raise SystemExit("truth_bench: the lab did not start")
        yield profiles, ca
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def realistic_bundle(lab_ca: str, directory: Path) -> Path:
    """The system trust store plus the lab CA, so SSL contexts cost what they cost for real."""
    system = ssl.get_default_verify_paths().cafile
    if not system or not os.path.isfile(system):
        import certifi

        system = certifi.where()
    bundle = directory / "bundle.pem"
    bundle.write_bytes(Path(system).read_bytes() + b"\n" + Path(lab_ca).read_bytes())
    return bundle


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def pproxy(listen: str) -> Iterator[None]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pproxy", "-l", listen],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_pinned("far"),
    )
    port = int(listen.rsplit(":", 1)[1])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- running mpnet and curl ------------------------------------------------------------------------


def mpnet_json(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "mpnet", "probe", "--format", "json", *args],
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=_pinned("near"),
    )
    if not done.stdout.strip():
        raise SystemExit(f"truth_bench: mpnet printed nothing: {done.stderr.strip()[:300]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def samples_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-attempt samples; a report without them (an older mpnet) counts as one sample."""
    samples = result.get("samples")
    if samples:
        return list(samples)
    return [{"phases": result.get("phases", {}), "ok": result.get("ok"), "loop_lag_ms": None}]


def target_medians(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``exchange/target`` -> phase -> median over its successful attempts."""
    out: dict[str, dict[str, float]] = {}
    for result in report["results"]:
        good = [s for s in samples_of(result) if s.get("ok")]
        phases: dict[str, float] = {}
        for phase in PHASES:
            values = [s["phases"][phase] for s in good if phase in s.get("phases", {})]
            if values:
                phases[phase] = statistics.median(values)
        out[f"{result['exchange']}/{result['target']}"] = phases
    return out


def curl_times(url: str, ca: str, proxy: list[str], runs: int) -> list[dict[str, float]]:
    """curl's phases in ms for ``runs`` transfers, named as mpnet names them (proxy+tls together:
    curl has no split).

    One curl process fetches the URL ``runs + 1`` times, each on a new connection (``Connection:
    close``), and the first transfer is dropped: curl reads and parses its CA file inside the
    first TLS phase, then keeps the parsed store (its CA cache) for the later ones, as mpnet
    loads its store before any clock starts. ``--no-sessionid``: without it curl resumes the TLS
    session of the previous transfer (no certificate, no signature check: ~0.6 ms less on
    loopback), where every mpnet attempt makes a full handshake.
    """
    fmt = "%{time_namelookup} %{time_connect} %{time_appconnect} %{time_pretransfer} "
    fmt += "%{time_starttransfer} %{num_connects}\\n"
    command = ["curl", "-s", "--no-sessionid", "--noproxy", "" if proxy else "*", "--cacert", ca]
    command += proxy
    command += ["-H", "Connection: close", "-w", fmt]
    for _ in range(runs + 1):
        command += ["-o", "/dev/null", url]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
        preexec_fn=_pinned("near"),
    )
    rows = []
    for line in done.stdout.splitlines()[1:]:
        *times, connects = line.split()
        if connects != "1":
            continue  # a reused connection has no set-up to compare
        dns, connect, appconnect, pretransfer, starttransfer = (float(x) * 1000 for x in times)
        rows.append(
            {
                "dns": dns,
                "tcp": connect - dns,
                "proxy+tls": appconnect - connect,
                "http": starttransfer - pretransfer,
            }
        )
    return rows


def mpnet_route_times(report: dict[str, Any]) -> list[dict[str, float]]:
    rows = []
    for sample in samples_of(report["results"][0]):
        if not sample.get("ok"):
            continue
        phases = sample["phases"]
        rows.append(
            {
                "dns": phases.get("dns", 0.0),
                "tcp": phases.get("tcp", 0.0),
                "proxy+tls": phases.get("proxy", 0.0) + phases.get("tls", 0.0),
                "http": phases.get("http", 0.0),
            }
        )
    return rows


# -- printing ------------------------------------------------------------------------------------


def verdict(diff: float) -> str:
    return "ok" if abs(diff) <= GOAL_MS else "OVER"


def print_concurrency(serial: dict[str, Any], concurrent: dict[str, Any]) -> None:
    s, c = target_medians(serial), target_medians(concurrent)
    print("\n1. concurrent minus serial, per phase (median over targets of per-target medians)")
    print(f"   {'phase':<14}{'serial ms':>11}{'concurrent':>12}{'diff':>9}  goal <= {GOAL_MS:g}")
    for phase in PHASES:
        ser = [v[phase] for v in s.values() if phase in v]
        con = [v[phase] for v in c.values() if phase in v]
        if not ser or not con:
            continue
        a, b = statistics.median(ser), statistics.median(con)
        print(f"   {phase:<14}{a:>11.3f}{b:>12.3f}{b - a:>+9.3f}  {verdict(b - a)}")


def print_first_vs_steady(report: dict[str, Any], label: str) -> None:
    print(f"\n2. first attempt minus steady median of the later ones ({label})")
    print(f"   {'phase':<14}{'median diff':>12}{'worst':>10}  worst target")
    for phase in PHASES:
        diffs: list[tuple[float, str]] = []
        for result in report["results"]:
            samples = [s for s in samples_of(result) if s.get("ok")]
            if len(samples) < 3 or any(phase not in s["phases"] for s in samples):
                continue
            steady = statistics.median(s["phases"][phase] for s in samples[1:])
            diffs.append((samples[0]["phases"][phase] - steady, result["exchange"]))
        if not diffs:
            continue
        med = statistics.median(d for d, _ in diffs)
        worst = max(diffs, key=lambda d: abs(d[0]))
        print(f"   {phase:<14}{med:>+12.3f}{worst[0]:>+10.3f}  {worst[1]}  {verdict(med)}")


#: The reference for section 3: a bare loop that does nothing but wait for answers, each sent
#: by a process on the far side, and records how long each waited after its kernel arrival
#: stamp before the loop had it. No other work runs on that loop, so every wait over the goal
#: is the machine's: the process runnable without a CPU, or woken late.
_BARE_LOOP = r"""
import os, select, socket, sys, time
from mpnet.net.stamps import arrival_ns, stamp_arrivals
answers, spacing, far = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
server = socket.create_server(("127.0.0.1", 0))
if os.fork() == 0:
    if far:
        os.sched_setaffinity(0, {int(far)})
    sender = socket.create_connection(server.getsockname())
    sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(answers):
        time.sleep(spacing)
        sender.send(b"x")
    sender.recv(1)
    os._exit(0)
receiver, _ = server.accept()
stamp_arrivals(receiver)
poller = select.epoll()
poller.register(receiver, select.EPOLLIN)
waits, received = [], 0
while received < answers:
    poller.poll()
    now, came = time.perf_counter_ns(), arrival_ns(receiver.fileno())
    received += len(receiver.recv(answers))  # two answers read at once count as one wait
    if came is not None:
        waits.append((now - came) / 1e6)
receiver.send(b"x")
print(" ".join(f"{w:.4f}" for w in waits))
"""

#: Answers an attempt waits for inside its phases (connect, TLS flights, the answer; a feed's
#: upgrade, subscription answer, data and pong): the bare loop's rate per attempt.
ANSWERS_PER_ATTEMPT = 10


def machine_floor(answers: int = 2000, spacing_s: float = 0.001) -> list[float]:
    """Waits (ms) of a bare loop pinned like mpnet, answered from the far side's CPU."""
    far = PINS["far"]
    done = subprocess.run(
        [sys.executable, "-c", _BARE_LOOP, str(answers), str(spacing_s), str(min(far or {""}))],
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=_pinned("near"),
    )
    return [float(w) for w in done.stdout.split()]


def print_loop_lag(reports: dict[str, dict[str, Any]], floor: list[float] | None = None) -> None:
    print("\n3. largest event-loop stall seen by any attempt (loop_lag_ms)")
    for label, report in reports.items():
        lags = [
            s["loop_lag_ms"]
            for r in report["results"]
            for s in samples_of(r)
            if s.get("loop_lag_ms") is not None
        ]
        if not lags:
            print(f"   {label:<12} not reported by this mpnet")
            continue
        worst = max(lags)
        over = sum(1 for lag in lags if lag > GOAL_MS)
        print(
            f"   {label:<12} max {worst:.3f} ms, median {statistics.median(lags):.3f} ms, "
            f"{over} of {len(lags)} attempts over {GOAL_MS:g} ms  "
            f"{'ok' if worst <= GOAL_MS else 'OVER'}"
        )
    if floor:
        over = sum(1 for wait in floor if wait > GOAL_MS)
        rate = over / len(floor)
        total = sum(len(samples_of(r)) for r in next(iter(reports.values()))["results"])
        expected = total * (1 - (1 - rate) ** ANSWERS_PER_ATTEMPT)
        print(
            f"   {'machine':<12} max {max(floor):.3f} ms, median "
            f"{statistics.median(floor):.3f} ms, {over} of {len(floor)} answers over "
            f"{GOAL_MS:g} ms: a bare loop pinned like mpnet, doing nothing else"
        )
        print(
            f"   {'':<12} at {ANSWERS_PER_ATTEMPT} answers per attempt the machine alone puts "
            f"~{expected:.1f} of {total} attempts over {GOAL_MS:g} ms"
        )


def print_curl(label: str, mpnet_rows: list[dict[str, float]], curl_rows: list[dict[str, float]]):
    print(f"\n4. mpnet vs curl -w, {label}: medians of {len(mpnet_rows)} / {len(curl_rows)} runs")
    if not mpnet_rows or not curl_rows:
        print("   (no successful runs to compare)")
        return
    print(f"   {'phase':<11}{'mpnet ms':>10}{'curl ms':>10}{'diff':>9}   mpnet p90  curl p90")
    for phase in ("dns", "tcp", "proxy+tls", "http"):
        m = [r[phase] for r in mpnet_rows]
        c = [r[phase] for r in curl_rows]
        mm, cm = statistics.median(m), statistics.median(c)
        print(
            f"   {phase:<11}{mm:>10.3f}{cm:>10.3f}{mm - cm:>+9.3f}   {_p90(m):>9.3f}"
            f"{_p90(c):>10.3f}  {verdict(mm - cm)}"
        )


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


# -- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5, help="attempts per target (-n)")
    parser.add_argument("--runs", type=int, default=20, help="curl comparison runs per route")
    parser.add_argument("--exchange", default="deribit", help="endpoint for the curl comparison")
    parser.add_argument(
        "--runs-only", action="store_true", help="sections 1 to 3 only (no curl comparison)"
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="let the lab and mpnet share every CPU"
    )
    args = parser.parse_args()
    print("CPUs:", "not pinned (--no-pin)" if args.no_pin else pin_cpus())
    if shutil.which("curl") is None:
        print("truth_bench: curl is not installed; the outside reference is skipped")

    with tempfile.TemporaryDirectory() as tmp, lab_process() as (profiles, lab_ca):
        bundle = realistic_bundle(lab_ca, Path(tmp))
        print(f"lab in a separate process; trust bundle {bundle.stat().st_size // 1024} KiB")
        common = ["--profiles", profiles, "--ca-bundle", str(bundle), "--no-proxy"]
        n = ["-n", str(args.count)]
        serial = mpnet_json(*common, "--all", *n, "--concurrency", "1")
        concurrent = mpnet_json(*common, "--all", *n)
        print_concurrency(serial, concurrent)
        print_first_vs_steady(concurrent, "concurrent run")
        print_first_vs_steady(serial, "serial run")
        print_loop_lag({"serial": serial, "concurrent": concurrent}, machine_floor())

        if args.runs_only or shutil.which("curl") is None:
            return
        url = next(
            r["url"]
            for r in concurrent["results"]
            if r["exchange"] == args.exchange and r["target"] == "rest"
        )
        routes: list[tuple[str, list[str], list[str], str | None]] = [
            ("direct", ["--no-proxy"], [], None)
        ]
        http_port, socks_port = free_port(), free_port()
        routes.append(
            (
                "HTTP proxy (pproxy CONNECT)",
                ["--proxy", f"http://127.0.0.1:{http_port}"],
                ["-x", f"http://127.0.0.1:{http_port}"],
                f"http://127.0.0.1:{http_port}",
            )
        )
        routes.append(
            (
                "SOCKS5h proxy (pproxy)",
                ["--proxy", f"socks5h://127.0.0.1:{socks_port}"],
                ["--socks5-hostname", f"127.0.0.1:{socks_port}"],
                f"socks5://127.0.0.1:{socks_port}",
            )
        )
        for label, mpnet_route, curl_route, listen in routes:
            mpnet_rows: list[dict[str, float]] = []
            curl_rows: list[dict[str, float]] = []
            with pproxy(listen) if listen else _nothing():
                # In rounds, mpnet then curl, so that a drift of the machine's speed during
                # the sitting reaches both sides alike.
                for chunk in _chunks(args.runs, ROUNDS):
                    report = mpnet_json(
                        "--profiles",
                        profiles,
                        "--ca-bundle",
                        lab_ca,
                        *mpnet_route,
                        "--no-ws",
                        "-n",
                        str(chunk),
                        args.exchange,
                    )
                    mpnet_rows += mpnet_route_times(report)
                    curl_rows += curl_times(url, lab_ca, curl_route, chunk)
            print_curl(label, mpnet_rows, curl_rows)


#: Rounds of the curl comparison per route (mpnet's runs, then curl's, in each).
ROUNDS = 4


def _chunks(total: int, rounds: int) -> list[int]:
    """``total`` split into ``rounds`` near-equal positive parts (fewer when total is small)."""
    rounds = max(1, min(rounds, total))
    return [total // rounds + (1 if i < total % rounds else 0) for i in range(rounds)]


@contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    main()
