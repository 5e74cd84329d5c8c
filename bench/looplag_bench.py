"""What the loop-lag monitor costs and how well it sees stalls, side by side in one run.

1. Cost: a loop-bound workload (round trips over a local socket pair, as a probe's reads and
   writes are) timed with and without the monitor running, interleaved, medians. Prints the
   ratio, and the monitor's own time per tick (its ``cost_ns``) as a share of the run.
2. Accuracy: a stall of known length (``time.sleep`` on the loop) inside a window, with an
   answer for the window's attempt arriving as it begins; prints the measured lag against the
   true stall. On mpnet's own loop also the same stall with nothing waiting (it should read 0:
   the loop's own work delayed nobody).

Run: ``python bench/looplag_bench.py [--rounds 7] [--trips 5000]``. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time

from mpnet.net.stamps import stamp_arrivals
from mpnet.probe.looplag import (
    DEFAULT_INTERVAL,
    LagWindow,
    LoopLagMonitor,
    attempt_window,
    new_event_loop,
)


async def _round_trips(trips: int) -> float:
    """Seconds for ``trips`` one-byte round trips over a socket pair on the running loop."""
    left, right = socket.socketpair()
    reader_a, writer_a = await asyncio.open_connection(sock=left)
    reader_b, writer_b = await asyncio.open_connection(sock=right)

    async def echo() -> None:
        while data := await reader_b.read(1):
            writer_b.write(data)

    echoing = asyncio.create_task(echo())
    started = time.perf_counter()
    for _ in range(trips):
        writer_a.write(b"x")
        await reader_a.readexactly(1)
    elapsed = time.perf_counter() - started
    writer_a.close()
    echoing.cancel()
    writer_b.close()
    return elapsed


async def _cost(rounds: int, trips: int, interval: float) -> None:
    plain: list[float] = []
    watched: list[float] = []
    shares: list[float] = []
    per_tick: list[float] = []
    await _round_trips(trips // 10)  # warm up
    for _ in range(rounds):
        plain.append(await _round_trips(trips))
        monitor = LoopLagMonitor(interval=interval)
        async with monitor:
            elapsed = await _round_trips(trips)
        watched.append(elapsed)
        shares.append(monitor.cost_ns / 1e9 / elapsed)
        per_tick.append(monitor.cost_ns / max(1, monitor.ticks) / 1e3)
    base, with_monitor = statistics.median(plain), statistics.median(watched)
    ticking = monitor.ticks > 0
    method = f"ticks every {interval * 1e3:g} ms" if ticking else "the loop's BusySelector"
    print(f"cost ({method}): {trips} round trips, median of {rounds} interleaved runs")
    print(f"  without monitor  {base * 1e3:8.1f} ms")
    print(f"  with monitor     {with_monitor * 1e3:8.1f} ms   ratio {with_monitor / base:.3f}")
    own = f"{100 * statistics.median(shares):.2f} % of the run"
    if ticking:
        own = f"ticks {statistics.median(per_tick):.1f} us each, {own}"
    print(f"  monitor's own work: {own}")


async def _accuracy(rounds: int, interval: float, *, answered: bool) -> None:
    """With ``answered``, an answer for the window's attempt arrives as each stall begins (what
    the selector method bills); without, the stall is work with nothing waiting (what ticks
    bill, and the selector method rightly does not)."""
    what = "an answer waiting through a blocking stall" if answered else "a blocking stall"
    print(f"accuracy: {what} inside a window, measured lag / true stall (median)")
    loop = asyncio.get_running_loop()
    with socket.create_server(("127.0.0.1", 0)) as server:
        sender = socket.create_connection(server.getsockname())
        receiver, _ = server.accept()
    sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stamp_arrivals(receiver)
    receiver.setblocking(False)

    async def stall_in(window: LagWindow, stall_ms: float) -> None:
        got: asyncio.Future[None] = loop.create_future()

        def read() -> None:
            loop.remove_reader(receiver)
            receiver.recv(16)
            got.set_result(None)

        token = attempt_window.set(window)
        try:
            loop.add_reader(receiver, read)
        finally:
            attempt_window.reset(token)
        await asyncio.sleep(0.002)
        if answered:
            sender.send(b"x")
        time.sleep(stall_ms / 1000)
        if not answered:
            sender.send(b"x")
        await got

    with sender, receiver:
        async with LoopLagMonitor(interval=interval) as monitor:
            quiet = []
            for _ in range(rounds):
                await asyncio.sleep(0.005)
                window = monitor.open_window()
                await asyncio.sleep(0.005)  # the loop waits in its selector: nothing is delayed
                quiet.append(await monitor.settle(window) or 0.0)
            print(f"  quiet window     reads {statistics.median(quiet):.3f} ms (true: 0)")
            for stall_ms in (2, 5, 10, 20, 50):
                ratios = []
                for _ in range(rounds):
                    await asyncio.sleep(0.005)
                    window = monitor.open_window()
                    await stall_in(window, stall_ms)
                    lag = await monitor.settle(window)
                    ratios.append((lag or 0.0) / stall_ms)
                print(f"  {stall_ms:3d} ms stall  ratio {statistics.median(ratios):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--trips", type=int, default=5000)
    parser.add_argument(
        "--interval", type=float, default=DEFAULT_INTERVAL, help="seconds between ticks"
    )
    args = parser.parse_args()
    print("== a plain asyncio loop (a library user's): the monitor ticks")
    asyncio.run(_cost(args.rounds, args.trips, args.interval))
    asyncio.run(_accuracy(args.rounds, args.interval, answered=True))
    print("== a loop from looplag.new_event_loop() (every mpnet command): the selector reports")
    for body in (
        _cost(args.rounds, args.trips, args.interval),
        _accuracy(args.rounds, args.interval, answered=True),
        _accuracy(args.rounds, args.interval, answered=False),
    ):
        loop = new_event_loop()
        try:
            loop.run_until_complete(body)
        finally:
            loop.close()


if __name__ == "__main__":
    main()
