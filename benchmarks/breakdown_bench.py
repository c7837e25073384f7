"""Where one query's microseconds go, on kdns's compiled path.

perf cannot see into CPython 3.11's frames, so the breakdown is assembled from what can
be measured without touching kdns's code (kdns runs as a process throughout):

1. **kdns, as it runs**: ``kdns serve --manifests`` (1,000 services) pinned to core 1
   under dnsperf with the cluster ``normal`` mix: server CPU per answered query, split
   into user time (Python, uvloop) and system time (the kernel: recvmsg/sendmsg and
   the loopback network stack).
2. **the floor**: the same load against a minimal uvloop UDP server written here
   (:func:`floor_server`): an ``asyncio.DatagramProtocol`` that sends back a fixed
   answer with the query's ID and question spliced in, the least any Python asyncio
   DNS server does per datagram. kdns's CPU per query minus this is what kdns's own
   code costs; the floor itself is the transport (event loop + system calls).
3. **system calls per query**: ``strace -c -f`` attached to kdns for one pass through
   the query file (strace slows kdns down, but the count per query does not change).
4. **Python functions per query**: kdns under ``python -m cProfile`` for the same kind of
   load; each function's own time per answered query, rescaled so that the profile's
   total matches kdns's unprofiled user time (cProfile inflates every call; shares
   between functions are what it tells). With the C UDP loop (``kdns.server._fastudp``,
   the default where it was built), compiled answers cost no Python call of their own:
   ``Batch.receive`` runs once per batch of datagrams, and its own time is the C path's;
   the rest is what C hands back to Python (names asked for the first time, ...).

Which UDP loop ran is printed first: the C extension, or the ctypes recvmmsg loop
(``KDNS_UDP_FAST=0``, or a machine that could not build it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gen_cluster
import harness as h

QUERY_LINES = 20_000
# Functions called at least this often per answered query are per-query work (start-up
# and compile are below); the C loop runs once per batch of up to 32 datagrams, so its
# functions are named instead.
PER_QUERY_CALLS = 0.2
PER_BATCH = ("kdns.server._fastudp.Batch", "(_readable_fast)", "(_answer_declined)")


def udp_path() -> str:
    """The UDP loop the kdns under test runs, as kdns.server.transport picks it."""
    if os.environ.get("KDNS_UDP_BATCH", "1").strip() == "0":
        return "asyncio datagram endpoint (KDNS_UDP_BATCH=0)"
    if os.environ.get("KDNS_UDP_FAST", "1").strip() == "0":
        return "ctypes recvmmsg/sendmmsg (KDNS_UDP_FAST=0)"
    probe = [sys.executable, "-c", "import kdns.server._fastudp"]
    built = subprocess.run(probe, env=h.env(), cwd=h.ROOT, capture_output=True, check=False)
    if built.returncode == 0:
        return "C extension kdns.server._fastudp"
    return "ctypes recvmmsg/sendmmsg (the C extension is not built)"


# -- the floor server ------------------------------------------------------------------


def floor_server(port: int) -> None:
    """Answers every query with one A record (TTL 5, 192.0.2.1), ID and question echoed:
    no lookup, no metrics, no parsing beyond finding the end of the question."""
    import uvloop

    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04\xc0\x00\x02\x01"

    class Floor(asyncio.DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            end = data.find(0, 12) + 5
            self.transport.sendto(
                data[:2] + b"\x85\x00\x00\x01\x00\x01\x00\x00\x00\x00" + data[12:end] + answer,
                addr,
            )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(Floor, local_addr=("127.0.0.1", port))
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()

    uvloop.run(main())


# -- measurements ----------------------------------------------------------------------


def _strace(pid: int, port: int, queries: Path, log: Path) -> dict[str, Any]:
    """System calls of ``pid`` during one pass of dnsperf over ``queries``."""
    with log.open("wb") as out:
        tracer = subprocess.Popen(
            ["strace", "-c", "-f", "-p", str(pid)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        time.sleep(1.0)  # attached to every thread
        stats = h.parse_dnsperf(h.dnsperf(port, queries, 60, 4, 20, runs=1))
    finally:
        tracer.send_signal(signal.SIGINT)
        try:
            tracer.wait(20)
        except subprocess.TimeoutExpired:
            tracer.kill()
            tracer.wait()
    calls: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0].replace(".", "").isdigit() and parts[-1] != "total":
            try:
                calls[parts[-1]] = int(parts[3])
            except ValueError:
                continue
    answered = max(stats["completed"], 1)
    per_query = {k: round(v / answered, 3) for k, v in calls.items() if v / answered >= 0.01}
    return {
        "answered": stats["completed"],
        "per_query": dict(sorted(per_query.items(), key=lambda kv: -kv[1])),
        "total_per_query": round(sum(calls.values()) / answered, 2),
    }


def _profile(
    manifests: Path, probe: str, queries: Path, seconds: float, tmp: Path
) -> dict[str, Any]:
    """kdns under cProfile: its own time per function, per answered query."""
    out = tmp / "kdns.prof"
    port = h.free_port()
    cmd = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "kdns", "serve",
           "--manifests", str(manifests), "--listen", f"127.0.0.1:{port}", "--quiet"]  # fmt: skip
    with h.running(cmd, tmp / "kdns-profile.log") as proc:
        h.wait_answer(proc, port, probe, 120)
        warm = h.parse_dnsperf(h.dnsperf(port, queries, seconds, 4, 100, runs=1))
        stats = h.parse_dnsperf(h.dnsperf(port, queries, seconds, 4, 100))
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            raise h.BenchError("kdns did not stop under cProfile") from None
    if not out.exists():
        raise h.BenchError("cProfile wrote no profile (kdns did not exit normally)")
    answered = warm["completed"] + stats["completed"]
    return {"stats": pstats.Stats(str(out)), "answered": answered}


def run(args: argparse.Namespace) -> dict[str, Any]:
    h.need("dnsperf", "taskset")
    result: dict[str, Any] = {
        "machine": h.machine(),
        "seconds": args.duration,
        "udp_path": udp_path(),
    }
    with tempfile.TemporaryDirectory(prefix="kdns-breakdown-") as tmpdir:
        tmp = Path(tmpdir)
        services = gen_cluster.build(args.services)
        gen_cluster.write_manifests(services, tmp / "manifests")
        queries = h.write_queries(
            gen_cluster.normal_mix(services, QUERY_LINES), tmp / "queries.txt"
        )
        # 1. kdns as it runs; 3. its system calls.
        port = h.free_port()
        cmd = h.kdns_cmd("serve", "--manifests", str(tmp / "manifests"), "--listen",
                         f"127.0.0.1:{port}", "--quiet")  # fmt: skip
        with h.running(cmd, tmp / "kdns.log") as proc:
            h.wait_answer(proc, port, services[0].fqdn, 120)
            kdns = h.load("kdns", "normal", proc.pid, port, queries, args.duration,
                          args.warmup, proc=proc)  # fmt: skip
            if shutil.which("strace"):
                result["syscalls"] = _strace(proc.pid, port, queries, tmp / "strace.txt")
        # 2. the floor.
        port = h.free_port()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--floor-server", str(port)]
        with h.running(cmd, tmp / "floor.log") as proc:
            h.wait_answer(proc, port, services[0].fqdn, 30)
            floor = h.load("uvloop floor", "normal", proc.pid, port, queries, args.duration,
                           args.warmup, proc=proc)  # fmt: skip
        result["loads"] = [kdns.as_dict(), floor.as_dict()]
        # 4. the profile.
        prof = _profile(tmp / "manifests", services[0].fqdn, queries, args.duration, tmp)
    answered = kdns.completed
    k_user = kdns.us_per_query * (kdns.cpu_pct - kdns.sys_pct) / max(kdns.cpu_pct, 1e-9)
    k_sys = kdns.us_per_query - k_user
    f_user = floor.us_per_query * (floor.cpu_pct - floor.sys_pct) / max(floor.cpu_pct, 1e-9)
    f_sys = floor.us_per_query - f_user
    result["us_per_query"] = {
        "kdns_total": round(kdns.us_per_query, 2),
        "kdns_user": round(k_user, 2),
        "kdns_kernel": round(k_sys, 2),
        "floor_total": round(floor.us_per_query, 2),
        "floor_user": round(f_user, 2),
        "floor_kernel": round(f_sys, 2),
        "kdns_over_floor": round(kdns.us_per_query - floor.us_per_query, 2),
    }
    # The profile: own time per function per answered query, scaled to the real user time.
    stats = prof["stats"]
    profiled_answered = prof["answered"]
    rows = []
    total_tt = 0.0
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (path, line, func), (_cc, ncalls, tt, _ct, _callers) in raw.items():
        name = f"{Path(path).name}:{line}({func})"
        if ncalls < profiled_answered * PER_QUERY_CALLS and not any(
            mark in name for mark in PER_BATCH
        ):
            continue  # start-up and compile, not per query
        total_tt += tt
        rows.append((tt, ncalls, name))
    rows.sort(reverse=True)
    scale = k_user / (1e6 * total_tt / profiled_answered) if total_tt else 0.0
    result["profile"] = {
        "answered_approx": profiled_answered,
        "profiled_us_per_query": round(1e6 * total_tt / profiled_answered, 2),
        "scale_to_real_user_time": round(scale, 3),
        "top": [
            {
                "function": name,
                "calls_per_query": round(n / profiled_answered, 2),
                "us_per_query": round(1e6 * tt / profiled_answered * scale, 2),
                "share": round(tt / total_tt, 3),
            }
            for tt, n, name in rows[: args.top]
        ],
    }
    result["answered"] = answered
    return result


def render(result: dict[str, Any]) -> str:
    m, us = result["machine"], result["us_per_query"]
    lines = [
        "where one query's microseconds go (kdns serve, compiled cluster answers, normal mix)",
        f"{m.get('date', '')}; {m.get('cpus', '?')} cpus ({m.get('cpu', '?')}); load "
        f"{m.get('loadavg_1min_at_start', '?')}; Python {m.get('python', '?')}; "
        f"kdns {m.get('commit', '?')}",
        f"UDP loop: {result.get('udp_path', '?')}",
        "",
        *h.load_table(
            [
                h.Load(
                    **{k: v for k, v in d.items() if k not in ("per_cpu_second", "us_per_query")}
                )
                for d in result["loads"]
            ]
        ),
        "",
        f"server CPU per query: kdns {us['kdns_total']:.1f} µs (user {us['kdns_user']:.1f}, "
        f"kernel {us['kdns_kernel']:.1f}); uvloop floor {us['floor_total']:.1f} µs (user "
        f"{us['floor_user']:.1f}, kernel {us['floor_kernel']:.1f}); kdns's own code "
        f"{us['kdns_over_floor']:.1f} µs",
    ]
    sc = result.get("syscalls")
    if sc:
        calls = ", ".join(f"{k} {v:g}" for k, v in sc["per_query"].items())
        lines.append(f"system calls per query: {sc['total_per_query']:g} ({calls})")
    prof = result["profile"]
    lines += [
        "Python functions per query (cProfile; own time rescaled "
        f"x{prof['scale_to_real_user_time']} to the unprofiled user time; "
        f"{prof['profiled_us_per_query']} µs/query profiled):",
    ]
    for row in prof["top"]:
        lines.append(
            f"  {row['us_per_query']:6.2f} µs {100 * row['share']:5.1f} %  "
            f"{row['calls_per_query']:5.2f}/q  {row['function']}"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10, help="dnsperf run, seconds (10)")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up pass, seconds (3)")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--top", type=int, default=15, help="profile rows (15)")
    parser.add_argument("--quick", action="store_true", help="100 services, 0.5 s runs")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--floor-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.services, args.duration, args.warmup = 100, 0.5, 0.2
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.floor_server:
        floor_server(args.floor_server)
        return 0
    try:
        result = run(args)
    except h.BenchError as exc:
        sys.stderr.write(f"breakdown_bench: {exc}\n")
        return 1
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
