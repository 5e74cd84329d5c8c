"""Kernel receive time stamps: when an answer reached the host, whatever the event loop did.

A phase ends when the loop runs the callback of the answer that ends it. If the loop was busy
when the answer arrived, the wait is billed to the phase, and the loop-lag monitor
(``probe/looplag.py``) must say how long it was. Without a time stamp the only bound is the whole
busy stretch (the answer may have arrived at its start); with one, the wait is known to the
microsecond. On Linux, ``SO_TIMESTAMPNS`` makes the kernel stamp each packet a socket receives;
a ``MSG_PEEK`` read of one byte returns the stamp of the first byte waiting, without taking it.

Asking for stamps is cheap only while some socket of the host already has them on: the first
one to ask (and the last one to close) makes the kernel switch its stamping on (off) for every
socket, patching its own code from a worker thread that takes the CPU mpnet runs on. One
attempt at a time, each attempt's ``setsockopt`` cost 0.08 to 0.14 ms inside its ``tcp`` phase,
and the worker's run came after it as run delay (``bench/stamp_toggle_bench.py``).
:func:`keep_stamping` holds one socket with stamps on for the life of the process, so the
switch happens once, before any clock runs.
"""

from __future__ import annotations

import atexit
import contextlib
import socket
import struct
import sys
import time

#: ``SO_TIMESTAMPNS`` (Linux; the socket module does not name it): the kernel stamps each
#: packet it receives for the socket with the time it arrived (``CLOCK_REALTIME``).
SO_TIMESTAMPNS = 35 if sys.platform.startswith("linux") else None
_TIMESPEC = struct.Struct("@qq")
_PEEK_FLAGS = getattr(socket, "MSG_PEEK", 0) | getattr(socket, "MSG_DONTWAIT", 0)


def arrival_ns(fd: int) -> int | None:
    """When the first byte waiting in socket ``fd`` arrived (``perf_counter_ns``), from the
    kernel's receive time stamp (:func:`stamp_arrivals` asks for them); None where there is none."""
    if SO_TIMESTAMPNS is None:
        return None
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        _data, ancillary, _flags, _address = sock.recvmsg(
            1, socket.CMSG_SPACE(_TIMESPEC.size), _PEEK_FLAGS
        )
    except OSError:
        return None
    finally:
        sock.detach()
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
            seconds, nanoseconds = _TIMESPEC.unpack_from(payload)
            realtime_now, perf_now = time.time_ns(), time.perf_counter_ns()
            return int(perf_now - (realtime_now - (seconds * 1_000_000_000 + nanoseconds)))
    return None


def stamp_arrivals(sock: socket.socket) -> None:
    """Ask the kernel to stamp each packet this socket receives with its arrival time: the
    loop-lag monitor reads the stamp of an answer that waited while the loop was busy
    (``probe/looplag.py``), so it bills the wait, not the whole busy stretch. Best effort."""
    if SO_TIMESTAMPNS is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


#: The socket :func:`keep_stamping` holds (None until then, or where it could not be made).
_holder: socket.socket | None = None


def keep_stamping() -> None:
    """Keep the kernel's receive stamping switched on for the rest of the process: one UDP
    socket, bound to nothing, that never sends or receives, with stamps on. Call it before any
    clock runs (:func:`mpnet.net.prepare.prepare_network` does); later calls do nothing. Best
    effort: where it fails, each socket's ``setsockopt`` may pay for the switch."""
    global _holder
    if _holder is not None or SO_TIMESTAMPNS is None:
        return
    try:
        holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:
        return
    try:
        holder.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        holder.close()
        return
    _holder = holder
    atexit.register(holder.close)


__all__ = ["SO_TIMESTAMPNS", "arrival_ns", "keep_stamping", "stamp_arrivals"]
