"""dial() cost and memory, printed side by side in one run (nothing is asserted).

1. Median time of one dial() to a local TLS server verified against the system trust store (the
   system bundle plus a throw-away test CA, through SSL_CERT_FILE), with the shared context of
   net/tls.context_for, against the same dial preceded by building its own context (what every
   dial did before the contexts were shared). Goal: ratio well under 1.
2. Growth per 1,000 dials after gc.collect(): gc-tracked objects, tracemalloc's traced bytes and
   the process's resident memory. Goal: about 0 (bounded interpreter caches only).

Run: ``python bench/dial_bench.py [--dials 200] [--growth 1000]``. Everything is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import ssl
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import trustme

from mpnet.core.proxy import ProxyDecision
from mpnet.core.tls import TLSDecision
from mpnet.net.dial import dial
from mpnet.net.tls import build_ssl_context

DIRECT = ProxyDecision(target_url="", proxy=None, layer="default")
SYSTEM = TLSDecision(verify=True, ca=None, ca_kind="system", layer="default", reason="default")


@contextlib.asynccontextmanager
async def _tls_server(directory: Path) -> AsyncIterator[str]:
    ca = trustme.CA()
    bundle = directory / "system-plus-test-ca.pem"
    system = ssl.get_default_verify_paths().openssl_cafile
    bundle.write_bytes(Path(system).read_bytes() + ca.cert_pem.bytes())
    os.environ["SSL_CERT_FILE"] = str(bundle)  # read by load_default_certs
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            await reader.read()
        writer.transport.abort()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=context)
    try:
        yield f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    finally:
        server.close()
        await server.wait_closed()


async def _one_dial(url: str, *, own_context: bool) -> float:
    started = time.perf_counter()
    if own_context:
        build_ssl_context(SYSTEM)  # the per-dial build that dial() no longer does
    conn = await dial(url, proxy=DIRECT, tls=SYSTEM, timeout=10)
    elapsed = (time.perf_counter() - started) * 1000
    await conn.aclose()
    return elapsed


def _resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def main(dials: int, growth: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        async with _tls_server(Path(directory)) as url:
            await _one_dial(url, own_context=False)  # builds the shared context once
            shared = [await _one_dial(url, own_context=False) for _ in range(dials)]
            own = [await _one_dial(url, own_context=True) for _ in range(dials)]
            shared_ms, own_ms = statistics.median(shared), statistics.median(own)
            print(f"1. median dial, system trust store, {dials} sequential dials each:")
            print(f"   shared context {shared_ms:7.2f} ms")
            print(f"   own context    {own_ms:7.2f} ms   ratio shared/own {shared_ms / own_ms:.3f}")

            gc.collect()
            tracemalloc.start()
            objects, traced = len(gc.get_objects()), tracemalloc.get_traced_memory()[0]
            resident = _resident_mib() if os.path.exists("/proc/self/statm") else 0.0
            for _ in range(growth):
                await _one_dial(url, own_context=False)
            gc.collect()
            per = 1000 / growth
            grew_objects = (len(gc.get_objects()) - objects) * per
            grew_kib = (tracemalloc.get_traced_memory()[0] - traced) / 1024 * per
            tracemalloc.stop()
            print(f"2. growth per 1,000 dials (measured over {growth}):")
            print(f"   gc objects {grew_objects:+.0f}, traced memory {grew_kib:+.1f} KiB", end="")
            if resident:
                print(f", resident {(_resident_mib() - resident) * per:+.1f} MiB")
            else:
                print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dials", type=int, default=200)
    parser.add_argument("--growth", type=int, default=1000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.dials, arguments.growth))
