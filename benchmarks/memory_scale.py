"""Memory at Kubernetes' limits: the real kdns process against a cluster of 10,000
Services and 150,000 endpoints (and 150,000 Pods for ``pods verified``), through a
forced relist and an API outage (issue 15).

kdns runs as users start it (``kdns serve --endpoint URL``, or ``kdns -conf Corefile``
with ``--via corefile``), against the API emulator in its own process
(:mod:`scale_cluster`, so the emulator's memory is not counted). Everything is on
127.0.0.1 and every wait is bounded. The phases:

1. **start**: time from exec to ``/ready`` 200; VmRSS at that moment;
2. **settled**: once kdns's CPU goes idle (background compiling done) and RSS stops
   moving: VmRSS, and VmHWM since start;
3. **throughput**: dnsperf for ``--seconds`` over names spread across the whole
   cluster (a bounded dnspython loop where dnsperf is not installed);
4. **relist**: a write kdns does not watch, compaction to the latest revision, then every
   watch cut: each watch resumes from a compacted revision, gets 410 Gone and relists.
   VmHWM through it (reset through ``/proc/PID/clear_refs`` before the phase), VmRSS
   once settled again;
5. **outage**: the API port goes down (connections dropped), one Service and its
   EndpointSlice are added and the history compacted while it is down (a restarted API
   server's watch cache holds no history), it comes back on the same port after
   ``--outage-seconds``: kdns relists; VmHWM through it, VmRSS once settled.

After every phase, ``--sample`` names (Service A, SRV, PTR of cluster and endpoint IPs,
pod A when pods are verified, NXDOMAIN) are checked against the answers computed from
the cluster's layout; during the relist and the outage one of them is asked every
0.1 s, to show whether kdns keeps answering. CoreDNS's published memory formula for the
same cluster is printed beside the figures, and the issue's targets as PASS/FAIL lines.

Run from the project root::

    .venv/bin/python benchmarks/memory_scale.py                 # 10k Services, 150k endpoints
    .venv/bin/python benchmarks/memory_scale.py --pods 150000   # + pods verified
    .venv/bin/python benchmarks/memory_scale.py --quick --json  # tiny, for the smoke test

On a machine shared with other work the timings (ready, throughput) are noisy; RSS
much less so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename
import scale_cluster
from scale_cluster import Layout

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
ZONE = "cluster.local"
MIB = 1024.0

TARGETS = {
    # (settled MiB, peak MiB through relist and outage, ready seconds)
    "default": (100.0, 130.0, 5.0),
    "pods verified": (130.0, 160.0, 5.0),
}


class BenchError(Exception):
    """The benchmark could not run to the end."""


def log(message: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


# -- /proc ------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM in MiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / MIB
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_hwm(pid: int) -> bool:
    """Reset VmHWM to the current RSS (``echo 5 > clear_refs``); False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# -- what the names must answer -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    qtype: str
    rcode: str
    answers: frozenset[str]
    """Rdata texts (TTL-insensitive); for SRV ``port target``."""


def _dashed(ip: str) -> str:
    return ip.replace(".", "-")


def service_checks(layout: Layout, n: int) -> list[Check]:
    name, ns = layout.service_name(n), layout.namespace(n)
    fqdn = f"{name}.{ns}.svc.{ZONE}."
    eps = layout.endpoint_ips(n)
    checks = []
    if layout.headless(n):
        checks.append(Check(fqdn, "A", "NOERROR", frozenset(eps)))
        srv = frozenset(f"8080 {_dashed(ip)}.{fqdn}" for ip in eps)
        checks.append(Check(f"_http._tcp.{fqdn}", "SRV", "NOERROR", srv))
    else:
        ip = layout.service_ip(n)
        checks.append(Check(fqdn, "A", "NOERROR", frozenset({ip})))
        checks.append(Check(f"_http._tcp.{fqdn}", "SRV", "NOERROR", frozenset({f"80 {fqdn}"})))
        checks.append(
            Check(dns.reversename.from_address(ip).to_text(), "PTR", "NOERROR", frozenset({fqdn}))
        )
    if eps:
        k = n % len(eps)
        checks.append(
            Check(
                dns.reversename.from_address(eps[k]).to_text(),
                "PTR",
                "NOERROR",
                frozenset({f"{_dashed(eps[k])}.{fqdn}"}),
            )
        )
    checks.append(Check(f"no-{name}.{ns}.svc.{ZONE}.", "A", "NXDOMAIN", frozenset()))
    return checks


def pod_checks(layout: Layout, p: int) -> list[Check]:
    ip, ns = layout.pod_ip(p), layout.pod_namespace(p)
    other = layout.namespace(int(ns.removeprefix("ns-")) + 1)
    checks = [Check(f"{_dashed(ip)}.{ns}.pod.{ZONE}.", "A", "NOERROR", frozenset({ip}))]
    if other != ns:  # verified: a pod IP asked in another namespace does not exist
        checks.append(Check(f"{_dashed(ip)}.{other}.pod.{ZONE}.", "A", "NXDOMAIN", frozenset()))
    return checks


def sample_checks(layout: Layout, count: int, seed: int) -> list[Check]:
    """``count`` checks spread over the whole cluster, every kind of name represented."""
    rng = random.Random(seed)
    pool: list[Check] = []
    while len(pool) < 4 * count:
        pool.extend(service_checks(layout, rng.randrange(layout.services)))
        if layout.pods:
            pool.extend(pod_checks(layout, rng.randrange(layout.pods)))
    rng.shuffle(pool)
    return pool[:count]


def outage_checks(layout: Layout) -> list[Check]:
    """The Service added while the API was down (see :func:`outage_objects`)."""
    return service_checks(_outage_layout(layout), 0)[:2]


def _outage_layout(layout: Layout) -> Layout:
    return Layout(1, layout.endpoints_per_service, 0, 1, 0)


def outage_objects(layout: Layout) -> list[dict[str, Any]]:
    """A Service and its EndpointSlice at addresses no other object uses."""
    small = _outage_layout(layout)
    svc, eps = small.service_obj(0), small.slice_obj(0)
    ip = layout.service_ip(layout.services + 1)
    svc["spec"]["clusterIP"], svc["spec"]["clusterIPs"] = ip, [ip]
    for k, endpoint in enumerate(eps["endpoints"]):
        endpoint["addresses"] = [
            layout.pod_ip(max(layout.pods, layout.services * layout.endpoints_per_service) + k)
        ]
    return [svc, eps]


def fix_outage_checks(layout: Layout, checks: list[Check]) -> list[Check]:
    ip = layout.service_ip(layout.services + 1)
    return [
        Check(c.name, c.qtype, c.rcode, frozenset({ip}) if c.qtype == "A" else c.answers)
        for c in checks
    ]


def ask(port: int, check: Check, timeout: float = 2.0) -> tuple[str, frozenset[str]]:
    query = dns.message.make_query(check.name, check.qtype)
    reply, _ = dns.query.udp_with_fallback(query, "127.0.0.1", timeout=timeout, port=port)
    texts = set()
    for rrset in reply.answer:
        for rdata in rrset:
            if rdata.rdtype == dns.rdatatype.SRV:
                texts.add(f"{rdata.port} {rdata.target.to_text().lower()}")
            elif rdata.rdtype == dns.rdatatype.from_text(check.qtype):
                texts.add(rdata.to_text().lower())
    return dns.rcode.to_text(reply.rcode()), frozenset(texts)


def verify(port: int, checks: list[Check]) -> dict[str, Any]:
    wrong = []
    for check in checks:
        try:
            got = ask(port, check)
        except (dns.exception.DNSException, OSError) as exc:
            got = (type(exc).__name__, frozenset())
        if got != (check.rcode, check.answers):
            wrong.append(
                {
                    "name": check.name,
                    "type": check.qtype,
                    "want": check.rcode,
                    "got": got[0],
                    "want_answers": sorted(check.answers)[:4],
                    "got_answers": sorted(got[1])[:4],
                }
            )
    return {"checked": len(checks), "correct": len(checks) - len(wrong), "wrong": wrong[:5]}


class Prober:
    """One sampled name every 0.1 s while a phase runs: does kdns keep answering?"""

    def __init__(self, port: int, checks: list[Check]) -> None:
        self.port, self.checks = port, checks
        self.asked = self.correct = self.timeouts = 0
        self.wrong: list[dict[str, Any]] = []
        self._next = 0.0

    def tick(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + 0.1
        check = self.checks[self.asked % len(self.checks)]
        self.asked += 1
        try:
            got = ask(self.port, check, timeout=0.5)
        except dns.exception.Timeout:
            self.timeouts += 1
            return
        except (dns.exception.DNSException, OSError) as exc:
            got = (type(exc).__name__, frozenset())
        if got == (check.rcode, check.answers):
            self.correct += 1
        elif len(self.wrong) < 3:
            self.wrong.append({"name": check.name, "type": check.qtype, "got": got[0]})

    def result(self) -> dict[str, Any]:
        return {"asked": self.asked, "correct": self.correct, "timeouts_500ms": self.timeouts,
                "wrong": self.wrong}  # fmt: skip


# -- throughput ---------------------------------------------------------------------------


def query_lines(layout: Layout, count: int, seed: int) -> list[str]:
    rng = random.Random(seed + 1)
    lines: list[str] = []
    while len(lines) < count:
        checks = service_checks(layout, rng.randrange(layout.services))
        if layout.pods:
            checks += pod_checks(layout, rng.randrange(layout.pods))
        lines.extend(f"{c.name} {c.qtype}" for c in checks)
    return lines[:count]


def throughput(port: int, lines: list[str], seconds: float, workdir: Path) -> dict[str, Any]:
    """Two runs over the same names: the first pass, when kdns meets each name for the
    first time (names it compiles only on first use cost the most here), then
    ``seconds`` of the same names again."""
    dnsperf = shutil.which("dnsperf")
    if dnsperf is None:
        return {"tool": "python, 1 outstanding", "names": len(lines),
                "first_pass": _python_throughput(port, lines, 120.0, passes=1),
                "warm": _python_throughput(port, lines, seconds)}  # fmt: skip
    queries = workdir / "queries.txt"
    queries.write_text("\n".join(lines) + "\n")
    base = [dnsperf, "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-c", "2",
            "-q", "100", "-Q", "1000000", "-t", "2"]  # fmt: skip
    return {"tool": "dnsperf -c 2 -q 100", "names": len(lines),
            "first_pass": _dnsperf([*base, "-n", "1", "-l", "120"], 150.0),
            "warm": _dnsperf([*base, "-l", f"{seconds:g}"], seconds + 30)}  # fmt: skip


def _dnsperf(argv: list[str], timeout: float) -> dict[str, Any]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    text = done.stdout

    def number(label: str) -> float:
        found = re.search(rf"{label}:\s+([\d.]+)", text)
        if found is None:
            raise BenchError(f"dnsperf printed no {label!r}: {text[-500:]} {done.stderr[-500:]}")
        return float(found.group(1))

    codes = re.search(r"Response codes:(.*)", text)
    rcodes = dict(re.findall(r"([A-Z]+) (\d+) \(", codes.group(1))) if codes else {}
    return {
        "seconds": round(number("Run time \\(s\\)"), 2),
        "qps": round(number("Queries per second")),
        "completed": int(number("Queries completed")),
        "lost": int(number("Queries lost")),
        "avg_latency_ms": round(1000 * number("Average Latency \\(s\\)"), 3),
        "rcodes": {k: int(v) for k, v in rcodes.items()},
    }


def _python_throughput(
    port: int, lines: list[str], seconds: float, passes: int | None = None
) -> dict[str, Any]:
    """One query at a time over UDP: a floor, for machines without dnsperf."""
    wires = [dns.message.make_query(*line.split()).to_wire() for line in lines]
    limit = len(wires) * passes if passes else 5_000_000
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    sock.connect(("127.0.0.1", port))
    completed = lost = 0
    start = time.perf_counter()
    deadline = start + seconds
    try:
        while time.perf_counter() < deadline and completed + lost < limit:
            sock.send(wires[(completed + lost) % len(wires)])
            try:
                sock.recv(4096)
                completed += 1
            except TimeoutError:
                lost += 1
    finally:
        sock.close()
    elapsed = time.perf_counter() - start
    return {"seconds": round(elapsed, 2), "qps": round(completed / elapsed),
            "completed": completed, "lost": lost}  # fmt: skip


# -- processes ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", 0))
        port: int = tcp.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", port))  # the DNS port is both
    return port


def http(url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="GET" if data is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            raw = reply.read()
            return reply.status, json.loads(raw) if raw.strip().startswith(
                b"{"
            ) or raw.strip().startswith(b"[") else raw
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, None


@dataclass
class Emulator:
    proc: subprocess.Popen[str]
    url: str
    control: str
    info: dict[str, Any]

    def post(self, route: str, body: Any = None) -> Any:
        code, reply = http(
            f"{self.control}/_emu/{route}", body if body is not None else {}, timeout=60
        )
        if code != 200:
            raise BenchError(f"/_emu/{route}: {code} {str(reply)[:300]}")
        return reply

    def requests(self) -> list[dict[str, Any]]:
        code, reply = http(f"{self.control}/_emu/requests", timeout=30)
        if code != 200 or not isinstance(reply, list):
            raise BenchError(f"/_emu/requests: {code}")
        return reply


@contextlib.contextmanager
def emulator(layout: Layout, timeout: float) -> Iterator[Emulator]:
    args = [
        sys.executable,
        str(HERE / "scale_cluster.py"),
        "--services",
        str(layout.services),
        "--endpoints-per-service",
        str(layout.endpoints_per_service),
        "--pods",
        str(layout.pods),
        "--namespaces",
        str(layout.namespaces),
        "--headless-every",
        str(layout.headless_every),
    ]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = _readline(proc, timeout)
        info = json.loads(line)
        yield Emulator(proc, info["url"], info["control"], info)
    finally:
        _stop(proc)


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """The emulator's first line, or BenchError after ``timeout`` seconds."""
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise BenchError(f"the emulator did not start within {timeout:g} s")
    line = proc.stdout.readline()
    if not line:
        raise BenchError(f"the emulator exited ({proc.poll()})")
    return line


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class Kdns:
    proc: subprocess.Popen[bytes]
    dns_port: int
    ready_url: str
    log_path: Path
    started: float
    argv: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise BenchError(f"kdns exited with {self.proc.returncode}:\n{tail}")


@contextlib.contextmanager
def kdns(args: argparse.Namespace, url: str, workdir: Path) -> Iterator[Kdns]:
    dns_port, ready, health = free_port(), free_port(), free_port()
    verified = args.pods > 0
    if args.via == "corefile":
        corefile = workdir / "Corefile"
        pods = "\n        pods verified" if verified else ""
        corefile.write_text(
            f".:{dns_port} {{\n    bind 127.0.0.1\n    health 127.0.0.1:{health}\n"
            f"    ready 127.0.0.1:{ready}\n"
            f"    kubernetes {ZONE} in-addr.arpa ip6.arpa {{\n        endpoint {url}{pods}\n"
            f"    }}\n}}\n"
        )
        argv = [*args.kdns, "-conf", str(corefile)]
        args.corefile_text = corefile.read_text()
    else:
        argv = [
            *args.kdns,
            "serve",
            "--endpoint",
            url,
            "--listen",
            f"127.0.0.1:{dns_port}",
            "--ready-addr",
            f"127.0.0.1:{ready}",
            "--health-addr",
            f"127.0.0.1:{health}",
            "--pods",
            "verified" if verified else "insecure",
        ]
    log_path = workdir / "kdns.log"
    with log_path.open("wb") as sink:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield Kdns(proc, dns_port, f"http://127.0.0.1:{ready}/ready", log_path, started, argv)
    finally:
        _stop(proc)


def wait_ready(server: Kdns, timeout: float) -> float:
    deadline = server.started + timeout
    while time.perf_counter() < deadline:
        server.alive()
        code, _ = http(server.ready_url, timeout=1.0)
        if code == 200:
            return time.perf_counter() - server.started
        time.sleep(0.02)
    raise BenchError(f"kdns was not ready within {timeout:g} s")


def settle(server: Kdns, timeout: float, tick: Callable[[], None] = lambda: None) -> float:
    """Wait until kdns's CPU is idle (< 3 % over 1 s) and RSS steady (< 1 MiB) twice in a
    row; returns the seconds it took (``timeout`` if it never settled)."""
    start = time.perf_counter()
    calm = 0
    last_cpu, last_rss = cpu_seconds(server.pid), proc_status(server.pid)["VmRSS"]
    while time.perf_counter() - start < timeout:
        until = time.monotonic() + 1.0
        while time.monotonic() < until:
            tick()
            time.sleep(0.02)
        server.alive()
        cpu, rss = cpu_seconds(server.pid), proc_status(server.pid)["VmRSS"]
        calm = calm + 1 if cpu - last_cpu < 0.03 and abs(rss - last_rss) < 1.0 else 0
        last_cpu, last_rss = cpu, rss
        if calm >= 2:
            return time.perf_counter() - start
    return timeout


def watched_paths(requests: list[dict[str, Any]]) -> set[str]:
    return {r["path"] for r in requests if r["query"].get("watch") in ("1", "true")}


def wait_relisted(
    emu: Emulator,
    server: Kdns,
    paths: set[str],
    since: float,
    timeout: float,
    tick: Callable[[], None],
) -> dict[str, Any]:
    """Until every watched path was listed after ``since`` and watched again after that
    list; returns the seconds that took and the pages listed."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        for _ in range(10):
            tick()
            time.sleep(0.05)
        server.alive()
        seen = [r for r in emu.requests() if r["at"] >= since and r["path"] in paths]
        lists = {p: [r["at"] for r in seen if r["path"] == p and not _is_watch(r)] for p in paths}
        done = all(
            lists[p]
            and any(_is_watch(r) and r["at"] >= max(lists[p]) for r in seen if r["path"] == p)
            for p in paths
        )
        if done:
            last = max(r["at"] for r in seen)
            return {
                "seconds": round(last - since, 2),
                "list_pages": {p.rsplit("/", 1)[1]: len(lists[p]) for p in sorted(paths)},
            }
    raise BenchError(f"kdns did not relist {sorted(paths)} within {timeout:g} s")


def _is_watch(record: dict[str, Any]) -> bool:
    return record["query"].get("watch") in ("1", "true")


# -- the run ------------------------------------------------------------------------------


def coredns_formula(layout: Layout) -> dict[str, Any]:
    """CoreDNS's deployment docs (coredns/deployment, kubernetes/Scaling_CoreDNS.md):
    MB required (default settings) = (Pods + Services) / 1000 + 54;
    MB required (w/ autopath, which needs ``pods verified``) = (Pods + Services) / 250 + 56.
    The cluster's pods are at least the endpoints' pods."""
    pods = max(layout.pods, layout.services * layout.endpoints_per_service)
    default = (pods + layout.services) / 1000 + 54
    autopath = (pods + layout.services) / 250 + 56
    return {
        "pods": pods,
        "services": layout.services,
        "default_mb": round(default, 1),
        "autopath_mb": round(autopath, 1),
        "applies": "autopath_mb" if layout.pods else "default_mb",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    layout = scale_cluster.layout_of(args)
    checks = sample_checks(layout, args.sample, args.seed)
    lines = query_lines(layout, args.names, args.seed)
    case = "pods verified" if layout.pods else "default"
    report: dict[str, Any] = {
        "case": case,
        "cluster": {
            "services": layout.services,
            "headless_every": layout.headless_every,
            "endpoints_per_service": layout.endpoints_per_service,
            "endpoints": layout.services * layout.endpoints_per_service,
            "pods": layout.pods,
            "namespaces": layout.namespaces,
        },
        "coredns_formula": coredns_formula(layout),
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_at_start": os.getloadavg(),
        },
        "phases": {},
    }
    phases: dict[str, Any] = report["phases"]
    with tempfile.TemporaryDirectory(prefix="kdns-memory-") as tmp:
        workdir = Path(tmp)
        log(f"seeding the API emulator: {layout}")
        with emulator(layout, args.timeout * 6) as emu:
            report["emulator"] = {k: emu.info[k] for k in ("objects", "list_bytes", "seed_seconds")}
            log(f"emulator ready: {emu.info}")
            with kdns(args, emu.url, workdir) as server:
                report["command"] = " ".join(
                    a if not a.startswith(str(workdir)) else "Corefile" for a in server.argv
                )
                log(f"kdns: {report['command']}")
                if getattr(args, "corefile_text", None):
                    report["corefile"] = args.corefile_text
                emu_cpu = cpu_seconds(emu.proc.pid)
                ready = wait_ready(server, args.timeout)
                mem = proc_status(server.pid)
                phases["ready"] = {
                    "seconds": round(ready, 2),
                    "rss_mib": round(mem["VmRSS"], 1),
                    "hwm_mib": round(mem["VmHWM"], 1),
                    "kdns_cpu_seconds": round(cpu_seconds(server.pid), 2),
                    "emulator_cpu_seconds": round(cpu_seconds(emu.proc.pid) - emu_cpu, 2),
                }
                log(f"ready after {ready:.2f} s, RSS {mem['VmRSS']:.1f} MiB")
                paths = watched_paths(emu.requests())

                took = settle(server, args.timeout)
                mem = proc_status(server.pid)
                phases["settled"] = {
                    "seconds_after_ready": round(took, 1),
                    "rss_mib": round(mem["VmRSS"], 1),
                    "hwm_mib": round(mem["VmHWM"], 1),
                    "answers": verify(server.dns_port, checks),
                }
                log(f"settled: {phases['settled']}")

                tput = throughput(server.dns_port, lines, args.seconds, workdir)
                tput["rss_mib_after"] = round(proc_status(server.pid)["VmRSS"], 1)
                phases["throughput"] = tput
                log(f"throughput: {tput}")
                settle(server, args.timeout)

                hwm_reset = reset_hwm(server.pid)
                report["hwm_reset_per_phase"] = hwm_reset
                prober = Prober(server.dns_port, checks)
                since = time.time()
                emu.post(
                    "objects",
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": "bench-relist", "namespace": "default"},
                        "data": {"at": str(since)},
                    },
                )
                emu.post("compact")
                cut = emu.post("cut-watches", {"how": "reset"})
                relist = wait_relisted(emu, server, paths, since, args.timeout, prober.tick)
                settle(server, args.timeout, prober.tick)
                mem = proc_status(server.pid)
                phases["relist"] = {
                    **relist,
                    "watches_cut": cut.get("cut"),
                    "hwm_mib": round(mem["VmHWM"], 1),
                    "rss_mib": round(mem["VmRSS"], 1),
                    "answers_during": prober.result(),
                    "answers": verify(server.dns_port, checks),
                }
                log(f"relist: {phases['relist']}")

                reset_hwm(server.pid)
                prober = Prober(server.dns_port, checks)
                emu.post("down")
                went_down = time.time()
                for obj in outage_objects(layout):
                    emu.post("objects", obj)
                emu.post("compact")
                until = time.monotonic() + args.outage_seconds
                while time.monotonic() < until:
                    prober.tick()
                    time.sleep(0.02)
                server.alive()
                down_mem = proc_status(server.pid)
                since = time.time()
                emu.post("up")
                relist = wait_relisted(emu, server, paths, since, args.timeout, prober.tick)
                settle(server, args.timeout, prober.tick)
                mem = proc_status(server.pid)
                added = fix_outage_checks(layout, outage_checks(layout))
                phases["outage"] = {
                    "down_seconds": round(since - went_down, 1),
                    "relist_seconds_after_up": relist["seconds"],
                    "list_pages": relist["list_pages"],
                    "rss_mib_while_down": round(down_mem["VmRSS"], 1),
                    "hwm_mib": round(mem["VmHWM"], 1),
                    "rss_mib": round(mem["VmRSS"], 1),
                    "answers_during": prober.result(),
                    "answers": verify(server.dns_port, checks + added),
                }
                log(f"outage: {phases['outage']}")
    report["host"]["loadavg_at_end"] = os.getloadavg()
    report["targets"] = targets(report)
    return report


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    settled_max, peak_max, ready_max = TARGETS[report["case"]]
    phases = report["phases"]
    peak = max(
        phases["settled"]["hwm_mib"], phases["relist"]["hwm_mib"], phases["outage"]["hwm_mib"]
    )
    answered = all(
        p["answers"]["correct"] == p["answers"]["checked"]
        for p in (phases["settled"], phases["relist"], phases["outage"])
    )
    return [
        {
            "target": f"settled RSS <= {settled_max:g} MiB",
            "value": phases["settled"]["rss_mib"],
            "pass": phases["settled"]["rss_mib"] <= settled_max,
        },
        {
            "target": f"peak (VmHWM) <= {peak_max:g} MiB through relist and outage",
            "value": peak,
            "pass": peak <= peak_max,
        },
        {
            "target": f"ready <= {ready_max:g} s",
            "value": phases["ready"]["seconds"],
            "pass": phases["ready"]["seconds"] <= ready_max,
        },
        {
            "target": "every sampled name answered correctly after each phase",
            "value": answered,
            "pass": answered,
        },
    ]


def render(report: dict[str, Any]) -> str:
    c, f, ph = report["cluster"], report["coredns_formula"], report["phases"]
    tp = ph["throughput"]
    out = [
        f"kdns memory at scale ({report['case']}): {c['services']:,} Services "
        f"(every {c['headless_every']}th headless), {c['endpoints']:,} endpoints "
        f"({c['endpoints_per_service']} per EndpointSlice), {c['pods']:,} Pods in the API, "
        f"{c['namespaces']} namespaces",
        f"command: {report['command']}",
        f"host: {report['host']['cpus']} CPUs, Python {report['host']['python']}, load average "
        f"at start {report['host']['loadavg_at_start'][0]:.2f}, at end "
        f"{report['host']['loadavg_at_end'][0]:.2f} (above ~0.5 other work shares the cores: "
        "timings are then noisy)",
        "",
        f"{'moment':<34} {'RSS MiB':>8} {'VmHWM MiB':>10}  notes",
        f"{'ready':<34} {ph['ready']['rss_mib']:>8.1f} {ph['ready']['hwm_mib']:>10.1f}  "
        f"after {ph['ready']['seconds']:.2f} s (CPU: kdns {ph['ready']['kdns_cpu_seconds']:.1f} s, "
        f"emulator {ph['ready']['emulator_cpu_seconds']:.1f} s)",
        f"{'settled':<34} {ph['settled']['rss_mib']:>8.1f} {ph['settled']['hwm_mib']:>10.1f}  "
        f"{ph['settled']['seconds_after_ready']:.0f} s after ready",
        f"{'after throughput runs':<34} {tp['rss_mib_after']:>8.1f} {'':>10}  "
        f"{tp['names']:,} names, first pass {tp['first_pass']['qps']:,} q/s, then "
        f"{tp['warm']['qps']:,} q/s for {tp['warm']['seconds']:g} s ({tp['tool']}, lost "
        f"{tp['first_pass']['lost'] + tp['warm']['lost']})",
        f"{'relist (compaction, watches cut)':<34} {ph['relist']['rss_mib']:>8.1f} "
        f"{ph['relist']['hwm_mib']:>10.1f}  relisted in {ph['relist']['seconds']:.1f} s",
        f"{'API outage and recovery':<34} {ph['outage']['rss_mib']:>8.1f} "
        f"{ph['outage']['hwm_mib']:>10.1f}  down {ph['outage']['down_seconds']:.0f} s, relisted "
        f"{ph['outage']['relist_seconds_after_up']:.1f} s after up",
        "",
        f"CoreDNS's formula for this cluster ({f['pods']:,} pods + {f['services']:,} services): "
        f"default {f['default_mb']:.0f} MB, with autopath/pods verified {f['autopath_mb']:.0f} MB "
        f"(applies: {f['applies'].removesuffix('_mb')})",
    ]
    for name in ("settled", "relist", "outage"):
        a = ph[name]["answers"]
        during = ph[name].get("answers_during")
        extra = (
            f"; asked every 0.1 s while it ran: {during['correct']}/{during['asked']} correct, "
            f"{during['timeouts_500ms']} unanswered within 0.5 s"
            + (f", wrong e.g. {during['wrong'][0]}" if during["wrong"] else "")
            if during
            else ""
        )
        out.append(
            f"answers after {name}: {a['correct']}/{a['checked']} correct{extra}"
            + (f"  e.g. {a['wrong'][0]}" if a["wrong"] else "")
        )
    if not report.get("hwm_reset_per_phase"):
        out.append("note: /proc/PID/clear_refs not writable: VmHWM is since start")
    out.append("")
    for t in report["targets"]:
        out.append(f"{'PASS' if t['pass'] else 'FAIL'}  {t['target']}  ({t['value']})")
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    scale_cluster.add_layout_arguments(parser)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny cluster (300 Services, 5 endpoints each, pods scaled to "
        "match), 1 s phases: for the smoke test",
    )
    parser.add_argument(
        "--via",
        choices=("auto", "serve", "corefile"),
        default="auto",
        help="kdns serve --endpoint, or kdns -conf Corefile (auto: serve, "
        "and the Corefile for pods verified: serve does not watch Pods)",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="throughput run (3)")
    parser.add_argument("--names", type=int, default=5_000,
                        help="distinct names in the throughput runs (5,000)")  # fmt: skip
    parser.add_argument("--outage-seconds", type=float, default=5.0)
    parser.add_argument("--sample", type=int, default=200, help="names checked per phase")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--timeout", type=float, default=120.0, help="bound of each wait")
    parser.add_argument(
        "--kdns",
        default=str(ROOT / ".venv" / "bin" / "kdns"),
        help="the kdns command (split on spaces)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    args.kdns = args.kdns.split()
    if args.via == "auto":
        args.via = "corefile" if args.pods > 0 else "serve"
    if args.quick:
        args.pods = min(args.pods, 1_500)
        args.services, args.endpoints_per_service = 300, 5
        args.namespaces, args.seconds, args.outage_seconds = 10, 1.0, 1.0
        args.sample = min(args.sample, 100)
        args.timeout = min(args.timeout, 60.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except BenchError as exc:
        sys.stderr.write(f"memory_scale: {exc}\n")
        return 1
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
