"""kdns against dnsmasq under dnsperf, one core each, on the same cluster.

The issue's speed bar is relative: kdns answers at least 1.3x the queries per second of
dnsmasq on one core, on a realistic mix of cluster names, and names that do not exist
(the ``ndots:5`` search-path misses that dominate real cluster traffic) cost nearly as
little as hits. A ratio measured in one run on one machine cancels out most of what
differs between machines, which an absolute figure would not.

What it does, all on 127.0.0.1 and bounded in time:

1. generates N services (:mod:`gen_cluster`) as manifests for kdns and as a hosts file
   plus ``--srv-host`` lines for dnsmasq, and two dnsperf query files (the normal mix
   and a miss-heavy mix);
2. starts kdns, then dnsmasq, each pinned to core 1 (dnsperf runs on core 0), checks
   that both answer a sample of the queries the same way, warms each up, drives it
   with dnsperf for ``--seconds`` per mix, and reads its CPU time and RSS from /proc;
3. prints a table and the kdns/dnsmasq ratio per mix, then the recompile latency at
   10,000 services (:mod:`recompile_bench`, in a fresh process so its RSS is its own).

dnsmasq runs in two set-ups. ``dnsmasq-srv`` answers exactly what kdns answers, SRV
included, but dnsmasq keeps ``--srv-host`` records in a linked list that it walks on
every query, so at 1,000 services (~5,000 SRV records) it measures that list, not a
DNS server: it falls to a few thousand queries per second. ``dnsmasq`` serves the
hosts file only (a hash table, dnsmasq at its fastest) and answers the SRV queries of
the mix with NODATA, which is cheaper than kdns's answers; the headline ratio is
against this one, so it errs on dnsmasq's side.

``make bench`` runs it with the defaults; ``--json`` gives machine-readable output.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dnslib
import gen_cluster

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
SERVER_CORE = "1"
CLIENT_CORE = "0"
TARGET_RATIO = 1.3
QUERY_LINES = 20_000
CHECK_SAMPLE = 300
BUSY_PCT = 10.0

_TYPES = {"A": 1, "AAAA": 28, "SRV": 33}
DNSMASQ_SETUPS = ("dnsmasq", "dnsmasq-srv")


class BenchError(Exception):
    """The benchmark could not run (a tool missing, a server that did not start)."""


@dataclass(frozen=True, slots=True)
class Run:
    """One dnsperf run against one server and one query mix."""

    server: str
    mix: str
    qps: float
    avg_ms: float
    max_ms: float
    stddev_ms: float
    sent: int
    completed: int
    lost: int
    rcodes: dict[str, int]
    cpu_pct: float  # server CPU time over wall time: ~100 means the core was saturated
    client_cpu_pct: float  # dnsperf's: ~100 means the load generator was the limit
    other_cpu_pct: float  # every other process's, over both cores: >10 means a busy machine
    rss_mib: float
    hwm_mib: float

    @property
    def per_cpu_second(self) -> float:
        """Queries answered per second of server CPU: what the server costs per query,
        which holds when other processes steal the core and qps alone would not."""
        return self.qps / (self.cpu_pct / 100) if self.cpu_pct > 0 else 0.0


@dataclass(slots=True)
class Report:
    services: int
    seconds: float
    clients: int
    outstanding: int
    runs: list[Run] = field(default_factory=list)
    mismatches: dict[str, list[str]] = field(default_factory=dict)
    recompile: dict[str, Any] | None = None
    machine: dict[str, str] = field(default_factory=dict)

    def run(self, server: str, mix: str) -> Run | None:
        return next((r for r in self.runs if r.server == server and r.mix == mix), None)

    def ratios(self, per_cpu: bool = False) -> dict[str, float]:
        """kdns / dnsmasq, keyed ``"<mix> vs <dnsmasq set-up>"``: of qps, or of queries
        per CPU second when ``per_cpu``."""
        out: dict[str, float] = {}
        for baseline in DNSMASQ_SETUPS:
            for mix in ("normal", "miss-heavy"):
                k, d = self.run("kdns", mix), self.run(baseline, mix)
                if k is None or d is None:
                    continue
                num, den = (k.per_cpu_second, d.per_cpu_second) if per_cpu else (k.qps, d.qps)
                if den > 0:
                    out[f"{mix} vs {baseline}"] = num / den
        return out

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratios"] = self.ratios()
        out["ratios_per_cpu_second"] = self.ratios(per_cpu=True)
        for run, raw in zip(self.runs, out["runs"], strict=True):
            raw["per_cpu_second"] = run.per_cpu_second
        out["target_ratio"] = TARGET_RATIO
        return out


# -- processes -------------------------------------------------------------------------


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (servers need both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise BenchError("no free port on 127.0.0.1")


def _query(name: str, qtype: int, ident: int) -> bytes:
    """A plain query, built by hand: the benchmark should not depend on a DNS library
    to tell whether a server is up."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    return (
        struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
        + labels
        + b"\0"
        + struct.pack("!HH", qtype, 1)
    )


def _ask(port: int, name: str, qtype: int, timeout: float = 0.5) -> bytes | None:
    ident = random.randrange(65536)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(_query(name, qtype, ident), ("127.0.0.1", port))
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            return None
    return data if data[:2] == ident.to_bytes(2, "big") else None


def _env() -> dict[str, str]:
    """The environment for kdns processes: the kdns next to this script, not whichever
    one the virtualenv has installed, so a checkout benchmarks its own code."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


def _wait_ready(proc: subprocess.Popen[bytes], port: int, probe: str, deadline: float) -> None:
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode}")
        reply = _ask(port, probe, 1)
        if reply is not None and reply[3] & 0x0F == 0:
            return
        time.sleep(0.1)
    raise BenchError(f"server on port {port} did not answer {probe} within {deadline:.0f}s")


@contextlib.contextmanager
def _running(cmd: Sequence[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` pinned to the server core; stop it (TERM, then KILL) on the way out."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, *cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=_env(),
        )
    try:
        yield proc
    except BenchError as exc:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise BenchError("\n".join([str(exc), " ".join(cmd), *tail])) from None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _kdns_cmd(manifests: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "kdns", "serve", "--manifests", str(manifests), "--listen",
            f"127.0.0.1:{port}", "--quiet"]  # fmt: skip


def _dnsmasq_cmd(hosts: Path, conf: Path | None, port: int) -> list[str]:
    """dnsmasq answering the zone from files only: misses are NXDOMAIN, nothing forwarded."""
    return [
        "dnsmasq", "-k", "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}",
        f"--conf-file={conf if conf is not None else '/dev/null'}", f"--port={port}",
        "--listen-address=127.0.0.1", "--bind-interfaces", f"--local=/{gen_cluster.ZONE}/",
        "--local-ttl=5", "--pid-file=", "--user=root", "--log-facility=-",
    ]  # fmt: skip


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_cpu() -> float:
    """CPU seconds every process on the machine has used, from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    """CPU seconds of the children waited for so far: dnsperf, once it has exited."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _rss(pid: int) -> tuple[float, float]:
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


# -- dnsperf ---------------------------------------------------------------------------


def _dnsperf(
    port: int, queries: Path, seconds: float, clients: int, outstanding: int, runs: int = 0
) -> str:
    cmd = ["taskset", "-c", CLIENT_CORE, "dnsperf", "-s", "127.0.0.1", "-p", str(port)]
    cmd += ["-d", str(queries), "-l", f"{seconds:g}", "-c", str(clients)]
    cmd += ["-q", str(outstanding), "-Q", "1000000", "-t", "2"]
    if runs:
        cmd += ["-n", str(runs)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if done.returncode != 0:
        raise BenchError(f"dnsperf failed ({done.returncode}): {done.stderr or done.stdout}")
    return done.stdout


_NUM = r"([0-9.]+)"


def parse_dnsperf(text: str) -> dict[str, Any]:
    """The figures of dnsperf's final statistics block."""

    def grab(pattern: str) -> float:
        match = re.search(pattern, text)
        if match is None:
            raise BenchError(f"dnsperf output lacks {pattern!r}:\n{text}")
        return float(match.group(1))

    latency = re.search(rf"Average Latency \(s\):\s+{_NUM} \(min {_NUM}, max {_NUM}\)", text)
    if latency is None:
        raise BenchError(f"dnsperf output lacks latency:\n{text}")
    rcodes: dict[str, int] = {}
    codes = re.search(r"Response codes:\s+(.*)", text)
    if codes is not None:
        for name, count in re.findall(r"([A-Z]+) (\d+)", codes.group(1)):
            rcodes[name] = int(count)
    return {
        "sent": int(grab(rf"Queries sent:\s+{_NUM}")),
        "completed": int(grab(rf"Queries completed:\s+{_NUM}")),
        "lost": int(grab(rf"Queries lost:\s+{_NUM}")),
        "qps": grab(rf"Queries per second:\s+{_NUM}"),
        "avg_ms": float(latency.group(1)) * 1000,
        "max_ms": float(latency.group(3)) * 1000,
        "stddev_ms": grab(rf"Latency StdDev \(s\):\s+{_NUM}") * 1000,
        "rcodes": rcodes,
    }


# -- answers ---------------------------------------------------------------------------


def _signature(reply: bytes | None) -> str:
    """rcode and the answer section as a sorted set, TTLs and order left out."""
    if reply is None:
        return "timeout"
    msg = dnslib.DNSRecord.parse(reply)
    rrs = sorted(f"{rr.rname} {dnslib.QTYPE[rr.rtype]} {rr.rdata}" for rr in msg.rr)
    return f"{dnslib.RCODE[msg.header.rcode]} " + " | ".join(rrs)


def _sample_answers(port: int, lines: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        name, qtype = line.split()
        out[line] = _signature(_ask(port, name, _TYPES[qtype], timeout=2))
    return out


# -- the benchmark ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cluster:
    manifests: Path
    hosts: Path
    conf: Path
    mixes: dict[str, Path]
    sample: list[str]
    probe: str


def generate(count: int, directory: Path) -> Cluster:
    services = gen_cluster.build(count)
    gen_cluster.write_manifests(services, directory / "manifests")
    hosts, conf = gen_cluster.write_dnsmasq(services, directory / "dnsmasq")
    normal = gen_cluster.normal_mix(services, QUERY_LINES)
    miss = gen_cluster.miss_heavy_mix(services, QUERY_LINES)
    mixes = {
        "normal": gen_cluster.write_queries(normal, directory / "queries-normal.txt"),
        "miss-heavy": gen_cluster.write_queries(miss, directory / "queries-miss.txt"),
    }
    sample = sorted(set(normal[: CHECK_SAMPLE // 2] + miss[: CHECK_SAMPLE // 2]))
    # dnsmasq runs as root here (--user=root) but reads its files again on SIGHUP only;
    # the mode bits keep it working if a packager's default user takes over.
    for path in (directory, *directory.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return Cluster(directory / "manifests", hosts, conf, mixes, sample, services[0].fqdn)


def bench_server(
    name: str, cmd: list[str], port: int, cluster: Cluster, args: argparse.Namespace, log: Path
) -> tuple[list[Run], dict[str, str]]:
    runs: list[Run] = []
    with _running(cmd, log) as proc:
        _wait_ready(proc, port, cluster.probe, deadline=120)
        answers = _sample_answers(port, cluster.sample)
        for mix, queries in cluster.mixes.items():
            # One pass through the file, so that lazily computed answers exist for kdns
            # and both servers have their sockets and caches warm.
            _dnsperf(port, queries, args.warmup, args.clients, args.outstanding, runs=1)
            cpu0, client0, all0 = _cpu_seconds(proc.pid), _children_cpu(), _machine_cpu()
            wall0 = time.monotonic()
            out = parse_dnsperf(
                _dnsperf(port, queries, args.seconds, args.clients, args.outstanding)
            )
            if proc.poll() is not None:
                raise BenchError(f"{name} exited during the {mix} run ({proc.returncode})")
            cpu = _cpu_seconds(proc.pid) - cpu0
            client = _children_cpu() - client0
            other = _machine_cpu() - all0 - cpu - client
            wall = time.monotonic() - wall0
            rss, hwm = _rss(proc.pid)
            runs.append(
                Run(
                    server=name,
                    mix=mix,
                    cpu_pct=100 * cpu / wall,
                    client_cpu_pct=100 * client / wall,
                    other_cpu_pct=max(0.0, 100 * other / wall),
                    rss_mib=rss,
                    hwm_mib=hwm,
                    **out,
                )
            )
    return runs, answers


def _machine() -> dict[str, str]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def version(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            return "?"
        text = (done.stdout or done.stderr).strip()
        return text.splitlines()[0] if text else "?"

    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": version(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]),
        "dnsmasq": version(["dnsmasq", "--version"]),
        "dnsperf": version(["dnsperf", "-h"]).split("\n")[-1],
    }


def run(args: argparse.Namespace) -> Report:
    for tool in ("dnsperf", "dnsmasq", "taskset"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            raise BenchError(f"{tool} is not installed (make debs-test installs it)")
    if (os.cpu_count() or 1) < 2:
        raise BenchError("needs two cores: the server on core 1, dnsperf on core 0")
    report = Report(args.services, args.seconds, args.clients, args.outstanding)
    report.machine = _machine()
    with tempfile.TemporaryDirectory(prefix="kdns-bench-") as tmp:
        directory = Path(tmp)
        cluster = generate(args.services, directory)
        port = _free_port()
        kdns_runs, kdns_answers = bench_server(
            "kdns", _kdns_cmd(cluster.manifests, port), port, cluster, args,
            directory / "kdns.log",
        )  # fmt: skip
        report.runs += kdns_runs
        for setup in args.dnsmasq:
            port = _free_port()
            conf = cluster.conf if setup == "dnsmasq-srv" else None
            runs, answers = bench_server(
                setup, _dnsmasq_cmd(cluster.hosts, conf, port), port, cluster, args,
                directory / f"{setup}.log",
            )  # fmt: skip
            report.runs += runs
            for line, answer in kdns_answers.items():
                if conf is None and line.endswith(" SRV"):
                    continue  # answered NODATA by design, see the module docstring
                if answer != answers.get(line):
                    report.mismatches[f"{setup}: {line}"] = [answer, answers.get(line, "none")]
    if args.recompile_services > 0:
        done = subprocess.run(
            [sys.executable, str(HERE / "recompile_bench.py"), "--json",
             "--services", str(args.recompile_services), "--changes", str(args.changes)],
            capture_output=True, text=True, check=False, cwd=ROOT, timeout=1800, env=_env(),
        )  # fmt: skip
        if done.returncode != 0:
            raise BenchError(f"recompile_bench failed:\n{done.stderr}")
        report.recompile = json.loads(done.stdout)
    return report


def render(report: Report) -> str:
    m = report.machine
    lines = [
        f"kdns vs dnsmasq: {report.services} services, {report.seconds:g}s per run, "
        f"dnsperf -c {report.clients} -q {report.outstanding}, server on core {SERVER_CORE}",
        f"{m.get('date', '')}; {m.get('cpus', '?')} cpus ({m.get('cpu', '?')}); "
        f"Python {m.get('python', '?')}; {m.get('dnsmasq', '?')[:22]}; kdns {m.get('commit', '?')}",
        "",
        f"{'server':<11} {'mix':<10} {'qps':>8} {'avg ms':>7} {'max ms':>7} {'lost':>5} "
        f"{'q/cpu-s':>8} {'cpu%':>5} {'dnsperf%':>8} {'other%':>6} {'RSS MiB':>8} "
        f"{'HWM MiB':>8}  rcodes",
    ]
    for r in report.runs:
        rcodes = " ".join(f"{k}={v * 100 / max(r.completed, 1):.0f}%" for k, v in r.rcodes.items())
        lines.append(
            f"{r.server:<11} {r.mix:<10} {r.qps:>8.0f} {r.avg_ms:>7.3f} {r.max_ms:>7.2f} "
            f"{r.lost:>5} {r.per_cpu_second:>8.0f} {r.cpu_pct:>5.0f} {r.client_cpu_pct:>8.0f} "
            f"{r.other_cpu_pct:>6.0f} {r.rss_mib:>8.1f} {r.hwm_mib:>8.1f}  {rcodes}"
        )
    busy = [r for r in report.runs if r.other_cpu_pct > BUSY_PCT]
    if busy:
        lines.append(
            f"WARNING: other processes took >{BUSY_PCT:.0f}% CPU during {len(busy)} run(s): "
            "those figures are low and the ratios unreliable; rerun on a quiet machine"
        )
    lines.append("")
    per_cpu = report.ratios(per_cpu=True)
    for key, ratio in report.ratios().items():
        verdict = "MET" if ratio >= TARGET_RATIO else "NOT MET"
        lines.append(
            f"ratio kdns/{key:<26} qps {ratio:6.2f}x  per CPU second {per_cpu[key]:6.2f}x"
            f"  (target >= {TARGET_RATIO}x: {verdict})"
        )
    normal, miss = report.run("kdns", "normal"), report.run("kdns", "miss-heavy")
    if normal is not None and miss is not None and normal.qps > 0:
        lines.append(f"kdns miss-heavy/normal {miss.qps / normal.qps:19.2f}x")
    if report.mismatches:
        lines.append(f"answers differ on {len(report.mismatches)} sampled queries, e.g.:")
        for line, (kdns_answer, dnsmasq_answer) in list(report.mismatches.items())[:3]:
            lines += [f"  {line}", f"    kdns:    {kdns_answer}", f"    dnsmasq: {dnsmasq_answer}"]
    else:
        lines.append("answers: kdns and dnsmasq agree on every sampled query")
    if report.recompile is not None:
        rc = report.recompile
        svc, eps = rc["service_change"], rc["slice_change"]
        verdict = "MET" if rc["meets_target"] else "NOT MET"
        lines += [
            "",
            f"recompile at {rc['services']} services ({rc['compiled_names']} names): "
            f"full rebuild {rc['rebuild_s'] * 1000:.0f} ms, load {rc['load_s'] * 1000:.0f} ms",
            f"  service change  median {svc['median_ms']:.2f} ms, max {svc['max_ms']:.2f} ms; "
            f"endpoint change median {eps['median_ms']:.2f} ms, max {eps['max_ms']:.2f} ms "
            f"({svc['count']} each; target < {rc['target_ms']:.0f} ms: {verdict})",
            f"  RSS after build {rc['rss_after_mib']:.1f} MiB "
            f"(+{rc['rss_after_mib'] - rc['rss_before_mib']:.1f} MiB)",
        ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="kdns vs dnsmasq under dnsperf, one core each")
    parser.add_argument("--services", type=int, default=1000, help="cluster size (1000)")
    parser.add_argument("--seconds", type=float, default=10, help="dnsperf run per mix (10)")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up per mix, seconds (3)")
    parser.add_argument("--clients", type=int, default=4, help="dnsperf -c (4)")
    parser.add_argument("--outstanding", type=int, default=100, help="dnsperf -q (100)")
    parser.add_argument(
        "--recompile-services", type=int, default=10_000, help="0 skips the recompile section"
    )
    parser.add_argument("--changes", type=int, default=50, help="single changes to time (50)")
    parser.add_argument(
        "--dnsmasq",
        nargs="*",
        choices=DNSMASQ_SETUPS,
        default=list(DNSMASQ_SETUPS),
        help="dnsmasq set-ups to run (both); see the module docstring",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except BenchError as exc:
        sys.stderr.write(f"dnsperf_bench: {exc}\n")
        return 1
    if args.json:
        json.dump(report.as_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
