"""What asking for receive stamps costs a connection, with and without a socket that holds them on.

mpnet asks the kernel to stamp every packet its sockets receive (``SO_TIMESTAMPNS``,
``mpnet/net/stamps.py``), inside the ``tcp`` phase (the socket is made, then connected). On
Linux the first socket to ask switches the host's stamping on and the last one to close
switches it off; each switch patches the kernel's code from a worker thread. One attempt at a
time, every attempt pays for both. :func:`mpnet.net.stamps.keep_stamping` holds one socket
with stamps on, so the switch happens once.

This makes connections to a local listener one at a time, as a serial probe does (socket,
``TCP_NODELAY``, ``SO_TIMESTAMPNS``, connect, one answer, close), in alternating rounds with
and without a holder socket, and prints per mode the median time of the ``setsockopt`` call and
of the whole set-up (what mpnet's ``tcp`` phase would read), the run delay the process
accumulated (``/proc/thread-self/schedstat``: runnable, no CPU), and the differences.

Run: ``python bench/stamp_toggle_bench.py [--rounds 6] [--connections 200]``. Linux only;
nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from pathlib import Path

from mpnet.net.stamps import SO_TIMESTAMPNS

_SCHEDSTAT = Path("/proc/thread-self/schedstat")


def _run_delay_ns() -> int:
    return int(_SCHEDSTAT.read_text().split()[1])


def one_round(listener: socket.socket, connections: int) -> tuple[list[float], list[float], int]:
    """``connections`` set-ups one after another; (setsockopt ms, set-up ms, run delay ns)."""
    assert SO_TIMESTAMPNS is not None
    stamp_ms: list[float] = []
    setup_ms: list[float] = []
    delay_before = _run_delay_ns()
    address = listener.getsockname()
    for _ in range(connections):
        started = time.perf_counter_ns()
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        before = time.perf_counter_ns()
        client.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        after = time.perf_counter_ns()
        client.connect(address)
        connected = time.perf_counter_ns()
        server, _ = listener.accept()
        server.sendall(b"x")
        client.recv(1)
        server.close()
        client.close()
        stamp_ms.append((after - before) / 1e6)
        setup_ms.append((connected - started) / 1e6)
        # A serial probe's attempts are apart: let the kernel's deferred switch-off run.
        time.sleep(0.002)
    return stamp_ms, setup_ms, _run_delay_ns() - delay_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds per mode (alternating)")
    parser.add_argument("--connections", type=int, default=200, help="connections per round")
    args = parser.parse_args()
    if SO_TIMESTAMPNS is None or not _SCHEDSTAT.exists():
        sys.exit("stamp_toggle_bench: needs Linux (SO_TIMESTAMPNS, /proc/thread-self/schedstat)")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    results: dict[str, tuple[list[float], list[float], list[int]]] = {
        mode: ([], [], []) for mode in ("without holder", "with holder")
    }
    for _ in range(args.rounds):
        for mode, (stamps, setups, delays) in results.items():
            holder = None
            if mode == "with holder":
                holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                holder.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                time.sleep(0.05)  # the switch-on happens before the round's clocks
            stamp_ms, setup_ms, delay_ns = one_round(listener, args.connections)
            stamps.extend(stamp_ms)
            setups.extend(setup_ms)
            delays.append(delay_ns)
            if holder is not None:
                holder.close()
            time.sleep(0.05)
    listener.close()
    print(f"{args.rounds} rounds x {args.connections} connections per mode, alternating")
    medians: dict[str, tuple[float, float, float]] = {}
    for mode, (stamps, setups, delays) in results.items():
        per_connection_delay = statistics.mean(delays) / args.connections / 1e6
        medians[mode] = (
            statistics.median(stamps),
            statistics.median(setups),
            per_connection_delay,
        )
        print(
            f"  {mode:15}  setsockopt median {medians[mode][0]:.4f} ms (max {max(stamps):.3f}),"
            f"  set-up median {medians[mode][1]:.4f} ms,"
            f"  run delay {per_connection_delay:.4f} ms per connection"
        )
    without, with_ = medians["without holder"], medians["with holder"]
    print(
        f"  without minus with: setsockopt {without[0] - with_[0]:+.4f} ms,"
        f" set-up {without[1] - with_[1]:+.4f} ms, run delay {without[2] - with_[2]:+.4f} ms"
        " per connection"
    )


if __name__ == "__main__":
    main()
