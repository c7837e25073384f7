"""Issue 16, items 5 and 6: the kubernetes options ``zonal`` and ``multicluster``.

One answer table, in CoreDNS's form (qname, qtype, rcode, answer, authority, additional,
records as zone-file text), asked three ways of one Corefile:

* in process, through :meth:`Handler.answer_udp` (a manifests folder as the source);
* end to end, the real ``kdns -conf`` process on the same manifests folder, by dnspython;
* end to end, the real ``kdns -conf`` process against the API emulator (which serves
  ServiceImport, multicluster.x-k8s.io/v1alpha1), by dnspython and by ``dig``.

The zonal rows are CoreDNS 1.14.7's ``zonal_test.go`` (same service, same endpoints, same
answers); the multicluster rows follow the Multi-Cluster Services DNS specification
1.0.0 and CoreDNS's findMultiClusterServices.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest
import yaml

from kdns.plugins.loader import load_text
from kdns.server import lifecycle, planner
from tests.support import apiemu
from tests.support.apiemu import builders
from tests.support.process import KdnsCommand, free_port, rrset_texts, wait_until

pytestmark = pytest.mark.timeout(90)

SOA = (
    "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local."
    " SERIAL 7200 1800 86400 5"
)
MC_SOA = (
    "clusterset.local. 5 IN SOA ns.dns.clusterset.local. hostmaster.clusterset.local."
    " SERIAL 7200 1800 86400 5"
)
NOERROR, NXDOMAIN = dns.rcode.NOERROR, dns.rcode.NXDOMAIN
HDLS = "hdls.testns.svc.cluster.local."
DB = "db.testns.svc.clusterset.local."


def _zoned_slice() -> dict[str, Any]:
    obj = builders.endpoint_slice(
        "hdls", "testns", ["172.0.0.1", "172.0.0.2", "172.0.0.3"], name="hdls-slice"
    )
    for endpoint, zone in zip(obj["endpoints"], ("us-west-2a", "us-west-2b", "us-west-2b"),
                              strict=True):  # fmt: skip
        endpoint["zone"] = zone
    return obj


OBJECTS: list[dict[str, Any]] = [
    builders.namespace("testns"),
    builders.service("hdls", "testns", cluster_ip="None"),
    _zoned_slice(),
    builders.service("clstr", "testns", cluster_ip="10.0.0.10"),
    builders.service("web", "testns", cluster_ip="10.0.0.20"),
    builders.service_import("web", "testns", ips=["10.100.0.1"], clusters=["east", "west"]),
    builders.service_import(
        "db", "testns", type_="Headless", ports=[("pg", 5432, "TCP")], clusters=["east", "west"]
    ),
    builders.imported_slice(
        "db", "east", "testns", ["10.245.1.1"], [("pg", 5432, "TCP")], hostname="db-0"
    ),
    builders.imported_slice("db", "west", "testns", ["10.245.2.1"], [("pg", 5432, "TCP")]),
]


@dataclass(frozen=True)
class Case:
    qname: str
    qtype: str
    rcode: int
    answer: tuple[str, ...] = ()
    authority: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.qname}-{self.qtype}"


def ok(qname: str, qtype: str, answer: list[str], additional: list[str] | None = None) -> Case:
    return Case(qname, qtype, NOERROR, tuple(answer), (), tuple(additional or ()))


def nodata(qname: str, qtype: str = "A", soa: str = SOA) -> Case:
    return Case(qname, qtype, NOERROR, (), (soa,))


def nx(qname: str, qtype: str = "A", soa: str = SOA) -> Case:
    return Case(qname, qtype, NXDOMAIN, (), (soa,))


def _a(name: str, *ips: str) -> list[str]:
    return [f"{name} 5 IN A {ip}" for ip in ips]


def _zonal(zone: str, directive: str = "pin", service: str = "hdls") -> str:
    return f"{zone}.{directive}._zone.{service}.testns.svc.cluster.local."


def _ep(ip: str) -> str:
    return f"{ip.replace('.', '-')}.{HDLS}"


CASES = [
    # -- zonal: CoreDNS 1.14.7's zonal_test.go ---------------------------------------
    ok(_zonal("us-west-2a"), "A", _a(_zonal("us-west-2a"), "172.0.0.1")),
    ok(_zonal("us-west-2b"), "A", _a(_zonal("us-west-2b"), "172.0.0.2", "172.0.0.3")),
    nodata(_zonal("us-west-2c")),  # pin: no endpoint in the zone
    ok(_zonal("us-west-2a", "prefer"), "A", _a(_zonal("us-west-2a", "prefer"), "172.0.0.1")),
    ok(
        _zonal("us-west-2c", "prefer"),
        "A",
        _a(_zonal("us-west-2c", "prefer"), "172.0.0.1", "172.0.0.2", "172.0.0.3"),
    ),  # prefer: falls back to every endpoint
    nx(_zonal("us-west-2a", service="ghost")),
    nx(_zonal("us-west-2a", "florp")),
    nx(_zonal("us-west-2a", service="clstr")),  # headless services only
    nodata(_zonal("us-west-2c"), "TXT"),
    nodata(_zonal("us-west-2c", "prefer"), "TXT"),
    ok(
        _zonal("us-west-2c", "prefer"),
        "SRV",
        [
            f"{_zonal('us-west-2c', 'prefer')} 5 IN SRV 0 33 80 {_ep(f'172.0.0.{i}')}"
            for i in (1, 2, 3)
        ],
        [line for i in (1, 2, 3) for line in _a(_ep(f"172.0.0.{i}"), f"172.0.0.{i}")],
    ),
    ok(
        _zonal("us-west-2b"),
        "SRV",
        [f"{_zonal('us-west-2b')} 5 IN SRV 0 50 80 {_ep(f'172.0.0.{i}')}" for i in (2, 3)],
        [line for i in (2, 3) for line in _a(_ep(f"172.0.0.{i}"), f"172.0.0.{i}")],
    ),
    ok(HDLS, "A", _a(HDLS, "172.0.0.1", "172.0.0.2", "172.0.0.3")),  # unchanged
    nx("us-west-2a.pin._zone.web.testns.svc.clusterset.local.", soa=MC_SOA),
    # -- multicluster: ServiceImports under clusterset.local --------------------------
    ok(
        "web.testns.svc.clusterset.local.",
        "A",
        _a("web.testns.svc.clusterset.local.", "10.100.0.1"),
    ),
    ok("web.testns.svc.cluster.local.", "A", _a("web.testns.svc.cluster.local.", "10.0.0.20")),
    nodata("web.testns.svc.clusterset.local.", "AAAA", MC_SOA),
    ok(
        "_http._tcp.web.testns.svc.clusterset.local.",
        "SRV",
        [
            "_http._tcp.web.testns.svc.clusterset.local. 5 IN SRV 0 100 80 "
            "web.testns.svc.clusterset.local."
        ],
        _a("web.testns.svc.clusterset.local.", "10.100.0.1"),
    ),
    ok(DB, "A", _a(DB, "10.245.1.1", "10.245.2.1")),
    ok(f"db-0.east.{DB}", "A", _a(f"db-0.east.{DB}", "10.245.1.1")),
    ok(f"10-245-2-1.west.{DB}", "A", _a(f"10-245-2-1.west.{DB}", "10.245.2.1")),
    nx(f"db-0.west.{DB}", soa=MC_SOA),  # db-0 is east's
    ok(
        f"_pg._tcp.{DB}",
        "SRV",
        [
            f"_pg._tcp.{DB} 5 IN SRV 0 50 5432 db-0.east.{DB}",
            f"_pg._tcp.{DB} 5 IN SRV 0 50 5432 10-245-2-1.west.{DB}",
        ],
        [*_a(f"db-0.east.{DB}", "10.245.1.1"), *_a(f"10-245-2-1.west.{DB}", "10.245.2.1")],
    ),
    ok(
        DB,
        "SRV",
        [
            f"{DB} 5 IN SRV 0 50 5432 db-0.east.{DB}",
            f"{DB} 5 IN SRV 0 50 5432 10-245-2-1.west.{DB}",
        ],
        [*_a(f"db-0.east.{DB}", "10.245.1.1"), *_a(f"10-245-2-1.west.{DB}", "10.245.2.1")],
    ),
    nx("missing.testns.svc.clusterset.local.", soa=MC_SOA),
    nx("clstr.testns.svc.clusterset.local.", soa=MC_SOA),  # a local service, not imported
    nx("db.testns.svc.cluster.local."),  # an import, no local service
    nodata("testns.svc.clusterset.local.", soa=MC_SOA),
    nx("10-0-0-1.testns.pod.clusterset.local.", soa=MC_SOA),
]


def corefile(port: int, source: str) -> str:
    return f""".:{port} {{
    kubernetes cluster.local clusterset.local {{
        {source}
        zonal
        multicluster clusterset.local
    }}
}}
"""


def _normalise(texts: list[str]) -> list[str]:
    out = []
    for text in texts:
        fields = text.lower().split()
        if len(fields) == 11 and fields[3] == "soa":
            fields[6] = "serial"
        out.append(" ".join(fields))
    return sorted(out)


def check(reply: dns.message.Message, case: Case) -> None:
    assert reply.rcode() == case.rcode, reply.to_text()
    assert _normalise(rrset_texts(reply, "answer")) == _normalise(list(case.answer))
    assert _normalise(rrset_texts(reply, "authority")) == _normalise(list(case.authority))
    assert _normalise(rrset_texts(reply, "additional")) == _normalise(list(case.additional))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("zonal-mc")
    (path / "cluster").mkdir()
    (path / "cluster" / "all.yaml").write_text(yaml.safe_dump_all(OBJECTS))
    return path


# -- in process ----------------------------------------------------------------------


class InProcess:
    def __init__(self, folder: Path) -> None:
        text = corefile(0, f"manifests {folder / 'cluster'}")
        plan = planner.from_corefile(load_text(text, str(folder / "Corefile")), dns_port=0)
        self.loop = asyncio.new_event_loop()
        self.gen = lifecycle.Generation(plan)
        self.loop.run_until_complete(self.gen.start())
        (self.handler,) = self.gen.routes.values()

    def ask(self, case: Case) -> dns.message.Message:
        pkt = dns.message.make_query(case.qname, case.qtype, use_edns=False).to_wire()
        reply = self.handler.answer_udp(pkt, ("127.0.0.1", 5353))
        if reply is not None and not isinstance(reply, bytes):
            reply = self.loop.run_until_complete(reply)
        assert isinstance(reply, bytes)
        return dns.message.from_wire(reply)

    def close(self) -> None:
        self.loop.run_until_complete(self.gen.retire())
        self.loop.close()


@pytest.fixture(scope="module")
def in_process(folder: Path) -> Iterator[InProcess]:
    server = InProcess(folder)
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_in_process(in_process: InProcess, case: Case) -> None:
    check(in_process.ask(case), case)
    check(in_process.ask(case), case)  # the cached answer too


# -- the real process on a manifests folder -----------------------------------------------


def _ready(proc: KdnsCommand) -> bool:
    return proc.rcode("web.testns.svc.clusterset.local.") == NOERROR


@pytest.fixture(scope="module")
def on_manifests(folder: Path) -> Iterator[KdnsCommand]:
    port = free_port()
    path = folder / "Corefile"
    path.write_text(corefile(port, f"manifests {folder / 'cluster'}"))
    proc = KdnsCommand(["-conf", str(path)], port)
    try:
        wait_until(lambda: _ready(proc), timeout=20)
        yield proc
    finally:
        proc.stop()


def _ask(port: int, case: Case, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(case.qname, case.qtype, use_edns=False)
    if tcp:
        return dns.query.tcp(query, "127.0.0.1", port=port, timeout=3)
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=3)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_process_on_manifests(on_manifests: KdnsCommand, case: Case) -> None:
    check(_ask(on_manifests.port, case), case)


# -- the real process against the API emulator -----------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[apiemu.EmulatorThread]:
    with apiemu.EmulatorThread(bookmark_interval=0.5) as emu:
        for obj in OBJECTS:
            emu.put(obj)
        yield emu


@pytest.fixture(scope="module")
def on_api(
    emulator: apiemu.EmulatorThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KdnsCommand]:
    port = free_port()
    path = tmp_path_factory.mktemp("zonal-mc-api") / "Corefile"
    path.write_text(corefile(port, f"endpoint {emulator.url}"))
    proc = KdnsCommand(["-conf", str(path)], port)
    try:
        wait_until(lambda: _ready(proc), timeout=20)
        yield proc
    finally:
        proc.stop()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_process_on_api(on_api: KdnsCommand, case: Case) -> None:
    check(_ask(on_api.port, case, tcp=True), case)


def test_watch_events_reach_answers(on_api: KdnsCommand, emulator: apiemu.EmulatorThread) -> None:
    """A ServiceImport's IPs, an imported slice and an endpoint's zone change by watch."""
    web = "web.testns.svc.clusterset.local."
    emulator.put(builders.service_import("web", "testns", ips=["10.100.0.9"]))
    wait_until(lambda: on_api.records(web) == ["10.100.0.9"], timeout=10)
    emulator.put(builders.imported_slice("db", "north", "testns", ["10.245.3.1"],
                                         [("pg", 5432, "TCP")], hostname="db-9"))  # fmt: skip
    wait_until(lambda: on_api.records(f"db-9.north.{DB}") == ["10.245.3.1"], timeout=10)
    moved = _zoned_slice()
    moved["endpoints"][0]["zone"] = "us-west-2c"
    emulator.put(moved)
    wait_until(lambda: on_api.records(_zonal("us-west-2c")) == ["172.0.0.1"], timeout=10)
    emulator.delete("multicluster.x-k8s.io/v1alpha1", "ServiceImport", "web", "testns")
    wait_until(lambda: on_api.rcode(web) == NXDOMAIN, timeout=10)


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed")
def test_dig(on_api: KdnsCommand) -> None:
    out = subprocess.run(
        ["dig", "+short", "-p", str(on_api.port), "@127.0.0.1", f"db-0.east.{DB}", "A"],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout.split()  # fmt: skip
    assert out == ["10.245.1.1"]
    out = subprocess.run(
        ["dig", "+short", "-p", str(on_api.port), "@127.0.0.1",
         "us-west-2b.pin._zone.hdls.testns.svc.cluster.local", "A"],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout.split()  # fmt: skip
    assert sorted(out) == ["172.0.0.2", "172.0.0.3"]


# -- the emulator serves ServiceImport to the real clients --------------------------------


def test_kubectl_and_the_python_client_see_service_imports(
    emulator: apiemu.EmulatorThread, tmp_path: Path
) -> None:
    from kubernetes import client, config

    kubeconfig = tmp_path / "kubeconfig"
    emulator.write_kubeconfig(kubeconfig)
    kubectl = ["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "c"),
               "--request-timeout", "10s"]  # fmt: skip
    if shutil.which("kubectl") is not None:
        out = subprocess.run(
            [*kubectl, "get", "serviceimports.multicluster.x-k8s.io", "-n", "testns", "-o",
             "jsonpath={.items[*].metadata.name}"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
        assert "db" in out.split()  # (web may be deleted by the watch test)
        applied = tmp_path / "import.yaml"
        applied.write_text(
            yaml.safe_dump(builders.service_import("api", "testns", ips=["10.1.2.3"]))
        )
        subprocess.run([*kubectl, "apply", "-f", str(applied)], check=True, timeout=30,
                       capture_output=True)  # fmt: skip
    api = config.new_client_from_config(str(kubeconfig))
    found = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "multicluster.x-k8s.io", "v1alpha1", "testns", "serviceimports"
    )
    by_name = {item["metadata"]["name"]: item for item in found["items"]}
    assert by_name["db"]["spec"]["type"] == "Headless"
    if shutil.which("kubectl") is not None:
        assert by_name["api"]["spec"]["ips"] == ["10.1.2.3"]
