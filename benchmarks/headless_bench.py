"""A large headless service: start-up, one endpoint change, and what other queries wait.

For each size (5,000 and 10,000 endpoints by default) the API emulator holds one
headless service ``web`` in namespace ``big`` (a StatefulSet's: every endpoint has a
hostname ``web-<i>``), in EndpointSlices of up to 100 endpoints each as the
EndpointSlice controller writes them, plus a small ClusterIP service
``probe.default`` with one endpoint. kdns (``kdns serve --endpoint URL``) starts
pinned to core 1; the benchmark, on core 0, reports:

* **first answer**: seconds from process start to the first answer to
  ``probe.default.svc.cluster.local``, and to ``web-<last>.web.big.svc.cluster.local``;
* **settled**: from process start until a full second of probes (below) were all
  answered within 50 ms: start-up work that blocks answers is over; and the worst
  probe latency before that;
* **change visible**: one endpoint (``web-<n/2>``) gets a new address in its slice;
  seconds from the write to the emulator until kdns answers the new address;
* **worst unrelated query**: a prober asks for ``probe.default`` every ~5 ms, one query
  at a time; the worst latency of the probes sent between the write and 0.5 s after
  the change showed (and, for reference, the worst of the second before the write).
* **longest loop step** (``--loop-steps``): kdns runs on asyncio's own loop instead of
  uvloop, every callback timed in CPU time of its thread: the longest one after the
  first answer until settled, and during the change. A query waits for at most one
  such step (plus its own), whatever the scheduler adds on a busy machine, which the
  latencies above include;
* **compile CPU**: kdns's CPU seconds until it goes idle (under 10% of a core for
  0.3 s, the prober's queries included) after start-up, and from the write until idle
  after the change: what the compile costs, whether or not queries waited for it.

Every wait is bounded (``--bound``, 120 s): a start-up or change that takes longer is
reported as "> bound" and the larger sizes are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import harness as h

NS, SERVICE, PER_SLICE = "big", "web", 100
PROBE = "probe.default.svc.cluster.local"


def address(i: int) -> str:
    return f"10.{200 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"


def endpoint_slice(index: int, members: range, moved: dict[int, str]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{SERVICE}-{index:05d}",
            "namespace": NS,
            "labels": {
                "kubernetes.io/service-name": SERVICE,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "peer", "port": 7000, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [moved.get(i, address(i))],
                "hostname": f"{SERVICE}-{i}",
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": f"node-{i % 50}",
                "targetRef": {"kind": "Pod", "name": f"{SERVICE}-{i}", "namespace": NS},
            }
            for i in members
        ],
    }


def objects(endpoints: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [h.namespace("default"), h.namespace(NS)]
    out.append({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "probe", "namespace": "default"},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.99", "clusterIPs": ["10.96.0.99"],
                 "selector": {"app": "probe"},
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    })  # fmt: skip
    out.append({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "probe-abc12", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "probe"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.244.0.9"], "conditions": {"ready": True}}],
    })  # fmt: skip
    out.append({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": NS},
        "spec": {"clusterIP": "None", "clusterIPs": ["None"], "selector": {"app": SERVICE},
                 "publishNotReadyAddresses": False,
                 "ports": [{"name": "peer", "port": 7000, "protocol": "TCP"}]},
    })  # fmt: skip
    for index, start in enumerate(range(0, endpoints, PER_SLICE)):
        out.append(endpoint_slice(index, range(start, min(start + PER_SLICE, endpoints)), {}))
    return out


class Prober(threading.Thread):
    """One query for ``PROBE`` at a time, a new one ~5 ms after the last was sent (or at
    once when the answer took longer); records (sent at, latency)."""

    def __init__(self, port: int, bound: float, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.port, self.bound, self.interval = port, bound, interval
        self.done = threading.Event()
        self.samples: list[tuple[float, float]] = []
        self.lost = 0
        self.pending: float | None = None  # when the probe now in flight was sent

    def run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("127.0.0.1", self.port))
            while not self.done.is_set():
                ident = random.randrange(65536)
                sent = self.pending = time.monotonic()
                sock.send(h.query(PROBE, 1, ident))
                latency = self._wait(sock, ident, sent)
                self.pending = None
                if latency is None and self.done.is_set():
                    break
                if latency is None:
                    self.lost += 1
                    latency = self.bound
                self.samples.append((sent, latency))
                self.done.wait(max(0.0, sent + self.interval - time.monotonic()))

    def _wait(self, sock: socket.socket, ident: int, sent: float) -> float | None:
        want = ident.to_bytes(2, "big")
        while True:
            left = sent + self.bound - time.monotonic()
            if left <= 0:
                return None
            sock.settimeout(min(left, 0.1))
            try:
                data = sock.recv(4096)
            except TimeoutError:
                if self.done.is_set():
                    return None  # stopped while waiting: not a sample
                continue
            if data[:2] == want:
                return time.monotonic() - sent

    def worst(self, since: float, until: float) -> tuple[float, int]:
        window = [lat for sent, lat in self.samples if since <= sent <= until]
        return (max(window) if window else 0.0), len(window)


def _poll(
    port: int, name: str, want: bytes | None, deadline: float, every: float,
    proc: subprocess.Popen[bytes],
) -> bool:  # fmt: skip
    """Ask ``name`` every ``every`` s until answered (with ``want`` in the reply when
    given); False at ``deadline`` (monotonic); BenchError if kdns exits."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise h.BenchError(f"kdns exited ({proc.returncode})")
        reply = h.ask(port, name, 1, timeout=max(0.2, every))
        if h.rcode(reply) == 0 and h.ancount(reply) > 0 and (want is None or want in reply):
            return True
        time.sleep(every)
    return False


SETTLED_MS = 50.0


def _settle(prober: Prober, deadline: float) -> float | None:
    """When the last second of probes were all answered within SETTLED_MS (monotonic
    time), or None at ``deadline``."""
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = time.monotonic()
        window = [lat for sent, lat in prober.samples[-400:] if sent >= now - 1.0]
        if len(window) >= 50 and max(window) < SETTLED_MS / 1000:
            return now
    return None


IDLE_WINDOW, IDLE_SHARE = 0.3, 0.1

# Runs kdns on asyncio's loop (uvloop's callbacks cannot be timed from Python) with
# each callback timed in thread CPU time; the ones over 1 ms (start time, CPU seconds,
# what) are written to $KDNS_LOOP_STEPS at exit.
_TIMED_LOOP = """
import sys
sys.modules["uvloop"] = None
sys.modules["_asyncio"] = None  # Python tasks: a slow step names its task
import asyncio.events, atexit, json, os, runpy, time
_run, _cpu, _now, _steps = asyncio.events.Handle._run, time.thread_time, time.monotonic, []
def _timed(self):
    began, cpu = _now(), _cpu()
    try:
        _run(self)
    finally:
        spent = _cpu() - cpu
        if spent > 0.001:
            _steps.append((began, spent, repr(self._callback)[:200]))
asyncio.events.Handle._run = _timed
def _dump():
    with open(os.environ["KDNS_LOOP_STEPS"], "w") as out:
        json.dump(_steps, out)
atexit.register(_dump)
sys.argv[0] = "kdns"
runpy.run_module("kdns", run_name="__main__", alter_sys=True)
"""


def _longest_step(steps: list[list[Any]], since: float, until: float) -> tuple[float, str]:
    """The longest timed loop step begun between ``since`` and ``until`` (ms, what)."""
    window = [(spent, what) for began, spent, what in steps if since <= began <= until]
    if not window:
        return 0.0, ""
    spent, what = max(window)
    return round(spent * 1000, 2), what


def _idle_cpu(pid: int, deadline: float) -> float | None:
    """kdns's CPU seconds (user + system) once it uses under IDLE_SHARE of a core for
    IDLE_WINDOW seconds, or None at ``deadline`` (monotonic)."""
    last = sum(h.cpu_seconds(pid))
    while time.monotonic() < deadline:
        time.sleep(IDLE_WINDOW)
        now = sum(h.cpu_seconds(pid))
        if now - last < IDLE_SHARE * IDLE_WINDOW:
            return now
        last = now
    return None


def one_size(endpoints: int, bound: float, tmp: Path, loop_steps: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"endpoints": endpoints, "slices": -(-endpoints // PER_SLICE)}
    steps_file = tmp / f"loop-steps-{endpoints}.json"
    windows: dict[str, tuple[float, float]] = {}  # what -> (since, until), monotonic
    last = f"{SERVICE}-{endpoints - 1}.{SERVICE}.{NS}.svc.cluster.local"
    with h.emulator(tmp / f"apiemu-{endpoints}.log") as (url, control):
        h.post_objects(control, objects(endpoints), batch=20)
        port = h.free_port()
        cmd = h.kdns_cmd("serve", "--endpoint", url, "--listen", f"127.0.0.1:{port}",
                         "--no-allocate", "--quiet")  # fmt: skip
        if loop_steps:
            cmd = [sys.executable, "-c", _TIMED_LOOP, *cmd[3:]]
            os.environ["KDNS_LOOP_STEPS"] = str(steps_file)
        started = time.monotonic()
        with h.running(cmd, tmp / f"kdns-{endpoints}.log") as proc:
            if not _poll(port, PROBE, None, started + bound, 0.005, proc):
                out["first_answer_s"] = f"> {bound:g} s"
                out["stopped"] = f"{PROBE} not answered within {bound:g} s"
                return out
            first = time.monotonic()
            out["first_answer_s"] = round(first - started, 3)
            prober = Prober(port, bound)
            prober.start()
            try:
                if not _poll(port, last, None, started + bound, 0.005, proc):
                    out["first_headless_answer_s"] = f"> {bound:g} s"
                    out["stopped"] = f"{last} not answered within {bound:g} s"
                    return out
                out["first_headless_answer_s"] = round(time.monotonic() - started, 3)
                # Start-up is over when unrelated queries are answered promptly again:
                # a full second of probes, none slower than SETTLED_MS.
                settled = _settle(prober, started + bound)
                if settled is None:
                    out["settled_s"] = f"> {bound:g} s"
                    pending = prober.pending
                    waiting = f"; a probe has waited {time.monotonic() - pending:.1f} s" if (
                        pending is not None) else ""  # fmt: skip
                    out["stopped"] = (
                        f"start-up not settled within {bound:g} s (worst answered probe "
                        f"{1000 * prober.worst(started, time.monotonic())[0]:.0f} ms{waiting})"
                    )
                    return out
                out["settled_s"] = round(settled - started, 3)
                windows["startup"] = (first, settled)
                out["startup_worst_unrelated_ms"] = round(
                    1000 * prober.worst(started, settled)[0], 2
                )
                u, s = h.cpu_seconds(proc.pid)
                out["startup_cpu_s"] = round(u + s, 2)
                idle = _idle_cpu(proc.pid, time.monotonic() + bound)
                out["startup_idle_cpu_s"] = round(idle, 2) if idle is not None else "-"
                out["rss_mib"] = round(h.rss(proc.pid)[0], 1)
                moved_index = endpoints // 2
                new_ip = "10.199.0.1"
                changed = endpoint_slice(
                    moved_index // PER_SLICE,
                    range(moved_index - moved_index % PER_SLICE,
                          min(moved_index - moved_index % PER_SLICE + PER_SLICE, endpoints)),
                    {moved_index: new_ip},
                )  # fmt: skip
                name = f"{SERVICE}-{moved_index}.{SERVICE}.{NS}.svc.cluster.local"
                cpu_written = sum(h.cpu_seconds(proc.pid))
                written = time.monotonic()
                h.post_raw(control, json.dumps(changed).encode())
                seen = _poll(port, name, socket.inet_aton(new_ip), written + bound, 0.002, proc)
                visible = time.monotonic()
                out["change_visible_s"] = round(visible - written, 4) if seen else f"> {bound:g} s"
                time.sleep(0.5)
                idle = _idle_cpu(proc.pid, time.monotonic() + bound)
                out["change_cpu_s"] = round(idle - cpu_written, 3) if idle is not None else "-"
            finally:
                prober.done.set()
                prober.join(bound + 5)
            windows["change"] = (written - 0.05, visible + 0.5)
            worst, count = prober.worst(written - 0.05, visible + 0.5)
            quiet_worst, quiet_count = prober.worst(written - 1.0, written - 0.05)
            lat = [lat for _, lat in prober.samples]
            out.update(
                worst_unrelated_ms=round(worst * 1000, 2),
                probes_during_change=count,
                quiet_worst_ms=round(quiet_worst * 1000, 2),
                probes_quiet=quiet_count,
                probe_median_ms=round(statistics.median(lat) * 1000, 3) if lat else 0.0,
                probes_lost=prober.lost,
            )
            if not seen:
                out["stopped"] = f"the change did not show within {bound:g} s"
            if proc.poll() is not None:
                raise h.BenchError(f"kdns exited ({proc.returncode})")
    if loop_steps and steps_file.exists():  # written when kdns exited
        steps = json.loads(steps_file.read_text())
        for what, (since, until) in windows.items():
            out[f"{what}_longest_step_ms"], out[f"{what}_longest_step"] = _longest_step(
                steps, since, until
            )
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    h.need("taskset")
    result: dict[str, Any] = {"bound_s": args.bound, "machine": h.machine(), "sizes": []}
    with tempfile.TemporaryDirectory(prefix="kdns-headless-") as tmpdir:
        for size in args.endpoints:
            row = one_size(size, args.bound, Path(tmpdir), args.loop_steps)
            result["sizes"].append(row)
            print(json.dumps(row), file=sys.stderr)
            if "stopped" in row:
                break
    return result


TARGETS = "targets at 5,000: first answer <= 5 s (aim 1 s), change <= 1 s, worst <= 50 ms"


def _fmt(value: Any, unit: str) -> str:
    return f"{value:g} {unit}" if isinstance(value, int | float) else str(value)


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"headless service: slices of {PER_SLICE}, kdns on core {h.SERVER_CORE}, "
        f"emulator + probers on core {h.CLIENT_CORE}, every wait bounded at "
        f"{result['bound_s']:g} s",
        f"{m.get('date', '')}; {m.get('cpus', '?')} cpus ({m.get('cpu', '?')}); load "
        f"{m.get('loadavg_1min_at_start', '?')}; Python {m.get('python', '?')}; "
        f"kdns {m.get('commit', '?')}",
        "",
        f"{'endpoints':>9} {'first answer':>12} {'headless name':>13} {'settled':>9} "
        f"{'(worst q)':>10} {'change shows':>12} {'worst other q':>13} {'(quiet)':>9} "
        f"{'CPU to settle':>13} {'(to idle)':>9} {'change CPU':>10} {'RSS MiB':>7}",
    ]
    for row in result["sizes"]:
        lines.append(
            f"{row['endpoints']:>9} {_fmt(row.get('first_answer_s', '-'), 's'):>12} "
            f"{_fmt(row.get('first_headless_answer_s', '-'), 's'):>13} "
            f"{_fmt(row.get('settled_s', '-'), 's'):>9} "
            f"{_fmt(row.get('startup_worst_unrelated_ms', '-'), 'ms'):>10} "
            f"{_fmt(row.get('change_visible_s', '-'), 's'):>12} "
            f"{_fmt(row.get('worst_unrelated_ms', '-'), 'ms'):>13} "
            f"{_fmt(row.get('quiet_worst_ms', '-'), 'ms'):>9} "
            f"{_fmt(row.get('startup_cpu_s', '-'), 's'):>13} "
            f"{_fmt(row.get('startup_idle_cpu_s', '-'), 's'):>9} "
            f"{_fmt(row.get('change_cpu_s', '-'), 's'):>10} {row.get('rss_mib', '-'):>7}"
        )
        if "startup_longest_step_ms" in row or "change_longest_step_ms" in row:
            lines.append(
                f"{'':>9} longest loop step (thread CPU): after the first answer "
                f"{_fmt(row.get('startup_longest_step_ms', '-'), 'ms')}, during the change "
                f"{_fmt(row.get('change_longest_step_ms', '-'), 'ms')}"
            )
        if "stopped" in row:
            lines.append(f"  stopped: {row['stopped']}")
    lines.append(TARGETS)
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--endpoints", type=int, nargs="+", default=[5000, 10_000])
    parser.add_argument("--bound", type=float, default=120.0, help="longest wait, seconds")
    parser.add_argument("--quick", action="store_true", help="300 endpoints, 30 s bound")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--loop-steps",
        action="store_true",
        help="time kdns's event-loop steps (on asyncio's loop, not uvloop)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.endpoints, args.bound = [300], 30.0
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except (h.BenchError, subprocess.SubprocessError) as exc:
        sys.stderr.write(f"headless_bench: {exc}\n")
        return 1
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
