"""A synthetic cluster for the benchmarks, and the same names for dnsmasq and dnsperf.

One deterministic model of N services feeds everything a benchmark needs, so the two
servers are compared on exactly the same data: Kubernetes manifests for kdns, a hosts
file plus ``--srv-host`` lines for dnsmasq (which then answers the same names
authoritatively), a zone file for nsd, raw API objects for the in-process recompile
benchmark, and dnsperf query files. The mix follows what a real cluster holds: mostly
single-port ClusterIP services, some multi-port and dual-stack ones, and StatefulSet-style
headless services whose endpoints have hostnames.

Run it alone to look at what it writes: ``python benchmarks/gen_cluster.py --out DIR``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ZONE = "cluster.local"
SERVICES_PER_NAMESPACE = 50
SERVICE_CIDR = ipaddress.IPv4Address("10.96.0.0")
SERVICE_CIDR6 = ipaddress.IPv6Address("fd00:10:96::")
POD_CIDR = ipaddress.IPv4Address("10.244.0.0")

# A service's kind by its index modulo 20: 50 % single-port, 20 % multi-port,
# 15 % dual-stack (multi-port), 15 % headless with hostnames.
_KINDS = ("single",) * 10 + ("multi",) * 4 + ("dual",) * 3 + ("headless",) * 3
_MULTI_PORTS = (("http", 80), ("grpc", 9090), ("metrics", 9100))
_HEADLESS_PORTS = (("peer", 7000), ("client", 7001))

# External names a pod with ``ndots:5`` sends through its search path first.
_EXTERNAL = (
    "api.example.com",
    "www.google.com",
    "s3.amazonaws.com",
    "registry-1.docker.io",
    "github.com",
    "pypi.org",
    "sts.amazonaws.com",
    "login.microsoftonline.com",
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    hostname: str  # "" for Deployment-style endpoints
    pod: str


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    kind: str  # single | multi | dual | headless
    cluster_ips: tuple[str, ...]  # ("None",) when headless
    ports: tuple[tuple[str, int], ...]  # (name, port), all TCP
    endpoints: tuple[Endpoint, ...]

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{ZONE}"

    @property
    def headless(self) -> bool:
        return self.kind == "headless"


def namespaces(count: int) -> list[str]:
    """The namespaces ``count`` services are spread over (50 per namespace)."""
    return [f"team-{i:02d}" for i in range(max(1, -(-count // SERVICES_PER_NAMESPACE)))]


def build(count: int) -> list[Service]:
    """``count`` services; the same count always gives the same cluster."""
    spaces = namespaces(count)
    services: list[Service] = []
    pod_ip = int(POD_CIDR) + 10
    for i in range(count):
        kind = _KINDS[i % len(_KINDS)]
        ns = spaces[i % len(spaces)]
        name = f"{kind}-{i}"
        v4 = str(SERVICE_CIDR + 10 + i)
        if kind == "single":
            ips: tuple[str, ...] = (v4,)
            ports: tuple[tuple[str, int], ...] = (("http", 80),)
        elif kind == "multi":
            ips, ports = (v4,), _MULTI_PORTS
        elif kind == "dual":
            ips, ports = (v4, str(SERVICE_CIDR6 + 10 + i)), _MULTI_PORTS
        else:
            ips, ports = ("None",), _HEADLESS_PORTS
        endpoints = []
        for k in range(3 if kind == "headless" else 2):
            host = f"{name}-{k}" if kind == "headless" else ""
            pod = f"{name}-{k}" if kind == "headless" else f"{name}-7d4b9c-{k:05d}"
            endpoints.append(Endpoint(str(ipaddress.IPv4Address(pod_ip)), host, pod))
            pod_ip += 1
        services.append(Service(ns, name, kind, ips, ports, tuple(endpoints)))
    return services


# -- Kubernetes objects (kdns) ---------------------------------------------------------


def service_manifest(svc: Service, generation: int = 0) -> dict[str, Any]:
    """The Service as a user would ``kubectl apply`` it; ``generation`` varies a port."""
    spec: dict[str, Any] = {
        "type": "ClusterIP",
        "clusterIP": svc.cluster_ips[0],
        "clusterIPs": list(svc.cluster_ips),
        "selector": {"app": svc.name},
        "ports": [
            {"name": name, "port": port + generation, "protocol": "TCP", "targetPort": port}
            for name, port in svc.ports
        ],
    }
    if svc.kind == "dual":
        spec["ipFamilyPolicy"] = "RequireDualStack"
        spec["ipFamilies"] = ["IPv4", "IPv6"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": svc.name, "namespace": svc.namespace},
        "spec": spec,
    }


def slice_manifest(svc: Service) -> dict[str, Any]:
    """The EndpointSlice the controller would write for the service's ready pods."""
    endpoints: list[dict[str, Any]] = []
    for ep in svc.endpoints:
        item: dict[str, Any] = {
            "addresses": [ep.ip],
            "conditions": {"ready": True},
            "targetRef": {"kind": "Pod", "name": ep.pod, "namespace": svc.namespace},
        }
        if ep.hostname:
            item["hostname"] = ep.hostname
        endpoints.append(item)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{svc.name}-abc12",
            "namespace": svc.namespace,
            "labels": {"kubernetes.io/service-name": svc.name},
        },
        "addressType": "IPv4",
        "ports": [{"name": name, "port": port, "protocol": "TCP"} for name, port in svc.ports],
        "endpoints": endpoints,
    }


def write_manifests(services: Sequence[Service], directory: Path) -> None:
    """One JSON ``List`` per namespace: JSON because loading 1,000 services should not
    make the benchmark wait on a YAML parser, and kdns reads both the same way."""
    directory.mkdir(parents=True, exist_ok=True)
    by_ns: dict[str, list[dict[str, Any]]] = {}
    for svc in services:
        items = by_ns.setdefault(svc.namespace, [])
        items += [service_manifest(svc), slice_manifest(svc)]
    for ns, items in by_ns.items():
        doc = {"apiVersion": "v1", "kind": "List", "items": items}
        (directory / f"{ns}.json").write_text(json.dumps(doc))


# -- dnsmasq --------------------------------------------------------------------------


def _srv_records(svc: Service) -> Iterator[tuple[str, str, int, int]]:
    """(owner, target, port, weight) as kdns answers SRV (CoreDNS weights: 100 / n)."""
    if svc.headless:
        for pname, port in svc.ports:
            owner = f"_{pname}._tcp.{svc.fqdn}"
            for ep in svc.endpoints:
                yield owner, f"{ep.hostname}.{svc.fqdn}", port, 100 // len(svc.endpoints)
        every = [
            (f"{ep.hostname}.{svc.fqdn}", port) for _, port in svc.ports for ep in svc.endpoints
        ]
    else:
        # One entry per port and cluster IP, deduplicated after the weight is set: a
        # dual-stack port gets weight 50, as CoreDNS gives it.
        families = len(svc.cluster_ips)
        for pname, port in svc.ports:
            yield f"_{pname}._tcp.{svc.fqdn}", svc.fqdn, port, 100 // families
        every = [(svc.fqdn, port) for _, port in svc.ports]
        for target, port in every:
            yield svc.fqdn, target, port, 100 // (len(every) * families)
        return
    for target, port in every:
        yield svc.fqdn, target, port, 100 // len(every)


def write_dnsmasq(services: Sequence[Service], directory: Path) -> tuple[Path, Path]:
    """A hosts file and a config file (``--conf-file``) serving the same names as kdns."""
    directory.mkdir(parents=True, exist_ok=True)
    hosts: list[str] = []
    conf: list[str] = []
    for svc in services:
        if svc.headless:
            for ep in svc.endpoints:
                hosts.append(f"{ep.ip} {svc.fqdn}")
                hosts.append(f"{ep.ip} {ep.hostname}.{svc.fqdn}")
        else:
            hosts.extend(f"{ip} {svc.fqdn}" for ip in svc.cluster_ips)
        for owner, target, port, weight in _srv_records(svc):
            conf.append(f"srv-host={owner},{target},{port},0,{weight}")
    hosts_path = directory / "hosts"
    conf_path = directory / "dnsmasq.conf"
    hosts_path.write_text("\n".join(hosts) + "\n")
    conf_path.write_text("\n".join(conf) + "\n")
    return hosts_path, conf_path


# -- nsd ------------------------------------------------------------------------------


def write_zone(services: Sequence[Service], directory: Path, ttl: int = 5) -> Path:
    """The cluster zone as a zone file (nsd then serves the same names as kdns,
    authoritatively): A/AAAA, headless hostnames, SRV as kdns answers them."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        f"$ORIGIN {ZONE}.",
        f"$TTL {ttl}",
        f"@ IN SOA ns.dns.{ZONE}. hostmaster.{ZONE}. 1 7200 1800 86400 {ttl}",
        f"@ IN NS ns.dns.{ZONE}.",
        "ns.dns IN A 127.0.0.1",
    ]
    suffix = f".{ZONE}"
    for svc in services:
        owner = svc.fqdn.removesuffix(suffix)
        if svc.headless:
            for ep in svc.endpoints:
                lines.append(f"{owner} IN A {ep.ip}")
                lines.append(f"{ep.hostname}.{owner} IN A {ep.ip}")
        else:
            for ip in svc.cluster_ips:
                lines.append(f"{owner} IN {'AAAA' if ':' in ip else 'A'} {ip}")
        for name, target, port, weight in _srv_records(svc):
            lines.append(f"{name.removesuffix(suffix)} IN SRV 0 {weight} {port} {target}.")
    path = directory / f"{ZONE}.zone"
    path.write_text("\n".join(lines) + "\n")
    return path


# -- dnsperf query files ----------------------------------------------------------------


def _hit(svc: Service, rng: random.Random) -> str:
    """One query a client plausibly sends about ``svc``."""
    roll = rng.random()
    if svc.headless:
        if roll < 0.4:
            return f"{svc.fqdn} A"
        if roll < 0.8:
            return f"{rng.choice(svc.endpoints).hostname}.{svc.fqdn} A"
        return f"_{rng.choice(svc.ports)[0]}._tcp.{svc.fqdn} SRV"
    if roll < 0.6:
        return f"{svc.fqdn} A"
    if roll < 0.8:
        return f"{svc.fqdn} AAAA"  # NODATA unless dual-stack: glibc asks both anyway
    if roll < 0.95:
        return f"_{rng.choice(svc.ports)[0]}._tcp.{svc.fqdn} SRV"
    return f"{svc.fqdn} SRV"


def normal_mix(services: Sequence[Service], lines: int, seed: int = 1) -> list[str]:
    """Hits across A, AAAA, SRV and headless names, plus 10 % NXDOMAIN names."""
    rng = random.Random(seed)
    spaces = namespaces(len(services))
    out: list[str] = []
    for _ in range(lines):
        if rng.random() < 0.10:
            out.append(f"nosuch-{rng.randrange(10_000)}.{rng.choice(spaces)}.svc.{ZONE} A")
        else:
            out.append(_hit(rng.choice(services), rng))
    return out


def miss_heavy_mix(services: Sequence[Service], lines: int, seed: int = 2) -> list[str]:
    """70 % ``ndots:5`` search-path misses (``api.example.com.<ns>.svc.cluster.local``...).

    A pod in namespace ``ns`` asks ``<name>.ns.svc.<zone>``, ``<name>.svc.<zone>`` and
    ``<name>.<zone>`` (A and AAAA each) before the name itself; all three are NXDOMAIN.
    The external names are many (8 well-known ones and 400 generated), so the server
    sees thousands of distinct misses, not a handful it could special-case.
    """
    rng = random.Random(seed)
    spaces = namespaces(len(services))
    external = list(_EXTERNAL) + [f"svc{k}.vendor{k % 37}.example.net" for k in range(400)]
    out: list[str] = []
    for _ in range(lines):
        if rng.random() < 0.70:
            name = rng.choice(external)
            suffix = rng.choice((f"{rng.choice(spaces)}.svc.{ZONE}", f"svc.{ZONE}", ZONE))
            out.append(f"{name}.{suffix} {rng.choice(('A', 'AAAA'))}")
        else:
            out.append(_hit(rng.choice(services), rng))
    return out


def write_queries(lines: Sequence[str], path: Path) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    services = build(args.services)
    write_manifests(services, args.out / "manifests")
    write_dnsmasq(services, args.out / "dnsmasq")
    write_queries(normal_mix(services, 20_000), args.out / "queries-normal.txt")
    write_queries(miss_heavy_mix(services, 20_000), args.out / "queries-miss.txt")
    print(f"wrote {args.services} services to {args.out}")


if __name__ == "__main__":
    main()
