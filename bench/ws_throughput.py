"""WebSocket receive throughput: WebSocketWrapper against the raw websockets client, one run.

A firehose server in a child process (so that sending costs the clients nothing) answers a
text message ``N`` with N text messages of about 200 bytes, written as pre-built frames as fast
as the socket takes them, over ws and wss. Each client connects, asks for N messages, and is
timed from the request to the N-th message received, by wall clock (messages/s) and by this
process's CPU time (microseconds per message, which a busy machine disturbs much less). Clients
alternate within every round; figures are medians over rounds. Goal: wrapper/raw >= 0.9
(websockets backend).

"wrapper + lag" is the wrapper as the probe reads its feed window: each message stamped with its
arrival time as it comes, then, after the window, decoded as JSON and its event time (``E``, ms)
read for its lag (:class:`mpnet.core.clock.FeedRecorder`). Its msg/s is the receive loop's (the
rate the feed is read at while lags are measured; goal >= 0.9 of the raw client's), its CPU/msg
the receive loop's, and "+ N us after" the decoding and lag reading after the window.

Run: ``python bench/ws_throughput.py [--messages 100000] [--rounds 5]``. Everything is on
127.0.0.1. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

MESSAGE_SIZE = 200


# -- the firehose (child process) ---------------------------------------------------------------


def _frames(count: int) -> bytes:
    """``count`` unmasked server text frames (RFC 6455 5.2) of MESSAGE_SIZE bytes each."""
    frames = []
    stamp = int(time.time() * 1000)
    for n in range(count):
        body = json.dumps(
            {
                "channel": "ticker.BTC-PERPETUAL.100ms",
                "E": stamp + n,
                "seq": n,
                "bid": 64123.5,
                "ask": 64124.0,
            }
        )
        payload = (body + " " * (MESSAGE_SIZE - len(body))).encode()
        frames.append(b"\x81\x7e" + struct.pack("!H", len(payload)) + payload)
    return b"".join(frames)


async def _serve(workdir: Path) -> None:
    import trustme
    from websockets.asyncio.server import ServerConnection, serve

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    cache: dict[int, bytes] = {}

    async def firehose(connection: ServerConnection) -> None:
        async for request in connection:
            count = int(request)
            if count not in cache:
                cache[count] = _frames(count)
            # The frames go straight to the transport: the server must outrun every client.
            connection.transport.write(cache[count])

    plain = await serve(firehose, "127.0.0.1", 0, compression=None, ping_interval=None)
    secure = await serve(
        firehose, "127.0.0.1", 0, ssl=context, compression=None, ping_interval=None
    )
    ports = [s.sockets[0].getsockname()[1] for s in (plain, secure)]
    print(f"{ports[0]} {ports[1]}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# -- the clients --------------------------------------------------------------------------------

#: (wall seconds, CPU seconds) to receive N messages.
Timing = tuple[float, float]
Receive = Callable[[str, int, Path], Awaitable[Timing]]


def _clocks() -> Timing:
    return time.perf_counter(), time.process_time()


def _elapsed(started: Timing) -> Timing:
    wall, cpu = _clocks()
    return wall - started[0], cpu - started[1]


async def raw_websockets(url: str, count: int, workdir: Path) -> Timing:
    from websockets.asyncio.client import connect

    context = ssl.create_default_context(cafile=str(workdir / "ca.pem"))
    async with connect(
        url,
        proxy=None,
        ssl=context if url.startswith("wss") else None,
        compression=None,
        ping_interval=None,
        max_size=None,
    ) as ws:
        await ws.send(str(count))
        started = _clocks()
        for _ in range(count):
            await ws.recv()
        return _elapsed(started)


def wrapper(backend: str, *, lag: bool = False) -> Receive:
    async def receive(url: str, count: int, workdir: Path) -> Timing:
        from mpnet.core.clock import MAX_LAGS, FeedRecorder, TimeField
        from mpnet.core.proxy import ProxyDecision
        from mpnet.core.tls import TLSDecision
        from mpnet.net.ws import WebSocketWrapper
        from mpnet.probe.messages import decode_message

        tls = TLSDecision(
            verify=True, ca=str(workdir / "ca.pem"), ca_kind="file", layer="cli", reason="bench"
        )
        direct = ProxyDecision(target_url=url, proxy=None, layer="default")
        ws = await WebSocketWrapper.connect(url, proxy=direct, tls=tls, timeout=10, backend=backend)
        try:
            await ws.send(str(count))
            started = _clocks()
            if lag:
                # As the probe's feed window reads (conversation._Conversation.read_feed): stamp
                # each message's arrival, decode and read E after the window.
                pending: list[tuple[float, str | bytes]] = []
                recv, now = ws.recv, time.time
                for _ in range(count):
                    raw = await recv()
                    pending.append((now(), raw))
                wall, cpu = _elapsed(started)
                after = time.process_time()
                recorder = FeedRecorder(TimeField("E", "ms"))
                for received_at, raw in pending:
                    recorder.observe(decode_message(raw, compression=None), received_at)
                AFTER_WINDOW_CPU.append((time.process_time() - after) / count * 1e6)
                record = recorder.record()
                # Every stamp is read (the lags kept are capped at MAX_LAGS).
                assert record.messages == count and not record.skipped, record.skipped
                assert len(record.lags_ms) == min(count, MAX_LAGS)
                return wall, cpu
            for _ in range(count):
                await ws.recv()
            return _elapsed(started)
        finally:
            await ws.close()

    return receive


#: CPU microseconds per message spent after a "wrapper + lag" window (decoding, lag reading).
AFTER_WINDOW_CPU: list[float] = []

CLIENTS: dict[str, Receive] = {
    "raw websockets": raw_websockets,
    "wrapper websockets": wrapper("websockets"),
    "wrapper aiohttp": wrapper("aiohttp"),
    "wrapper + lag": wrapper("websockets", lag=True),
}


async def measure(ports: list[int], count: int, rounds: int, workdir: Path) -> None:
    for scheme, port in zip(("ws", "wss"), ports, strict=True):
        url = f"{scheme}://127.0.0.1:{port}/"
        for receive in CLIENTS.values():  # warm-up: imports, frame cache, TLS session
            await receive(url, min(count, 1000), workdir)
        rates: dict[str, list[float]] = {name: [] for name in CLIENTS}
        cpu: dict[str, list[float]] = {name: [] for name in CLIENTS}
        for n in range(rounds):
            order = list(CLIENTS.items())
            if n % 2:
                order.reverse()
            for name, receive in order:
                wall, spent = await receive(url, count, workdir)
                rates[name].append(count / wall)
                cpu[name].append(spent / count * 1e6)
        rate = {name: statistics.median(values) for name, values in rates.items()}
        cost = {name: statistics.median(values) for name, values in cpu.items()}
        raw = "raw websockets"
        after_window = statistics.median(AFTER_WINDOW_CPU[-rounds:])
        print(f"{scheme}: {count} messages of {MESSAGE_SIZE} bytes, median of {rounds} rounds")
        for name in CLIENTS:
            spread = f"{min(rates[name]):,.0f}..{max(rates[name]):,.0f}"
            line = f"  {name:19} {rate[name]:>8,.0f} msg/s ({spread:>15})"
            line += f"  {cost[name]:5.1f} us CPU/msg"
            if name != raw:
                line += (
                    f"   wrapper/raw: {rate[name] / rate[raw]:.2f} by msg/s, "
                    f"{cost[raw] / cost[name]:.2f} by CPU"
                )
            if name == "wrapper + lag":
                line += f"  (+ {after_window:.1f} us CPU/msg after the window)"
            print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(Path(args.serve)))
        return
    workdir = Path(tempfile.mkdtemp(prefix="mpnet-bench-"))
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(workdir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        ports = [int(p) for p in server.stdout.readline().split()]
        asyncio.run(measure(ports, args.messages, args.rounds, workdir))
    finally:
        server.communicate("")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
