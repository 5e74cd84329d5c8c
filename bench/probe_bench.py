"""Probe benchmarks, printed as ratios measured side by side in one run (nothing is asserted).

1. Concurrency: N look-alike exchanges whose REST health answers after 300 ms, probed together,
   against one alone. Goal: ratio <= 1.5 for 12.
2. Routes: the same N look-alikes over three routes at once (direct, a local pproxy by HTTP
   CONNECT, another by SOCKS5), against the slowest of the three alone. Goal: ratio
   <= 1.2 (routes run concurrently). The look-alikes run in a process of their own here, as
   remote exchanges do: their TLS handshakes are not mpnet's CPU time.
3. The ``http`` phase against curl's ``time_starttransfer - time_pretransfer`` on the same
   local HTTPS endpoint, medians of the same number of runs. Goal: within 5 ms.

Run: ``python bench/probe_bench.py [--exchanges 12] [--runs 20]``. Everything is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import trustme
from aiohttp import web

from mpnet.config.layers import NetworkOptions
from mpnet.config.model import ConfigFile, HealthCheck, Profile, RestSpec
from mpnet.core.proxy import ProxyDecision
from mpnet.core.route import Route, parse_routes
from mpnet.core.tls import TLSSetting, resolve_tls
from mpnet.net.exchange import timed_request
from mpnet.probe.engine import run_probes
from mpnet.probe.plan import build_plan

DELAY = 0.3


async def _start_server(ca: trustme.CA, delay: float) -> tuple[web.AppRunner, int]:
    async def health(request: web.Request) -> web.Response:
        if delay:
            await asyncio.sleep(delay)
        return web.json_response({"result": {"version": "bench"}})

    app = web.Application()
    app.router.add_get("/api/v2/public/test", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


def _profile(name: str, port: int) -> Profile:
    return Profile(
        name=name,
        title=name,
        rest=RestSpec(
            base_url=f"https://127.0.0.1:{port}",
            health=HealthCheck(path="/api/v2/public/test", expect_json_keys=("result",)),
        ),
    )


async def concurrency(n: int, ca_file: str, ca: trustme.CA) -> tuple[float, float]:
    servers = [await _start_server(ca, DELAY) for _ in range(n)]
    try:
        profiles = [_profile(f"lookalike-{i}", port) for i, (_, port) in enumerate(servers)]
        options = NetworkOptions(ca_bundle=ca_file)

        async def timed(chosen: list[Profile]) -> float:
            plan = build_plan(
                chosen, config=ConfigFile(), options=options, env={}, ws=False, timeout=10
            )
            started = time.perf_counter()
            report = await run_probes(plan)
            elapsed = time.perf_counter() - started
            failed = [r for r in report.results if not r.ok]
            if failed:
                raise SystemExit(f"bench probe failed: {failed[0].error}")
            return elapsed

        await timed(profiles[:1])  # warm-up: imports, first TLS context
        one = statistics.median([await timed(profiles[:1]) for _ in range(3)])
        many = statistics.median([await timed(profiles) for _ in range(3)])
        return one, many
    finally:
        for runner, _ in servers:
            await runner.cleanup()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _start_pproxy(scheme: str) -> tuple[subprocess.Popen[bytes], int]:
    """One pproxy listening for ``scheme`` on 127.0.0.1; waits until it accepts."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pproxy", "-l", f"{scheme}://127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        break
    return process, port


async def _serve_lookalikes(n: int, cert_file: str) -> None:
    """The ``--serve`` mode: N look-alikes on 127.0.0.1 in this process; prints their ports
    on one line, then serves until stdin closes."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_file)
    runners = []
    ports = []
    for _ in range(n):

        async def health(request: web.Request) -> web.Response:
            await asyncio.sleep(DELAY)
            return web.json_response({"result": {"version": "bench"}})

        app = web.Application()
        app.router.add_get("/api/v2/public/test", health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await site.start()
        runners.append(runner)
        ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    print(" ".join(str(p) for p in ports), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for runner in runners:
        await runner.cleanup()


async def routes(n: int, ca_file: str, ca: trustme.CA) -> tuple[dict[str, float], float]:
    """Seconds for N look-alikes over each route alone, and over the three routes at once."""
    cert_file = str(Path(ca_file).with_name("lookalike.pem"))
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    Path(cert_file).write_bytes(
        leaf.private_key_pem.bytes() + b"".join(c.bytes() for c in leaf.cert_chain_pems)
    )
    servers = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(n), "--cert", cert_file],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert servers.stdout is not None and servers.stdin is not None
    ports = [int(p) for p in servers.stdout.readline().split()]
    # Two proxies, two processes: routes through different proxies do not share one relay.
    http_process, http_port = await _start_pproxy("http")
    socks_process, socks_port = await _start_pproxy("socks5")
    http_proxy = f"http://127.0.0.1:{http_port}"
    socks_proxy = f"socks5h://127.0.0.1:{socks_port}"
    try:
        profiles = [_profile(f"lookalike-{i}", port) for i, port in enumerate(ports)]
        options = NetworkOptions(ca_bundle=ca_file)
        every = parse_routes(["direct", http_proxy, socks_proxy], {})

        async def timed(chosen: Sequence[Route]) -> float:
            plan = build_plan(
                profiles,
                config=ConfigFile(),
                options=options,
                env={},
                ws=False,
                timeout=10,
                routes=chosen,
            )
            started = time.perf_counter()
            report = await run_probes(plan)
            elapsed = time.perf_counter() - started
            failed = [r for r in report.results if not r.ok]
            if failed:
                raise SystemExit(f"bench probe via {failed[0].route} failed: {failed[0].error}")
            return elapsed

        await timed(every)  # warm-up: imports, TLS contexts, the proxy's first connections
        alone: dict[str, list[float]] = {route.name: [] for route in every}
        together: list[float] = []
        for _ in range(3):  # interleaved, so that load changes hit both sides alike
            for route in every:
                alone[route.name].append(await timed([route]))
            together.append(await timed(every))
        return (
            {name: statistics.median(values) for name, values in alone.items()},
            statistics.median(together),
        )
    finally:
        for process in (http_process, socks_process):
            process.terminate()
            process.wait(10)
        servers.stdin.close()
        servers.wait(10)


async def http_phase(runs: int, ca_file: str, ca: trustme.CA) -> tuple[list[float], list[float]]:
    runner, port = await _start_server(ca, 0.0)
    url = f"https://127.0.0.1:{port}/api/v2/public/test"
    try:
        proxy = ProxyDecision(target_url=url, proxy=None, layer="default")
        tls = resolve_tls(cli=TLSSetting(ca_bundle=ca_file), system_store=True)
        ours = []
        for _ in range(runs + 1):
            response = await timed_request("GET", url, proxy=proxy, tls=tls, timeout=5)
            ours.append(response.timings.http or 0.0)
        curls = []
        curl = shutil.which("curl")
        if curl:
            fmt = "%{time_pretransfer} %{time_starttransfer}"
            for _ in range(runs + 1):
                proc = await asyncio.create_subprocess_exec(
                    curl,
                    "-s",
                    "-o",
                    "/dev/null",
                    "--noproxy",
                    "*",
                    "--cacert",
                    ca_file,
                    "-w",
                    fmt,
                    url,
                    stdout=subprocess.PIPE,
                )
                out, _ = await proc.communicate()
                pre, start = (float(v) for v in out.split())
                curls.append((start - pre) * 1000)
        return ours[1:], curls[1:]
    finally:
        await runner.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exchanges", type=int, default=12)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cert", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        await _serve_lookalikes(args.serve, args.cert)
        return
    ca = trustme.CA()
    with tempfile.TemporaryDirectory() as tmp:
        ca_file = str(Path(tmp) / "ca.pem")
        ca.cert_pem.write_to_path(ca_file)
        one, many = await concurrency(args.exchanges, ca_file, ca)
        print(
            f"concurrency: 1 exchange {one * 1000:.0f} ms, {args.exchanges} exchanges "
            f"{many * 1000:.0f} ms, ratio {many / one:.2f} (goal <= 1.5)"
        )
        alone, together = await routes(args.exchanges, ca_file, ca)
        slowest = max(alone.values())
        shown = ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in alone.items())
        print(
            f"routes: {args.exchanges} exchanges over one route alone: {shown}; over all three "
            f"at once {together * 1000:.0f} ms, ratio {together / slowest:.2f} to the slowest "
            f"alone (goal <= 1.2; medians of 3, interleaved)"
        )
        ours, curls = await http_phase(args.runs, ca_file, ca)
        ours_med = statistics.median(ours)
        if curls:
            curl_med = statistics.median(curls)
            print(
                f"http phase: mpnet median {ours_med:.2f} ms, curl starttransfer-pretransfer "
                f"median {curl_med:.2f} ms, difference {ours_med - curl_med:+.2f} ms "
                f"(goal within 5 ms; {args.runs} runs each)"
            )
        else:
            print(f"http phase: mpnet median {ours_med:.2f} ms (curl not installed)")


if __name__ == "__main__":
    asyncio.run(main())
