"""What every benchmark here shares: processes pinned to a core, dnsperf, /proc accounting,
and the peers (nsd, unbound, dnsmasq, the API emulator) started from their Debian packages.

Nothing here imports kdns: kdns is driven as a process (``python -m kdns``), so the
benchmarks keep working while kdns's modules move. The API emulator is the one piece of
the test tree used, and only as a process; :func:`emulator_module` is the one place
that knows where it lives.

Core layout (two cores): the server under test runs alone on :data:`SERVER_CORE`;
dnsperf, the authoritative upstream (nsd), the API emulator, the churn driver and the
probers share :data:`CLIENT_CORE`. The server's CPU per query is therefore its own.
"""

from __future__ import annotations

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
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
SERVER_CORE = "1"
CLIENT_CORE = "0"
BUSY_PCT = 10.0  # other processes' CPU share above which a run's figures are unreliable
SBIN = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"

TYPES = {"A": 1, "AAAA": 28, "SRV": 33, "HINFO": 13}


class BenchError(Exception):
    """The benchmark could not run (a tool missing, a server that did not start)."""


def need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool, path=SBIN) is None:
            raise BenchError(f"{tool} is not installed (make debs-bench installs it)")
    if (os.cpu_count() or 1) < 2:
        raise BenchError("needs two cores: the server on core 1, dnsperf on core 0")


def tool(name: str) -> str:
    found = shutil.which(name, path=SBIN)
    if found is None:
        raise BenchError(f"{name} is not installed (make debs-bench installs it)")
    return found


# -- sockets ---------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host`` (servers need both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise BenchError(f"no free port on {host}")


def query(name: str, qtype: int, ident: int) -> bytes:
    """A plain query with RD set, built by hand: the benchmark should not depend on a
    DNS library to tell whether a server is up."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    return (
        struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
        + labels
        + b"\0"
        + struct.pack("!HH", qtype, 1)
    )


def ask(
    port: int, name: str, qtype: int, timeout: float = 0.5, host: str = "127.0.0.1"
) -> bytes | None:
    ident = random.randrange(65536)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(query(name, qtype, ident), (host, port))
        deadline = time.monotonic() + timeout
        while True:
            try:
                data, _ = sock.recvfrom(65535)
            except TimeoutError:
                return None
            if data[:2] == ident.to_bytes(2, "big"):
                return data
            if time.monotonic() > deadline:
                return None


def rcode(reply: bytes | None) -> int:
    return -1 if reply is None else reply[3] & 0x0F


def ancount(reply: bytes | None) -> int:
    return 0 if reply is None else int.from_bytes(reply[6:8], "big")


# -- processes -------------------------------------------------------------------------


def env() -> dict[str, str]:
    """The environment for kdns processes: the kdns next to this script, not whichever
    one the virtualenv has installed, so a checkout benchmarks its own code."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


def kdns_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "kdns", *args]


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running(
    cmd: Sequence[str], log: Path, core: str = SERVER_CORE
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` pinned to ``core``; stop it (TERM, then KILL) on the way out. A
    failure inside the block gets the tail of the process's log attached."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["taskset", "-c", core, *cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env(),
        )
    try:
        yield proc
    except BenchError as exc:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise BenchError("\n".join([str(exc), " ".join(cmd), *tail])) from None
    finally:
        stop(proc)


def wait_answer(
    proc: subprocess.Popen[Any] | None,
    port: int,
    name: str,
    deadline: float,
    qtype: int = 1,
    every: float = 0.1,
    host: str = "127.0.0.1",
) -> float:
    """Seconds until ``name`` answers NOERROR with an answer; BenchError after ``deadline``."""
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode}")
        reply = ask(port, name, qtype, timeout=min(0.5, max(every, 0.05)), host=host)
        if rcode(reply) == 0 and ancount(reply) > 0:
            return time.monotonic() - start
        time.sleep(every)
    raise BenchError(f"server on {host}:{port} did not answer {name} within {deadline:.0f}s")


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (nsd serves from forked children)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += parents.get(current, [])
    return out


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process and its descendants, from /proc/PID/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for member in _tree(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        user += int(fields[11]) / tick
        system += int(fields[12]) / tick
    return user, system


def machine_cpu() -> float:
    """CPU seconds every process on the machine has used, from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds of the children waited for so far: dnsperf, once it has exited."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rss(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB, summed over the process and its descendants (shared pages
    of forked children count twice: an upper bound)."""
    total = {"VmRSS": 0.0, "VmHWM": 0.0}
    for member in _tree(pid):
        try:
            text = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key in total:
                total[key] += int(value.split()[0]) / 1024
    return total["VmRSS"], total["VmHWM"]


# -- dnsperf ---------------------------------------------------------------------------


def dnsperf(
    port: int, queries: Path, seconds: float, clients: int, outstanding: int, runs: int = 0
) -> str:
    cmd = ["taskset", "-c", CLIENT_CORE, "dnsperf", "-s", "127.0.0.1", "-p", str(port)]
    cmd += ["-d", str(queries), "-l", f"{seconds:g}", "-c", str(clients)]
    cmd += ["-q", str(outstanding), "-Q", "1000000", "-t", "2"]
    if runs:
        cmd += ["-n", str(runs)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
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


@dataclass(frozen=True, slots=True)
class Load:
    """One dnsperf run against one server: its figures and what it cost the server."""

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
    cpu_pct: float  # server CPU over wall time: ~100 means its core was saturated
    sys_pct: float  # the kernel's part of it (system calls, the network stack)
    client_cpu_pct: float  # dnsperf's: ~100 means the load generator was the limit
    other_cpu_pct: float  # everything else, both cores: > BUSY_PCT is a busy machine
    rss_mib: float
    hwm_mib: float

    @property
    def per_cpu_second(self) -> float:
        """Queries answered per second of server CPU: what a query costs the server,
        which holds when other processes steal the core and qps alone would not."""
        return self.qps / (self.cpu_pct / 100) if self.cpu_pct > 0 else 0.0

    @property
    def us_per_query(self) -> float:
        return 1e6 / self.per_cpu_second if self.per_cpu_second > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = {f: getattr(self, f) for f in self.__slots__}
        out["per_cpu_second"] = self.per_cpu_second
        out["us_per_query"] = self.us_per_query
        return out


def load(
    server: str,
    mix: str,
    pid: int,
    port: int,
    queries: Path,
    seconds: float,
    warmup: float,
    clients: int = 4,
    outstanding: int = 100,
    proc: subprocess.Popen[Any] | None = None,
) -> Load:
    """Warm up (one pass through the file, at most ``warmup`` seconds), then drive the
    server with dnsperf for ``seconds`` and account for everyone's CPU."""
    if warmup > 0:
        dnsperf(port, queries, warmup, clients, outstanding, runs=1)
    (u0, s0), client0, all0 = cpu_seconds(pid), children_cpu(), machine_cpu()
    wall0 = time.monotonic()
    out = parse_dnsperf(dnsperf(port, queries, seconds, clients, outstanding))
    if proc is not None and proc.poll() is not None:
        raise BenchError(f"{server} exited during the {mix} run ({proc.returncode})")
    u1, s1 = cpu_seconds(pid)
    cpu = (u1 - u0) + (s1 - s0)
    client = children_cpu() - client0
    other = machine_cpu() - all0 - cpu - client
    wall = time.monotonic() - wall0
    resident, peak = rss(pid)
    return Load(
        server=server,
        mix=mix,
        cpu_pct=100 * cpu / wall,
        sys_pct=100 * (s1 - s0) / wall,
        client_cpu_pct=100 * client / wall,
        other_cpu_pct=max(0.0, 100 * other / wall),
        rss_mib=resident,
        hwm_mib=peak,
        **out,
    )


def load_table(loads: Sequence[Load]) -> list[str]:
    lines = [
        f"{'server':<16} {'mix':<12} {'qps':>8} {'avg ms':>7} {'max ms':>7} {'lost':>5} "
        f"{'µs/q':>6} {'cpu%':>5} {'sys%':>5} {'dnsperf%':>8} {'other%':>6} {'RSS MiB':>7}  rcodes"
    ]
    for r in loads:
        rcodes = " ".join(f"{k}={v * 100 / max(r.completed, 1):.0f}%" for k, v in r.rcodes.items())
        lines.append(
            f"{r.server:<16} {r.mix:<12} {r.qps:>8.0f} {r.avg_ms:>7.3f} {r.max_ms:>7.2f} "
            f"{r.lost:>5} {r.us_per_query:>6.1f} {r.cpu_pct:>5.0f} {r.sys_pct:>5.0f} "
            f"{r.client_cpu_pct:>8.0f} {r.other_cpu_pct:>6.0f} {r.rss_mib:>7.1f}  {rcodes}"
        )
    busy = [r for r in loads if r.other_cpu_pct > BUSY_PCT]
    if busy:
        lines.append(
            f"WARNING: other processes took >{BUSY_PCT:.0f}% CPU during {len(busy)} run(s): "
            "those figures are low and the ratios unreliable; rerun on a quiet machine"
        )
    return lines


def ratio(num: Load | None, den: Load | None) -> dict[str, float] | None:
    """``num`` / ``den``: of qps, and of queries per server CPU second."""
    if num is None or den is None or den.qps <= 0 or den.per_cpu_second <= 0:
        return None
    return {"qps": num.qps / den.qps, "per_cpu": num.per_cpu_second / den.per_cpu_second}


def ratio_line(label: str, value: dict[str, float] | None, target: str = "") -> str:
    if value is None:
        return f"ratio {label:<40} n/a"
    tail = f"  ({target})" if target else ""
    return (
        f"ratio {label:<40} qps {value['qps']:6.2f}x  per CPU second {value['per_cpu']:6.2f}x{tail}"
    )


def write_queries(lines: Sequence[str], path: Path) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


# -- machine ---------------------------------------------------------------------------


def _version(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine() -> dict[str, str]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load1 = ""
    with contextlib.suppress(OSError):
        load1 = Path("/proc/loadavg").read_text().split()[0]
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "loadavg_1min_at_start": load1,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": _version(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]),
        "dnsmasq": _version([tool("dnsmasq") if shutil.which("dnsmasq", path=SBIN) else "dnsmasq",
                             "--version"])[:26],
        "dnsperf": _version(["dnsperf", "-h"]).split("\n")[-1],
    }  # fmt: skip


def version_of(name: str, *args: str) -> str:
    found = shutil.which(name, path=SBIN)
    return _version([found, *args]) if found else "not installed"


# -- peers -----------------------------------------------------------------------------


def nsd_conf(directory: Path, listen: str, port: int, zones: dict[str, Path]) -> Path:
    """An nsd configuration: one server process, no chroot, no privilege drop, no remote
    control, the zones read from files at start."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        "server:",
        f"  ip-address: {listen}@{port}",
        "  server-count: 1",
        '  username: ""',
        '  chroot: ""',
        f'  zonesdir: "{directory}"',
        '  database: ""',
        f'  zonelistfile: "{directory}/zone.list"',
        f'  xfrdfile: "{directory}/xfrd.state"',
        f'  pidfile: "{directory}/nsd.pid"',
        f'  logfile: "{directory}/nsd.log"',
        "  verbosity: 0",
        "  hide-version: yes",
        "  refuse-any: yes",
        "  round-robin: no",
        "  rrl-ratelimit: 0",  # response rate limiting would throttle dnsperf's one source
        "  rrl-whitelist-ratelimit: 0",
        "remote-control:",
        "  control-enable: no",
    ]
    for name, path in zones.items():
        lines += ["zone:", f"  name: {name}", f"  zonefile: {path}"]
    conf = directory / "nsd.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def nsd_cmd(conf: Path) -> list[str]:
    return [tool("nsd"), "-d", "-c", str(conf)]


def soa_lines(origin: str, ttl: int, minimum: int) -> list[str]:
    return [
        f"$ORIGIN {origin}.",
        f"$TTL {ttl}",
        f"@ IN SOA ns.dns.{origin}. hostmaster.{origin}. 1 7200 1800 86400 {minimum}",
        f"@ IN NS ns.dns.{origin}.",
        "ns.dns IN A 127.0.0.2",
    ]


def unbound_conf(directory: Path, port: int, upstream: str, local_zone: str) -> Path:
    """unbound as a forwarding cache, one thread, no validation; ``local_zone`` answered
    NXDOMAIN locally (``static``), as a node-local cache in front of cluster DNS would
    not, but as every peer here must to be compared on the ndots:5 mix."""
    directory.mkdir(parents=True, exist_ok=True)
    host, _, up_port = upstream.rpartition(":")
    lines = [
        "server:",
        f"  interface: 127.0.0.1@{port}",
        f"  port: {port}",
        "  num-threads: 1",
        "  do-daemonize: no",
        '  username: ""',
        '  chroot: ""',
        f'  directory: "{directory}"',
        '  pidfile: ""',
        "  use-syslog: no",
        '  logfile: ""',
        "  verbosity: 0",
        "  do-ip6: no",
        "  do-not-query-localhost: no",
        "  access-control: 127.0.0.0/8 allow",
        '  module-config: "iterator"',
        "  so-reuseport: no",
        "  msg-cache-size: 16m",
        "  rrset-cache-size: 32m",
        "  minimal-responses: yes",
        f'  local-zone: "{local_zone}." static',
        "forward-zone:",
        '  name: "."',
        f"  forward-addr: {host}@{up_port}",
        "remote-control:",
        "  control-enable: no",
    ]
    conf = directory / "unbound.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def unbound_cmd(conf: Path) -> list[str]:
    return [tool("unbound"), "-d", "-c", str(conf)]


def dnsmasq_forward_cmd(port: int, upstream: str, local_zone: str, cache: int) -> list[str]:
    """dnsmasq as a forwarding cache (``cache`` entries, 0 = every query forwarded),
    ``local_zone`` answered NXDOMAIN locally."""
    host, _, up_port = upstream.rpartition(":")
    return [
        tool("dnsmasq"), "-k", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
        f"--server={host}#{up_port}", f"--local=/{local_zone}/", f"--cache-size={cache}",
        "--dns-forward-max=1000", f"--port={port}", "--listen-address=127.0.0.1",
        "--bind-interfaces", "--pid-file=", "--user=root", "--log-facility=-",
    ]  # fmt: skip


def kubeadm_corefile(path: Path, port: int, source: str, upstream: str, cache: bool = True) -> Path:
    """kubeadm's default Corefile (kubeadm.Corefile in Corefile.compat/examples), on
    loopback ports: the same plugins in the same order. ``source`` is the kubernetes
    block's data source (``manifests DIR`` or ``endpoint URL``). Differences, all
    outside the query path: health without ``lameduck 5s`` (so that a stop takes no 5 s)
    and health/ready/prometheus on free loopback ports. ``cache=False`` drops the cache
    plugin: every external query is forwarded."""
    health, ready, prom = free_port(), free_port(), free_port()
    cache_block = (
        "    cache 30 {\n"
        "       disable success cluster.local\n"
        "       disable denial cluster.local\n"
        "    }\n"
        if cache
        else ""
    )
    path.write_text(
        f""".:{port} {{
    bind 127.0.0.1
    errors
    health 127.0.0.1:{health}
    ready 127.0.0.1:{ready}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
       {source}
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    prometheus 127.0.0.1:{prom}
    forward . {upstream} {{
       max_concurrent 1000
    }}
{cache_block}    loop
    reload
    loadbalance
}}
"""
    )
    return path


# -- the API emulator (tests/apiemu, or tests/support/apiemu after the restructuring) --


def emulator_module() -> str:
    """The API emulator's module, wherever the test tree keeps it."""
    for module in ("tests.support.apiemu", "tests.apiemu"):
        if (ROOT / module.replace(".", "/") / "__main__.py").exists():
            return module
    raise BenchError("the API emulator (tests/apiemu or tests/support/apiemu) is missing")


@contextlib.contextmanager
def emulator(log: Path) -> Iterator[tuple[str, str]]:
    """The API emulator in its own process on the client core: (API URL, control URL)."""
    with log.open("wb") as err:
        proc = subprocess.Popen(
            ["taskset", "-c", CLIENT_CORE, sys.executable, "-m", emulator_module(),
             "--bookmark-interval", "5"],
            stdout=subprocess.PIPE, stderr=err, cwd=ROOT, env=env(),
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise BenchError(f"the API emulator did not start: {log.read_text()[-2000:]}")
        urls = json.loads(line)
        yield urls["url"], urls["control"]
    finally:
        stop(proc)


def post_objects(control: str, objects: Sequence[dict[str, Any]], batch: int = 300) -> None:
    """Create or replace objects through the emulator's side channel, in batches that
    stay under its request body limit."""
    for start in range(0, len(objects), batch):
        body = json.dumps(list(objects[start : start + batch])).encode()
        post_raw(control, body)


def post_raw(control: str, body: bytes) -> None:
    request = urllib.request.Request(
        f"{control}/_emu/objects",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        if resp.status != 200:
            raise BenchError(f"emulator refused objects: {resp.status}")
        resp.read()


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
