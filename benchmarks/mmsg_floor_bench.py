"""Would batched system calls lower the floor? uvloop's UDP path against recvmmsg/sendmmsg.

Both servers do the least a DNS server does per datagram (the breakdown's floor: a fixed
A answer with the query's ID and question spliced in) and run pinned to the server
core under the same dnsperf load:

1. ``uvloop``: an ``asyncio.DatagramProtocol`` on uvloop, as kdns's transport is (libuv
   drains up to 32 datagrams per readiness event, one ``recvmsg`` and one ``sendmsg``
   each);
2. ``mmsg``: a raw non-blocking socket under ``loop.add_reader``, read with
   ``recvmmsg`` into preallocated buffers (up to :data:`BATCH` datagrams a call) and
   answered with one ``sendmmsg`` per batch, through ctypes, with the per-message
   bookkeeping done through memoryviews and ``struct``, not ctypes objects.

Printed: server CPU per query (user, kernel), qps, and the ratio. Linux x86-64 only.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import signal
import socket
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

import harness as h

BATCH = 32
SLOT = 2048  # bytes per datagram buffer
NAME = 28  # sockaddr_in6 is the largest address
MSG = 64  # sizeof(struct mmsghdr) on x86-64: msghdr 56 + msg_len 4 + padding 4
ANSWER = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04\xc0\x00\x02\x01"
HEADER = b"\x85\x00\x00\x01\x00\x01\x00\x00\x00\x00"


def uvloop_server(port: int) -> None:
    import uvloop

    class Floor(asyncio.DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            end = data.find(0, 12) + 5
            self.transport.sendto(data[:2] + HEADER + data[12:end] + ANSWER, addr)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(Floor, local_addr=("127.0.0.1", port))
        await _until_signal(loop)

    uvloop.run(main())


def mmsg_server(port: int) -> None:
    import uvloop

    libc = ctypes.CDLL(None, use_errno=True)
    recvmmsg, sendmmsg = libc.recvmmsg, libc.sendmmsg
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    sock.setblocking(False)
    fd = sock.fileno()

    inbuf = ctypes.create_string_buffer(BATCH * SLOT)
    outbuf = ctypes.create_string_buffer(BATCH * SLOT)
    names = ctypes.create_string_buffer(BATCH * NAME)
    iov_in = ctypes.create_string_buffer(BATCH * 16)
    iov_out = ctypes.create_string_buffer(BATCH * 16)
    msgs_in = ctypes.create_string_buffer(BATCH * MSG)
    msgs_out = ctypes.create_string_buffer(BATCH * MSG)
    addr = ctypes.addressof
    for i in range(BATCH):
        struct.pack_into("QQ", iov_in, i * 16, addr(inbuf) + i * SLOT, SLOT)
        struct.pack_into("QQ", iov_out, i * 16, addr(outbuf) + i * SLOT, 0)
        for msgs, iov in ((msgs_in, iov_in), (msgs_out, iov_out)):
            # msg_name, msg_namelen, msg_iov, msg_iovlen, control 0, 0, flags 0
            struct.pack_into(
                "QI4xQQQQi4x", msgs, i * MSG, addr(names) + i * NAME, NAME,
                addr(iov) + i * 16, 1, 0, 0, 0,
            )  # fmt: skip
    ins = memoryview(inbuf).cast("B")
    outs = memoryview(outbuf).cast("B")
    mi = memoryview(msgs_in).cast("B")
    mo = memoryview(msgs_out).cast("B")
    io = memoryview(iov_out).cast("B")
    unpack_len = struct.Struct("I").unpack_from
    pack_len = struct.Struct("Q").pack_into
    pack_namelen = struct.Struct("I").pack_into

    def readable() -> None:
        for _ in range(4):  # bounded per loop turn
            n = recvmmsg(fd, msgs_in, BATCH, socket.MSG_DONTWAIT, None)
            if n <= 0:
                return
            for i in range(n):
                size = unpack_len(mi, i * MSG + 56)[0]
                off = i * SLOT
                data = bytes(ins[off : off + size])
                end = data.find(0, 12) + 5
                reply = data[:2] + HEADER + data[12:end] + ANSWER
                outs[off : off + len(reply)] = reply
                pack_len(io, i * 16 + 8, len(reply))
                pack_namelen(mo, i * MSG + 8, unpack_len(mi, i * MSG + 8)[0])
                pack_namelen(mi, i * MSG + 8, NAME)
            sendmmsg(fd, msgs_out, n, 0)
            if n < BATCH:
                return

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(fd, readable)
        await _until_signal(loop)

    uvloop.run(main())


async def _until_signal(loop: asyncio.AbstractEventLoop) -> None:
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=2, help="alternating runs of each server")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--server", choices=("uvloop", "mmsg"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.server:
        (uvloop_server if args.server == "uvloop" else mmsg_server)(args.port)
        return 0
    h.need("dnsperf", "taskset")
    results: dict[str, list[dict[str, float]]] = {"uvloop": [], "mmsg": []}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        queries = h.write_queries([f"www{i}.example.org A" for i in range(1000)], tmp / "q")
        for _ in range(args.runs):
            for kind in ("uvloop", "mmsg"):
                port = h.free_port()
                cmd = [sys.executable, str(Path(__file__).resolve()), "--server", kind]
                with h.running([*cmd, "--port", str(port)], tmp / f"{kind}.log") as proc:
                    h.wait_answer(proc, port, "www1.example.org.", 30)
                    load = h.load(kind, "floor", proc.pid, port, queries, args.duration, 1.0,
                                  proc=proc)  # fmt: skip
                user = load.us_per_query * (load.cpu_pct - load.sys_pct) / max(load.cpu_pct, 1e-9)
                results[kind].append(
                    {
                        "qps": round(load.qps),
                        "us_per_query": round(load.us_per_query, 2),
                        "user": round(user, 2),
                        "kernel": round(load.us_per_query - user, 2),
                        "other_pct": round(load.other_cpu_pct),
                    }
                )
                print(kind, results[kind][-1], file=sys.stderr)
    best = {k: min(r["us_per_query"] for r in v) for k, v in results.items()}
    summary = {"runs": results, "best_us_per_query": best,
               "mmsg_over_uvloop": round(best["mmsg"] / best["uvloop"], 2)}  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"floor, server CPU per query (best of {args.runs}): uvloop {best['uvloop']} µs, "
            f"recvmmsg/sendmmsg {best['mmsg']} µs: {summary['mmsg_over_uvloop']}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
