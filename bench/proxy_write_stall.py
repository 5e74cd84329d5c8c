"""PROXY_WRITE_STALL against a real relay: the figures it sees and whether the rule fires.

A small CONNECT proxy (threads, blocking sockets, on 127.0.0.1) relays the lab's Binance REST
and WebSocket targets. Run once with TCP_NODELAY off on the relay's sockets (Nagle's algorithm
on, the way many home-made relays ship) and once with it on (the fix the finding asks for), then
once direct. Each run prints the per-attempt http / ws_upgrade times, their medians, and the
diagnosis of the proxied results judged together with the direct ones (nothing is asserted;
the numbers depend on this machine's load).

Run: ``python bench/proxy_write_stall.py [-n 10]``. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import threading
from collections.abc import Sequence

from mpnet.config.layers import NetworkOptions
from mpnet.config.model import ConfigFile
from mpnet.config.profiles import load_profiles
from mpnet.core.diagnose import diagnose
from mpnet.core.result import ProbeResult
from mpnet.lab import Lab
from mpnet.probe.engine import run_probes
from mpnet.probe.plan import build_plan


class Relay:
    """An HTTP CONNECT relay; ``nodelay`` sets TCP_NODELAY on both legs of every tunnel."""

    def __init__(self, *, nodelay: bool) -> None:
        self.nodelay = nodelay
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(1)
            if not chunk:
                client.close()
                return
            head += chunk
        host, port = head.split(b" ")[1].decode().rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(self.nodelay))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
        _pump(upstream, client)

    def close(self) -> None:
        self.server.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


async def probe(lab: Lab, proxy: str | None, count: int) -> list[ProbeResult]:
    assert lab.ca_file is not None
    options = NetworkOptions(proxy=proxy, no_proxy=proxy is None, ca_bundle=lab.ca_file)
    plan = build_plan(
        [lab.profile("binance")],
        config=ConfigFile(),
        options=options,
        env={},
        count=count,
        timeout=10,
    )
    report = await run_probes(plan)
    return list(report.results)


def show(label: str, results: Sequence[ProbeResult]) -> None:
    for result in results:
        phase = "http" if result.target == "rest" else "ws_upgrade"
        values = [a.phases[phase] for a in result.attempts if phase in a.phases]
        shown = " ".join(f"{v:.1f}" for v in values)
        median = statistics.median(values) if values else float("nan")
        print(f"{label:<16} {result.target:<4} {phase:<10} median {median:6.1f} ms  [{shown}]")


async def main(count: int) -> None:
    profile = load_profiles().get("binance")
    async with Lab([profile]) as lab:
        direct = await probe(lab, None, count)
        show("direct", direct)
        for nodelay in (False, True):
            relay = Relay(nodelay=nodelay)
            try:
                proxied = await probe(lab, f"http://127.0.0.1:{relay.port}", count)
            finally:
                relay.close()
            label = f"relay nodelay={'on' if nodelay else 'off'}"
            show(label, proxied)
            judged = diagnose([*proxied, *direct])[: len(proxied)]
            for result in judged:
                stalls = [f for f in result.findings if f.code == "PROXY_WRITE_STALL"]
                verdict = stalls[0].message if stalls else "no PROXY_WRITE_STALL"
                print(f"{'':<16} {result.target:<4} -> {verdict}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="attempts per target")
    asyncio.run(main(parser.parse_args().n))
