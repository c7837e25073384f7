"""External names and churn: the traffic a cluster really sends, kdns against its peers.

**External names.** nsd (Debian) is the authoritative upstream on 127.0.0.2, serving a
zone of 1,000 names (``www<i>.example.org``, A records, TTL 3600). Against it:

* kdns with kubeadm's default Corefile plugin set (:func:`harness.kubeadm_corefile`):
  ``kubernetes`` (1,000 services from a manifests folder) + ``forward`` to nsd +
  ``cache 30``; and the same without ``cache`` (every external query forwarded);
* dnsmasq as a forwarding cache (``--cache-size=10000``) and with ``--cache-size=0``;
* unbound as a forwarding cache (one thread, no validation).

Every peer answers ``cluster.local`` itself (dnsmasq ``--local``, unbound a ``static``
local zone, kdns its kubernetes plugin), so all three see the same traffic. Mixes:

* ``hits``: the 1,000 names, A, after a warm-up pass: cache hits;
* ``ndots``: what a pod with ``ndots:5`` sends for an external name: for each name,
  ``<name>.<ns>.svc.cluster.local``, ``<name>.svc.cluster.local``,
  ``<name>.cluster.local`` (3 NXDOMAIN from the cluster zone), then ``<name>`` (a cache
  hit), in that order, A;
* ``forwarded``: the 1,000 names against the set-ups without a cache.

**Churn.** The API emulator holds the same 1,000 services; kdns (the same Corefile,
``kubernetes { endpoint URL }``) runs the ``ndots`` mix quiet, then while a driver
replaces ``--rate`` EndpointSlices per second (one endpoint's address changed per
write, round-robin over the services), and reports both and their ratio.

The server under test is alone on core 1; dnsperf, nsd, the emulator and the churn
driver share core 0. Forwarded queries therefore cost nsd's CPU on the client core.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gen_cluster
import harness as h

EXTERNAL_ZONE = "example.org"
UPSTREAM_HOST = "127.0.0.2"
QUERY_LINES = 20_000


@dataclass(slots=True)
class Result:
    names: int
    services: int
    seconds: float
    loads: list[h.Load] = field(default_factory=list)
    churn: list[dict[str, Any]] = field(default_factory=list)
    machine: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # a part that could not run

    def get(self, server: str, mix: str) -> h.Load | None:
        return next((r for r in self.loads if r.server == server and r.mix == mix), None)

    def ratios(self) -> dict[str, dict[str, float] | None]:
        pairs = {
            "kdns hits/compiled": ("kdns", "hits", "kdns", "compiled"),
            "hits kdns/dnsmasq": ("kdns", "hits", "dnsmasq", "hits"),
            "hits kdns/unbound": ("kdns", "hits", "unbound", "hits"),
            "ndots kdns/dnsmasq": ("kdns", "ndots", "dnsmasq", "ndots"),
            "ndots kdns/unbound": ("kdns", "ndots", "unbound", "ndots"),
            "forwarded kdns/dnsmasq": ("kdns-nocache", "forwarded", "dnsmasq-nocache",
                                       "forwarded"),
            "churn kdns/quiet": ("kdns-churn", "ndots+churn", "kdns-churn", "ndots quiet"),
        }  # fmt: skip
        out: dict[str, dict[str, float] | None] = {}
        for key, (a, ma, b, mb) in pairs.items():
            value = h.ratio(self.get(a, ma), self.get(b, mb))
            if value is not None:
                out[key] = value
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "names": self.names,
            "services": self.services,
            "seconds": self.seconds,
            "loads": [r.as_dict() for r in self.loads],
            "churn": self.churn,
            "ratios": self.ratios(),
            "machine": self.machine,
            "errors": self.errors,
        }


# -- data ------------------------------------------------------------------------------


def external_names(count: int) -> list[str]:
    return [f"www{i}.{EXTERNAL_ZONE}" for i in range(count)]


def write_external_zone(names: Sequence[str], directory: Path) -> Path:
    lines = h.soa_lines(EXTERNAL_ZONE, 3600, 3600)
    for i, name in enumerate(names):
        label = name.removesuffix(f".{EXTERNAL_ZONE}")
        lines.append(f"{label} IN A 198.18.{(i >> 8) & 255}.{i & 255}")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{EXTERNAL_ZONE}.zone"
    path.write_text("\n".join(lines) + "\n")
    return path


def hits_mix(names: Sequence[str], lines: int, seed: int = 3) -> list[str]:
    """Every name's A record, each pass over the names in a new order: cache hits for
    external names, compiled positive answers for services."""
    rng = random.Random(seed)
    order = list(names)
    out: list[str] = []
    while len(out) < lines:
        rng.shuffle(order)
        out += [f"{n} A" for n in order]
    return out[:lines]


def ndots_mix(names: Sequence[str], spaces: Sequence[str], lines: int, seed: int = 4) -> list[str]:
    """A pod's ``ndots:5`` search path for external names: 3 cluster-zone misses, then
    the name, in the order the resolver sends them."""
    rng = random.Random(seed)
    zone = gen_cluster.ZONE
    out: list[str] = []
    while len(out) < lines:
        name, ns = rng.choice(names), rng.choice(spaces)
        out += [f"{name}.{ns}.svc.{zone} A", f"{name}.svc.{zone} A", f"{name}.{zone} A",
                f"{name} A"]  # fmt: skip
    return out[:lines]


def cluster_objects(services: Sequence[gen_cluster.Service]) -> list[dict[str, Any]]:
    """The cluster as API objects for the emulator: namespaces, services, slices."""
    objects: list[dict[str, Any]] = [
        h.namespace(ns) for ns in sorted({s.namespace for s in services})
    ]
    for svc in services:
        objects += [gen_cluster.service_manifest(svc), gen_cluster.slice_manifest(svc)]
    return objects


# -- churn driver ----------------------------------------------------------------------


class Churn(threading.Thread):
    """Replaces ``rate`` EndpointSlices per second through the emulator until stopped,
    and never more than ``limit`` of them."""

    def __init__(
        self, control: str, services: Sequence[gen_cluster.Service], rate: float, limit: int
    ) -> None:
        super().__init__(daemon=True)
        self.control, self.services, self.rate, self.limit = control, services, rate, limit
        self.done = threading.Event()
        self.writes = 0
        self.errors = 0
        self.late = 0  # writes that started behind schedule: the driver could not keep up
        self.started_at = 0.0
        self.stopped_at = 0.0

    def run(self) -> None:
        interval = 1.0 / self.rate
        self.started_at = next_at = time.monotonic()
        n = 0
        while not self.done.is_set() and n < self.limit:
            svc = self.services[(n * 7919) % len(self.services)]
            body = gen_cluster.slice_manifest(svc)
            body["endpoints"][0]["addresses"] = [f"10.250.{(n >> 8) & 255}.{n & 255}"]
            try:
                h.post_raw(self.control, json.dumps(body).encode())
                self.writes += 1
            except Exception:  # counted and reported, never fatal
                self.errors += 1
            n += 1
            next_at += interval
            pause = next_at - time.monotonic()
            if pause < 0:
                self.late += 1
            self.done.wait(max(0.0, pause))
        self.stopped_at = time.monotonic()

    def achieved(self) -> float:
        span = self.stopped_at - self.started_at
        return self.writes / span if span > 0 else 0.0


# -- the benchmark ---------------------------------------------------------------------


def _ready(proc: Any, port: int, probe: str, external: str, deadline: float) -> None:
    h.wait_answer(proc, port, probe, deadline)
    h.wait_answer(proc, port, external, deadline)


def run_external(
    args: argparse.Namespace, tmp: Path, upstream: str, names: list[str],
    mixes: dict[str, Path], cluster: tuple[Path, str], result: Result,
) -> None:  # fmt: skip
    manifests, probe = cluster
    seconds, warmup = args.duration, args.warmup

    def drive(name: str, cmd: list[str], port: int, wanted: Sequence[str]) -> None:
        with h.running(cmd, tmp / f"{name}.log") as proc:
            _ready(proc, port, probe if name.startswith("kdns") else names[0], names[0], 120)
            for mix in wanted:
                result.loads.append(
                    h.load(name, mix, proc.pid, port, mixes[mix], seconds, warmup, proc=proc)
                )
                print(h.load_table(result.loads[-1:])[1], file=sys.stderr)

    port = h.free_port()
    corefile = h.kubeadm_corefile(tmp / "Corefile", port, f"manifests {manifests}", upstream)
    drive("kdns", h.kdns_cmd("-conf", str(corefile), "-quiet"), port,
          ("compiled", "hits", "ndots"))  # fmt: skip
    port = h.free_port()
    drive("dnsmasq", h.dnsmasq_forward_cmd(port, upstream, gen_cluster.ZONE, 10_000), port,
          ("hits", "ndots"))  # fmt: skip
    port = h.free_port()
    conf = h.unbound_conf(tmp / "unbound", port, upstream, gen_cluster.ZONE)
    drive("unbound", h.unbound_cmd(conf), port, ("hits", "ndots"))
    port = h.free_port()
    corefile = h.kubeadm_corefile(
        tmp / "Corefile.nocache", port, f"manifests {manifests}", upstream, cache=False
    )
    drive("kdns-nocache", h.kdns_cmd("-conf", str(corefile), "-quiet"), port, ("forwarded",))
    port = h.free_port()
    drive("dnsmasq-nocache", h.dnsmasq_forward_cmd(port, upstream, gen_cluster.ZONE, 0), port,
          ("forwarded",))  # fmt: skip


def run_churn(
    args: argparse.Namespace, tmp: Path, upstream: str, names: list[str], ndots: Path,
    services: list[gen_cluster.Service], result: Result,
) -> None:  # fmt: skip
    seconds = args.duration
    with h.emulator(tmp / "apiemu.log") as (url, control):
        h.post_objects(control, cluster_objects(services))
        port = h.free_port()
        corefile = h.kubeadm_corefile(tmp / "Corefile.churn", port, f"endpoint {url}", upstream)
        cmd = h.kdns_cmd("-conf", str(corefile), "-quiet")
        with h.running(cmd, tmp / "kdns-churn.log") as proc:
            _ready(proc, port, services[0].fqdn, names[0], 120)
            quiet = h.load("kdns-churn", "ndots quiet", proc.pid, port, ndots, seconds,
                           args.warmup, proc=proc)  # fmt: skip
            result.loads.append(quiet)
            print(h.load_table([quiet])[1], file=sys.stderr)
            for rate in args.rates:
                # The first rate's run is the one the ratio reads; others carry the rate.
                mix = "ndots+churn" if rate == args.rates[0] else f"ndots+churn{rate:g}/s"
                driver = Churn(control, services, rate, int(rate * (seconds + 30)))
                driver.start()
                try:
                    time.sleep(1.0)  # the driver at its pace before dnsperf starts
                    busy = h.load("kdns-churn", mix, proc.pid, port, ndots, seconds, 0,
                                  proc=proc)  # fmt: skip
                finally:
                    driver.done.set()
                    driver.join(10)
                result.loads.append(busy)
                print(h.load_table([busy])[1], file=sys.stderr)
                result.churn.append({
                    "rate": rate, "writes": driver.writes, "errors": driver.errors,
                    "late": driver.late, "achieved_per_s": round(driver.achieved(), 1),
                    "qps_ratio_to_quiet": busy.qps / quiet.qps if quiet.qps else 0.0,
                })  # fmt: skip


def run(args: argparse.Namespace) -> Result:
    h.need("dnsperf", "dnsmasq", "unbound", "nsd", "taskset")
    result = Result(args.names, args.services, args.duration)
    result.machine = h.machine()
    result.machine["nsd"] = h.version_of("nsd", "-v")
    result.machine["unbound"] = h.version_of("unbound", "-V")
    names = external_names(args.names)
    services = gen_cluster.build(args.services)
    spaces = gen_cluster.namespaces(args.services)
    with tempfile.TemporaryDirectory(prefix="kdns-traffic-") as tmpdir:
        tmp = Path(tmpdir)
        zone = write_external_zone(names, tmp / "nsd")
        up_port = h.free_port(UPSTREAM_HOST)
        upstream = f"{UPSTREAM_HOST}:{up_port}"
        conf = h.nsd_conf(tmp / "nsd", UPSTREAM_HOST, up_port, {EXTERNAL_ZONE: zone})
        gen_cluster.write_manifests(services, tmp / "manifests")
        mixes = {
            "hits": h.write_queries(hits_mix(names, QUERY_LINES), tmp / "hits.txt"),
            "ndots": h.write_queries(ndots_mix(names, spaces, QUERY_LINES), tmp / "ndots.txt"),
            "compiled": h.write_queries(
                hits_mix([svc.fqdn for svc in services], QUERY_LINES, seed=5), tmp / "compiled.txt"
            ),
        }
        mixes["forwarded"] = mixes["hits"]
        with h.running(h.nsd_cmd(conf), tmp / "nsd.log", core=h.CLIENT_CORE) as nsd:
            h.wait_answer(nsd, up_port, names[0], 30, host=UPSTREAM_HOST)
            # A part that cannot run is reported; the other part's figures are kept.
            if "external" in args.parts:
                try:
                    run_external(args, tmp, upstream, names, mixes,
                                 (tmp / "manifests", services[0].fqdn), result)  # fmt: skip
                except h.BenchError as exc:
                    result.errors["external"] = str(exc)
            if "churn" in args.parts:
                try:
                    run_churn(args, tmp, upstream, names, mixes["ndots"], services, result)
                except h.BenchError as exc:
                    result.errors["churn"] = str(exc)
    return result


TARGETS = {
    # per CPU: a compiled answer's CPU over a hit's; >= 1/1.2 is "a hit costs <= 1.2x".
    "kdns hits/compiled": "must >= 0.83x per CPU (a hit <= 1.2x a compiled answer)",
    "hits kdns/dnsmasq": "must >= 0.7x, aim >= 1.0x",
    "ndots kdns/dnsmasq": "must >= 0.8x, aim >= 1.0x",
    "ndots kdns/unbound": "aim >= 1.0x",
    "forwarded kdns/dnsmasq": "must >= 0.5x",
    "churn kdns/quiet": "must >= 0.9x",
}


def render(result: Result) -> str:
    m = result.machine
    lines = [
        f"external names and churn: {result.names} external names (nsd {m.get('nsd', '?')}), "
        f"{result.services} services, {result.seconds:g}s per run; server on core "
        f"{h.SERVER_CORE}, dnsperf + nsd + emulator on core {h.CLIENT_CORE}",
        f"{m.get('date', '')}; {m.get('cpus', '?')} cpus ({m.get('cpu', '?')}); load "
        f"{m.get('loadavg_1min_at_start', '?')}; Python {m.get('python', '?')}; "
        f"unbound {m.get('unbound', '?').removeprefix('Version ')}; kdns {m.get('commit', '?')}",
        "",
        *h.load_table(result.loads),
        "",
    ]
    for key, value in result.ratios().items():
        lines.append(h.ratio_line(key, value, TARGETS.get(key, "")))
    for part, error in result.errors.items():
        lines.append(f"{part} could not run: {error}")
    for c in result.churn:
        lines.append(
            f"churn driver: {c['writes']} EndpointSlice writes at {c['achieved_per_s']}/s "
            f"(asked {c['rate']:g}/s, {c['late']} late, {c['errors']} errors)"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", choices=("external", "churn"), action="append",
                        help="run one part (repeatable; default both)")  # fmt: skip
    parser.add_argument("--duration", type=float, default=10, help="dnsperf run, seconds (10)")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up pass, seconds (3)")
    parser.add_argument("--names", type=int, default=1000, help="external names (1000)")
    parser.add_argument("--services", type=int, default=1000, help="cluster services (1000)")
    parser.add_argument("--rates", type=float, nargs="+", default=[20.0],
                        help="EndpointSlice changes per second during churn (20)")  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="tiny: 100 names and services, 0.5 s runs")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    args.parts = args.only or ["external", "churn"]
    if args.quick:
        args.names, args.services, args.duration, args.warmup = 100, 100, 0.5, 0.2
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except h.BenchError as exc:
        sys.stderr.write(f"traffic_bench: {exc}\n")
        return 1
    if args.json:
        json.dump(result.as_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render(result))
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
