"""The issue-2 answer table: every name shape of the cluster zone, over UDP and TCP.

Each case is (qname, qtype, rcode, answer, authority, additional) with records as
zone-file text, built from the Kubernetes DNS specification 1.1.0 and, where it is
silent, from CoreDNS's kubernetes plugin (``handler_test.go``, ``reverse_test.go``,
``kubernetes_apex_test.go``, ``handler_pod_insecure_test.go``, ``parse.go``,
``kubernetes.go`` and ``plugin/backend_lookup.go``). The quirks are CoreDNS's, kept on
purpose so that swapping CoreDNS for kdns changes no answer a client can see; each
one names the source line of reasoning next to it.

The server is the real ``kdns serve`` process on a folder of ordinary manifests
(``tests/fixtures/cluster``), asked by dnspython over real sockets.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.support.process import KdnsProcess, rrset_texts

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "cluster"

SOA = (
    "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local."
    " SERIAL 7200 1800 86400 5"
)
SOA4 = (
    "in-addr.arpa. 5 IN SOA ns.dns.in-addr.arpa. hostmaster.in-addr.arpa. SERIAL 7200 1800 86400 5"
)
SOA6 = "ip6.arpa. 5 IN SOA ns.dns.ip6.arpa. hostmaster.ip6.arpa. SERIAL 7200 1800 86400 5"

NOERROR = dns.rcode.NOERROR
NXDOMAIN = dns.rcode.NXDOMAIN
REFUSED = dns.rcode.REFUSED


@dataclass(frozen=True)
class Case:
    """One row of the table; ``why`` says which rule or source it pins down."""

    qname: str
    qtype: str
    rcode: int
    answer: tuple[str, ...] = ()
    authority: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()
    why: str = ""
    aa: bool = True
    bug: str = ""  # a known kdns bug: the case is expected to fail until it is fixed

    @property
    def id(self) -> str:
        return f"{self.qname}-{self.qtype}"


def ok(
    qname: str, qtype: str, answer: Sequence[str], additional: Sequence[str] = (), why: str = ""
) -> Case:
    return Case(qname, qtype, NOERROR, tuple(answer), (), tuple(additional), why)


def nodata(qname: str, qtype: str, soa: str = SOA, why: str = "") -> Case:
    return Case(qname, qtype, NOERROR, (), (soa,), (), why)


def nx(qname: str, qtype: str, soa: str = SOA, why: str = "") -> Case:
    return Case(qname, qtype, NXDOMAIN, (), (soa,), (), why)


def svc(name: str) -> str:
    """``single.apps`` -> ``single.apps.svc.cluster.local.``"""
    return f"{name}.svc.cluster.local."


def rev6(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer + "."


S1 = svc("single.apps")
HL = svc("hl.stateful")
ANON = svc("hl-anon.stateful")
PNR = svc("hl-pnr.stateful")

CASES: list[Case] = [
    # -- dns-version ------------------------------------------------------------------
    ok(
        "dns-version.cluster.local.",
        "TXT",
        ['dns-version.cluster.local. 28800 IN TXT "1.1.0"'],
        why="spec 2.2: schema version TXT, TTL 28800 as CoreDNS",
    ),
    ok(
        "DNS-Version.Cluster.Local.",
        "TXT",
        ['dns-version.cluster.local. 28800 IN TXT "1.1.0"'],
        why="names are case-insensitive",
    ),
    nx(
        "dns-version.cluster.local.",
        "A",
        why="CoreDNS quirk: parse.go rejects a first label that is neither svc nor pod",
    ),
    nx("nothing.cluster.local.", "TXT", why="TXT of a name that does not exist"),
    nodata(S1, "TXT", why="CoreDNS: TXT of a name with other records is NODATA"),
    nx(svc("missing.apps"), "TXT", why="CoreDNS: TXT with no record of any type is NXDOMAIN"),
    nx(
        svc("hl-down.stateful"),
        "TXT",
        why="a headless service without ready endpoints has no records",
    ),
    # -- ClusterIP: A/AAAA per family -------------------------------------------------
    ok(S1, "A", [f"{S1} 5 IN A 10.96.1.1"]),
    nodata(S1, "AAAA", why="A-only service asked AAAA: NODATA"),
    ok(svc("multi.apps"), "A", [f"{svc('multi.apps')} 5 IN A 10.96.1.2"]),
    ok(svc("dual.apps"), "A", [f"{svc('dual.apps')} 5 IN A 10.96.1.3"]),
    ok(svc("dual.apps"), "AAAA", [f"{svc('dual.apps')} 5 IN AAAA fd00:96::103"]),
    nodata(svc("v6only.apps"), "A", why="IPv6-only service asked A"),
    ok(svc("v6only.apps"), "AAAA", [f"{svc('v6only.apps')} 5 IN AAAA fd00:96::104"]),
    ok(
        svc("lonely.orphan"),
        "A",
        [f"{svc('lonely.orphan')} 5 IN A 10.96.9.9"],
        why="a service whose namespace has no Namespace object still serves",
    ),
    ok(svc("kube-dns.kube-system"), "A", [f"{svc('kube-dns.kube-system')} 5 IN A 10.96.0.10"]),
    ok(svc("unnamed.apps"), "A", [f"{svc('unnamed.apps')} 5 IN A 10.96.1.7"]),
    ok(
        svc("selected.apps"),
        "A",
        [f"{svc('selected.apps')} 5 IN A 10.96.1.8"],
        why="ClusterIP with a selector answers its cluster IP, not its pods",
    ),
    nodata(svc("unnamed.apps"), "MX", why="other types: a fake A lookup decides (handler.go)"),
    # -- ClusterIP: SRV ---------------------------------------------------------------
    ok(
        f"_http._tcp.{S1}",
        "SRV",
        [f"_http._tcp.{S1} 5 IN SRV 0 100 80 {S1}"],
        [f"{S1} 5 IN A 10.96.1.1"],
    ),
    nx(f"_http._udp.{S1}", "SRV", why="port exists with another protocol"),
    nx(f"_https._tcp.{S1}", "SRV", why="no such port name"),
    ok(
        f"_https._tcp.{svc('multi.apps')}",
        "SRV",
        [f"_https._tcp.{svc('multi.apps')} 5 IN SRV 0 100 443 {svc('multi.apps')}"],
        [f"{svc('multi.apps')} 5 IN A 10.96.1.2"],
    ),
    ok(
        svc("multi.apps"),
        "SRV",
        [
            f"{svc('multi.apps')} 5 IN SRV 0 33 {port} {svc('multi.apps')}"
            for port in (80, 443, 9090)
        ],
        [f"{svc('multi.apps')} 5 IN A 10.96.1.2"],
        why="SRV on the bare name lists every port, weight floor(100/3)",
    ),
    ok(
        svc("dual.apps"),
        "SRV",
        [f"{svc('dual.apps')} 5 IN SRV 0 50 80 {svc('dual.apps')}"],
        [f"{svc('dual.apps')} 5 IN A 10.96.1.3", f"{svc('dual.apps')} 5 IN AAAA fd00:96::103"],
        why="handler_test svc-dual-stack: one SRV per port, weight 50 from two entries",
    ),
    ok(
        f"_http._tcp.{svc('dual.apps')}",
        "SRV",
        [f"_http._tcp.{svc('dual.apps')} 5 IN SRV 0 50 80 {svc('dual.apps')}"],
        [f"{svc('dual.apps')} 5 IN A 10.96.1.3", f"{svc('dual.apps')} 5 IN AAAA fd00:96::103"],
    ),
    ok(
        f"_http._tcp.{svc('v6only.apps')}",
        "SRV",
        [f"_http._tcp.{svc('v6only.apps')} 5 IN SRV 0 100 80 {svc('v6only.apps')}"],
        [f"{svc('v6only.apps')} 5 IN AAAA fd00:96::104"],
    ),
    ok(
        f"_dns._udp.{svc('resolver.apps')}",
        "SRV",
        [f"_dns._udp.{svc('resolver.apps')} 5 IN SRV 0 100 53 {svc('resolver.apps')}"],
        [f"{svc('resolver.apps')} 5 IN A 10.96.1.5"],
        why="UDP port",
    ),
    ok(
        f"_dns-tcp._tcp.{svc('resolver.apps')}",
        "SRV",
        [f"_dns-tcp._tcp.{svc('resolver.apps')} 5 IN SRV 0 100 53 {svc('resolver.apps')}"],
        [f"{svc('resolver.apps')} 5 IN A 10.96.1.5"],
    ),
    nx(f"_dns._tcp.{svc('resolver.apps')}", "SRV", why="dns is UDP only"),
    ok(
        svc("resolver.apps"),
        "SRV",
        [f"{svc('resolver.apps')} 5 IN SRV 0 50 53 {svc('resolver.apps')}"],
        [f"{svc('resolver.apps')} 5 IN A 10.96.1.5"],
        why="backend_lookup.go: duplicate (target, port) SRV dropped, weight from 2 entries",
    ),
    ok(
        f"_diameter._sctp.{svc('diameter.apps')}",
        "SRV",
        [f"_diameter._sctp.{svc('diameter.apps')} 5 IN SRV 0 100 3868 {svc('diameter.apps')}"],
        [f"{svc('diameter.apps')} 5 IN A 10.96.1.6"],
        why="SCTP port",
    ),
    ok(
        svc("unnamed.apps"),
        "SRV",
        [f"{svc('unnamed.apps')} 5 IN SRV 0 100 8080 {svc('unnamed.apps')}"],
        [f"{svc('unnamed.apps')} 5 IN A 10.96.1.7"],
        why="an unnamed port shows on the bare name",
    ),
    nx(f"_http._tcp.{svc('unnamed.apps')}", "SRV", why="unnamed ports have no _port name"),
    ok(
        f"http.tcp.{S1}",
        "SRV",
        [f"http.tcp.{S1} 5 IN SRV 0 100 80 {S1}"],
        [f"{S1} 5 IN A 10.96.1.1"],
        why="parse.go strips underscores only when present",
    ),
    ok(
        f"_http._tcp.{S1}",
        "A",
        [f"_http._tcp.{S1} 5 IN A 10.96.1.1"],
        why="CoreDNS quirk: A on a _port._proto name answers the service address",
    ),
    ok(
        f"_http._tcp.{svc('selected.apps')}",
        "SRV",
        [f"_http._tcp.{svc('selected.apps')} 5 IN SRV 0 100 80 {svc('selected.apps')}"],
        [f"{svc('selected.apps')} 5 IN A 10.96.1.8"],
        why="ClusterIP SRV carries the service port",
    ),
    nodata(svc("ext.apps"), "SRV", why="kubernetes.go: SRV for ExternalName is filtered out"),
    # -- headless with hostnames ------------------------------------------------------
    ok(
        HL,
        "A",
        [f"{HL} 5 IN A 10.244.1.1", f"{HL} 5 IN A 10.244.1.2"],
        why="one A per ready endpoint; web-2 is not ready",
    ),
    nodata(HL, "AAAA"),
    ok(f"web-0.{HL}", "A", [f"web-0.{HL} 5 IN A 10.244.1.1"]),
    ok(f"web-1.{HL}", "A", [f"web-1.{HL} 5 IN A 10.244.1.2"]),
    nx(f"web-2.{HL}", "A", why="not-ready endpoint has no name"),
    nodata(f"web-0.{HL}", "AAAA"),
    nx(f"bogus.{HL}", "A"),
    ok(
        f"_http._tcp.{HL}",
        "SRV",
        [f"_http._tcp.{HL} 5 IN SRV 0 50 80 web-{i}.{HL}" for i in (0, 1)],
        [f"web-0.{HL} 5 IN A 10.244.1.1", f"web-1.{HL} 5 IN A 10.244.1.2"],
    ),
    ok(
        f"_metrics._tcp.{HL}",
        "SRV",
        [f"_metrics._tcp.{HL} 5 IN SRV 0 50 9100 web-{i}.{HL}" for i in (0, 1)],
        [f"web-0.{HL} 5 IN A 10.244.1.1", f"web-1.{HL} 5 IN A 10.244.1.2"],
    ),
    ok(
        HL,
        "SRV",
        [f"{HL} 5 IN SRV 0 25 {p} web-{i}.{HL}" for i in (0, 1) for p in (80, 9100)],
        [f"web-0.{HL} 5 IN A 10.244.1.1", f"web-1.{HL} 5 IN A 10.244.1.2"],
        why="bare-name SRV: 2 endpoints x 2 ports, weight floor(100/4)",
    ),
    nx(f"_http._udp.{HL}", "SRV"),
    nx(f"_http._tcp.web-0.{HL}", "SRV", why="parse.go: three labels below the service is too long"),
    nx(f"a.b.c.{S1}", "A", why="too many labels"),
    # -- headless without hostnames (dashed IPs), IPv4 and IPv6 -----------------------
    ok(ANON, "A", [f"{ANON} 5 IN A 10.244.2.1", f"{ANON} 5 IN A 10.244.2.2"]),
    ok(ANON, "AAAA", [f"{ANON} 5 IN AAAA fd00:244::2:1"]),
    ok(f"10-244-2-1.{ANON}", "A", [f"10-244-2-1.{ANON} 5 IN A 10.244.2.1"]),
    ok(f"fd00-244--2-1.{ANON}", "AAAA", [f"fd00-244--2-1.{ANON} 5 IN AAAA fd00:244::2:1"]),
    nodata(f"fd00-244--2-1.{ANON}", "A"),
    nx(f"10-244-2-9.{ANON}", "A"),
    ok(
        f"_redis._tcp.{ANON}",
        "SRV",
        [
            f"_redis._tcp.{ANON} 5 IN SRV 0 33 6379 {h}.{ANON}"
            for h in ("10-244-2-1", "10-244-2-2", "fd00-244--2-1")
        ],
        [
            f"10-244-2-1.{ANON} 5 IN A 10.244.2.1",
            f"10-244-2-2.{ANON} 5 IN A 10.244.2.2",
            f"fd00-244--2-1.{ANON} 5 IN AAAA fd00:244::2:1",
        ],
    ),
    ok(svc("hl-alias.stateful"), "A", [f"{svc('hl-alias.stateful')} 5 IN A 10.244.2.1"]),
    ok(
        f"alias.{svc('hl-alias.stateful')}",
        "A",
        [f"alias.{svc('hl-alias.stateful')} 5 IN A 10.244.2.1"],
    ),
    nodata(
        svc("hl-alias.stateful"), "SRV", why="backend_lookup.go skips port -1 (no ports): NODATA"
    ),
    # -- publishNotReadyAddresses / no ready endpoint ---------------------------------
    ok(
        svc("hl-pnr.stateful"),
        "A",
        [
            f"{svc('hl-pnr.stateful')} 5 IN A 10.244.3.1",
            f"{svc('hl-pnr.stateful')} 5 IN A 10.244.3.2",
        ],
        why="publishNotReadyAddresses publishes not-ready endpoints",
    ),
    ok(
        f"etcd-0.{svc('hl-pnr.stateful')}",
        "A",
        [f"etcd-0.{svc('hl-pnr.stateful')} 5 IN A 10.244.3.1"],
    ),
    ok(
        f"_peer._tcp.{svc('hl-pnr.stateful')}",
        "SRV",
        [f"_peer._tcp.{PNR} 5 IN SRV 0 50 2380 etcd-{i}.{PNR}" for i in (0, 1)],
        [
            f"etcd-0.{svc('hl-pnr.stateful')} 5 IN A 10.244.3.1",
            f"etcd-1.{svc('hl-pnr.stateful')} 5 IN A 10.244.3.2",
        ],
    ),
    nx(svc("hl-down.stateful"), "A", why="headless with no ready endpoint: NXDOMAIN"),
    nx(svc("hl-down.stateful"), "AAAA"),
    nx(svc("hl-down.stateful"), "SRV"),
    nx(f"_http._tcp.{svc('hl-down.stateful')}", "SRV"),
    # -- selector + Pods (ready, not ready, terminating, named targetPort) ------------
    ok(
        svc("selhl.apps"),
        "A",
        [f"{svc('selhl.apps')} 5 IN A 10.244.5.1"],
        why="only the ready, non-terminating pod is an endpoint",
    ),
    ok(
        f"sel-a.{svc('selhl.apps')}",
        "A",
        [f"sel-a.{svc('selhl.apps')} 5 IN A 10.244.5.1"],
        why="pod hostname + subdomain naming the service",
    ),
    ok(
        f"_http._tcp.{svc('selhl.apps')}",
        "SRV",
        [f"_http._tcp.{svc('selhl.apps')} 5 IN SRV 0 100 8080 sel-a.{svc('selhl.apps')}"],
        [f"sel-a.{svc('selhl.apps')} 5 IN A 10.244.5.1"],
        why="named targetPort resolved to 8080",
    ),
    nx(f"10-244-5-2.{svc('selhl.apps')}", "A", why="not-ready pod"),
    nx(f"10-244-5-3.{svc('selhl.apps')}", "A", why="terminating pod"),
    ok(
        f"10-244-5-1.{svc('selected.apps')}",
        "A",
        [f"10-244-5-1.{svc('selected.apps')} 5 IN A 10.244.5.1"],
        why="kubernetes.go: endpoint names exist for ClusterIP services too",
    ),
    nx(f"10-244-5-2.{svc('selected.apps')}", "A"),
    nx(f"10-244-5-9.{svc('selected.apps')}", "A", why="a pod the selector does not match"),
    # -- v1 Endpoints mirrored --------------------------------------------------------
    ok(
        svc("mirrored.apps"),
        "A",
        [f"{svc('mirrored.apps')} 5 IN A 10.244.6.1", f"{svc('mirrored.apps')} 5 IN A 10.244.6.2"],
    ),
    ok(f"m-0.{svc('mirrored.apps')}", "A", [f"m-0.{svc('mirrored.apps')} 5 IN A 10.244.6.1"]),
    ok(
        f"10-244-6-2.{svc('mirrored.apps')}",
        "A",
        [f"10-244-6-2.{svc('mirrored.apps')} 5 IN A 10.244.6.2"],
    ),
    nx(f"10-244-6-3.{svc('mirrored.apps')}", "A", why="notReadyAddresses stay unpublished"),
    ok(
        f"_tcp._tcp.{svc('mirrored.apps')}",
        "SRV",
        [
            f"_tcp._tcp.{svc('mirrored.apps')} 5 IN SRV 0 50 7000 {h}.{svc('mirrored.apps')}"
            for h in ("m-0", "10-244-6-2")
        ],
        [
            f"m-0.{svc('mirrored.apps')} 5 IN A 10.244.6.1",
            f"10-244-6-2.{svc('mirrored.apps')} 5 IN A 10.244.6.2",
        ],
    ),
    # -- ExternalName -----------------------------------------------------------------
    ok(svc("ext.apps"), "CNAME", [f"{svc('ext.apps')} 5 IN CNAME www.example.org."]),
    ok(
        svc("ext.apps"),
        "A",
        [f"{svc('ext.apps')} 5 IN CNAME www.example.org."],
        why="no upstream yet: the CNAME alone",
    ),
    ok(svc("ext.apps"), "AAAA", [f"{svc('ext.apps')} 5 IN CNAME www.example.org."]),
    ok(
        svc("ext-internal.apps"),
        "A",
        [f"{svc('ext-internal.apps')} 5 IN CNAME {S1}", f"{S1} 5 IN A 10.96.1.1"],
        why="backend_lookup.go chases an in-zone CNAME target",
    ),
    nodata(
        svc("ext-internal.apps"), "AAAA", why="in-zone target without AAAA: CNAME dropped, NODATA"
    ),
    ok(svc("ext-internal.apps"), "CNAME", [f"{svc('ext-internal.apps')} 5 IN CNAME {S1}"]),
    nx(f"foo.{svc('ext.apps')}", "A", why="ExternalName has no endpoints"),
    nx(
        f"_http._tcp.{svc('ext.apps')}",
        "SRV",
        why="kubernetes.go findServices: no port/protocol labels below an ExternalName",
    ),
    nx(f"_http._tcp.{svc('ext.apps')}", "A", why="no port/protocol labels, whatever the type"),
    nx(f"_http._tcp.{svc('ext-internal.apps')}", "SRV", why="in-zone target changes nothing"),
    nx(f"foo.{svc('ext.apps')}", "SRV", why="ExternalName has no endpoints"),
    nx(
        f"endpoint.{svc('ext.apps')}", "CNAME", why="handler_test: subdomain of an external service"
    ),
    nodata(S1, "CNAME"),
    # -- PTR --------------------------------------------------------------------------
    ok("1.1.96.10.in-addr.arpa.", "PTR", [f"1.1.96.10.in-addr.arpa. 5 IN PTR {S1}"]),
    ok("3.1.96.10.in-addr.arpa.", "PTR", [f"3.1.96.10.in-addr.arpa. 5 IN PTR {svc('dual.apps')}"]),
    ok(rev6("fd00:96::103"), "PTR", [f"{rev6('fd00:96::103')} 5 IN PTR {svc('dual.apps')}"]),
    ok(rev6("fd00:96::104"), "PTR", [f"{rev6('fd00:96::104')} 5 IN PTR {svc('v6only.apps')}"]),
    ok(
        "10.0.96.10.in-addr.arpa.",
        "PTR",
        [f"10.0.96.10.in-addr.arpa. 5 IN PTR {svc('kube-dns.kube-system')}"],
    ),
    ok("1.1.244.10.in-addr.arpa.", "PTR", [f"1.1.244.10.in-addr.arpa. 5 IN PTR web-0.{HL}"]),
    nx("3.1.244.10.in-addr.arpa.", "PTR", SOA4, why="not-ready endpoint"),
    ok(
        "1.2.244.10.in-addr.arpa.",
        "PTR",
        [
            f"1.2.244.10.in-addr.arpa. 5 IN PTR 10-244-2-1.{ANON}",
            f"1.2.244.10.in-addr.arpa. 5 IN PTR alias.{svc('hl-alias.stateful')}",
        ],
        why="reverse_test double-ep: one PTR per service selecting the address",
    ),
    ok(rev6("fd00:244::2:1"), "PTR", [f"{rev6('fd00:244::2:1')} 5 IN PTR fd00-244--2-1.{ANON}"]),
    ok(
        "1.5.244.10.in-addr.arpa.",
        "PTR",
        [
            f"1.5.244.10.in-addr.arpa. 5 IN PTR 10-244-5-1.{svc('selected.apps')}",
            f"1.5.244.10.in-addr.arpa. 5 IN PTR sel-a.{svc('selhl.apps')}",
        ],
    ),
    ok(
        "1.6.244.10.in-addr.arpa.",
        "PTR",
        [f"1.6.244.10.in-addr.arpa. 5 IN PTR m-0.{svc('mirrored.apps')}"],
    ),
    ok(
        "2.6.244.10.in-addr.arpa.",
        "PTR",
        [f"2.6.244.10.in-addr.arpa. 5 IN PTR 10-244-6-2.{svc('mirrored.apps')}"],
    ),
    Case(
        "1.3.244.10.in-addr.arpa.",
        "PTR",
        NOERROR,
        (f"1.3.244.10.in-addr.arpa. 5 IN PTR etcd-0.{svc('hl-pnr.stateful')}",),
        why="a published not-ready endpoint has a forward name, so it has a PTR",
    ),
    nx("99.99.99.10.in-addr.arpa.", "PTR", SOA4),
    nx(rev6("fd00:96::999"), "PTR", SOA6),
    nodata("in-addr.arpa.", "PTR", SOA4),
    nodata(S1, "PTR", why="reverse_test: PTR of a forward name that exists"),
    nx("example.org.cluster.local.", "PTR", why="reverse_test"),
    nx("100.0.0.10.cluster.local.", "PTR", why="reverse_test"),
    nx(
        f"{S1[: -len('cluster.local.')]}in-addr.arpa.",
        "A",
        SOA4,
        why="reverse_test: service shape in a reverse zone",
    ),
    # -- pods (insecure) --------------------------------------------------------------
    ok(
        "10-244-5-1.apps.pod.cluster.local.",
        "A",
        ["10-244-5-1.apps.pod.cluster.local. 5 IN A 10.244.5.1"],
    ),
    ok(
        "1-2-3-4.apps.pod.cluster.local.",
        "A",
        ["1-2-3-4.apps.pod.cluster.local. 5 IN A 1.2.3.4"],
        why="insecure mode answers any dashed IP",
    ),
    nodata("1-2-3-4.apps.pod.cluster.local.", "AAAA"),
    ok(
        "fd00--1.apps.pod.cluster.local.",
        "AAAA",
        ["fd00--1.apps.pod.cluster.local. 5 IN AAAA fd00::1"],
    ),
    ok(
        "fd00-244-0-0-0-0-2-1.apps.pod.cluster.local.",
        "AAAA",
        ["fd00-244-0-0-0-0-2-1.apps.pod.cluster.local. 5 IN AAAA fd00:244::2:1"],
    ),
    nodata("fd00--1.apps.pod.cluster.local.", "A"),
    ok(
        "x.1-2-3-4.apps.pod.cluster.local.",
        "A",
        ["x.1-2-3-4.apps.pod.cluster.local. 5 IN A 1.2.3.4"],
        why="CoreDNS quirk: findPods reads only the pod label and ignores one to its left",
    ),
    nx("blah.apps.pod.cluster.local.", "A", why="handler_pod_insecure_test"),
    nx("1-2-3.apps.pod.cluster.local.", "A"),
    nx("256-1-1-1.apps.pod.cluster.local.", "A"),
    nx("1-2-3-4.nope.pod.cluster.local.", "A", why="namespace does not exist"),
    nodata("apps.pod.cluster.local.", "A", why="handler_pod_insecure_test podns.pod"),
    nodata("pod.cluster.local.", "A"),
    # -- zone apex, NS, namespaces ------------------------------------------------------
    Case("cluster.local.", "SOA", NOERROR, (SOA,), why="kubernetes_apex_test"),
    ok(
        "cluster.local.",
        "NS",
        ["cluster.local. 5 IN NS ns.dns.cluster.local."],
        ["ns.dns.cluster.local. 5 IN A 10.96.0.10"],
        why="NS glue is kube-dns's cluster IP",
    ),
    nodata("cluster.local.", "A"),
    nodata("cluster.local.", "AAAA"),
    nodata("cluster.local.", "SRV"),
    nodata("cluster.local.", "HINFO"),
    ok("ns.dns.cluster.local.", "A", ["ns.dns.cluster.local. 5 IN A 10.96.0.10"]),
    nodata("ns.dns.cluster.local.", "AAAA"),
    nodata("svc.cluster.local.", "A", why="svc.<zone> exists"),
    nodata("svc.cluster.local.", "NS", why="handler_test: NS below the apex is a fake A lookup"),
    nodata("apps.svc.cluster.local.", "A", why="existing namespace"),
    nodata("apps.svc.cluster.local.", "NS"),
    nodata("empty.svc.cluster.local.", "A", why="existing namespace without services"),
    nodata("orphan.svc.cluster.local.", "A", why="namespace implied by its service"),
    nx("nope.svc.cluster.local.", "A", why="missing namespace"),
    nx(svc("single.nope"), "A", why="service in a missing namespace"),
    nx(svc("missing.apps"), "A"),
    nx(svc("missing.apps"), "AAAA"),
    nx(svc("missing.apps"), "SRV"),
    nx("foo.cluster.local.", "A"),
    nx("foo.cluster.local.", "NS", why="handler_test"),
    nx("foo.svc.cluster.local.", "NS", why="handler_test"),
    nodata(S1, "SOA", why="handler.go answers SOA only at the apex"),
    nodata(
        svc("missing.apps"),
        "SOA",
        why="CoreDNS quirk: SOA below the apex is NODATA, existing or not",
    ),
    # -- ANY (RFC 8482), transfers, out of zone --------------------------------------------
    ok(S1, "ANY", [f'{S1} 5 IN HINFO "RFC8482" ""'], why="RFC 8482 minimal answer"),
    nx(svc("missing.apps"), "ANY"),
    Case("example.com.", "A", REFUSED, aa=False, why="out of zone until forwarding exists"),
    Case("local.", "A", REFUSED, aa=False, why="the parent of the zone is not ours"),
    Case("xcluster.local.", "A", REFUSED, aa=False, why="a suffix match is not a subdomain"),
    Case("cluster.local.", "AXFR", REFUSED, aa=False, why="handler.go: transfers refused"),
    Case("cluster.local.", "IXFR", REFUSED, aa=False),
]


def _normalise(texts: list[str]) -> list[str]:
    """Lower-case, and the SOA serial (the store's modification time) masked."""
    out = []
    for text in texts:
        fields = text.lower().split()
        if len(fields) == 11 and fields[3] == "soa":
            fields[6] = "serial"
        out.append(" ".join(fields))
    return sorted(out)


@pytest.fixture(scope="module")
def server() -> Iterator[KdnsProcess]:
    """One kdns on the fixture cluster for the whole table (read-only, so shared)."""
    proc = KdnsProcess(FIXTURE)
    try:
        yield proc
    finally:
        proc.stop()


def _ask(server: KdnsProcess, msg: dns.message.Message, tcp: bool) -> dns.message.Message:
    if tcp:
        return dns.query.tcp(msg, server.host, port=server.port, timeout=3)
    return dns.query.udp(msg, server.host, port=server.port, timeout=3)


def _query(case: Case) -> dns.message.Message:
    if case.qtype == "IXFR":
        # An IXFR question carries the client's SOA in the authority section (RFC 1995).
        return dns.message.make_query(case.qname, "IXFR", want_dnssec=False, use_edns=False)
    return dns.message.make_query(case.qname, case.qtype, use_edns=False)


def test_table_is_big_enough() -> None:
    """The issue asks for at least 120 cases; duplicates would inflate the count."""
    assert len(CASES) >= 120
    assert (
        len({(c.qname.lower(), c.qtype) for c in CASES}) == len(CASES) - 1
    )  # DNS-Version case twin


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            c, id=c.id, marks=[pytest.mark.xfail(reason=c.bug, strict=True)] if c.bug else []
        )
        for c in CASES
    ],
)
def test_answer(server: KdnsProcess, case: Case, transport: str) -> None:
    """Rcode, sections and header flags of one case, over one transport."""
    query = _query(case)
    query.flags |= dns.flags.RD
    reply = _ask(server, query, transport == "tcp")
    assert reply.rcode() == case.rcode, reply.to_text()
    assert reply.flags & dns.flags.QR
    assert bool(reply.flags & dns.flags.AA) == case.aa, reply.to_text()
    assert reply.flags & dns.flags.RD, "RD must be copied from the query"
    assert not reply.flags & dns.flags.TC
    assert _normalise(rrset_texts(reply, "answer")) == _normalise(list(case.answer))
    assert _normalise(rrset_texts(reply, "authority")) == _normalise(list(case.authority))
    assert _normalise(rrset_texts(reply, "additional")) == _normalise(list(case.additional))


def _raw_exchange(server: KdnsProcess, wire: bytes, tcp: bool) -> bytes:
    if tcp:
        with socket.create_connection((server.host, server.port), timeout=3) as sock:
            sock.sendall(struct.pack("!H", len(wire)) + wire)
            head = _recv_exact(sock, 2)
            return _recv_exact(sock, struct.unpack("!H", head)[0])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(wire, (server.host, server.port))
        data, _ = sock.recvfrom(65535)
        return data


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = b""
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        assert chunk, "connection closed early"
        buf += chunk
    return buf


MIXED = [
    ("SiNgLe.ApPs.SvC.cLuStEr.LoCaL.", "A", NOERROR),
    ("_HtTp._TcP.mUlTi.aPpS.sVc.ClUsTeR.lOcAl.", "SRV", NOERROR),
    ("WEB-0.HL.STATEFUL.SVC.CLUSTER.LOCAL.", "A", NOERROR),
    ("1.1.96.10.In-Addr.ARPA.", "PTR", NOERROR),
    ("MiSsInG.aPpS.sVc.ClUsTeR.lOcAl.", "A", NXDOMAIN),
    ("ExAmPlE.cOm.", "A", REFUSED),
]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("edns", [False, True], ids=["plain", "edns"])
@pytest.mark.parametrize(("qname", "qtype", "rcode"), MIXED)
def test_question_echoed_byte_for_byte(
    server: KdnsProcess, qname: str, qtype: str, rcode: int, edns: bool, transport: str
) -> None:
    """0x20 resolvers compare the echoed question bytes; owners keep the query's case too."""
    query = dns.message.make_query(qname, qtype, use_edns=0 if edns else False)
    wire = query.to_wire()
    reply_wire = _raw_exchange(server, wire, transport == "tcp")
    name_wire = dns.name.from_text(qname).to_wire()
    assert name_wire is not None
    qlen = len(name_wire) + 4
    assert reply_wire[:2] == wire[:2], "ID must be echoed"
    assert reply_wire[12 : 12 + qlen] == wire[12 : 12 + qlen]
    reply = dns.message.from_wire(reply_wire)
    assert reply.rcode() == rcode
    for rrset in reply.answer:
        # CoreDNS builds answers with state.QName(): the owner is the name as sent.
        assert rrset.name.to_text() == qname


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_rd_clear_is_copied(server: KdnsProcess, transport: str) -> None:
    """RD is copied from the query (miekg/dns SetReply), so a query without it gets none."""
    query = dns.message.make_query(S1, "A", use_edns=False)
    query.flags &= ~dns.flags.RD
    reply = _ask(server, query, transport == "tcp")
    assert not reply.flags & dns.flags.RD
    assert reply.flags & dns.flags.QR and reply.flags & dns.flags.AA
    assert reply.id == query.id


@pytest.mark.parametrize(
    "qname", ["cluster.local.", "svc.cluster.local.", "apps.svc.cluster.local."]
)
def test_txt_of_existing_empty_nonterminal_is_nodata(server: KdnsProcess, qname: str) -> None:
    """The issue: names that exist with other types are NODATA, whatever type is asked."""
    reply = _ask(server, dns.message.make_query(qname, "TXT", use_edns=False), False)
    assert reply.rcode() == NOERROR


# -- the same table in process: the one entry point, no sockets ------------------------


class _InProcess:
    """``kdns serve --manifests FIXTURE``'s plan and handler, built as the process builds them.

    Every query goes to :meth:`kdns.query.handler.Handler.answer` (TCP) or ``answer_udp``,
    exactly what the transports call; an awaitable answer is awaited on a private loop.
    """

    def __init__(self) -> None:
        from kdns.cli import serve as serve_cli
        from kdns.server import lifecycle

        plan = serve_cli.plan(["--manifests", str(FIXTURE), "--listen", "127.0.0.1:0"])
        assert not isinstance(plan, int)
        self.loop = asyncio.new_event_loop()
        self.gen = lifecycle.Generation(plan)
        self.loop.run_until_complete(self.gen.start())
        (self.handler,) = self.gen.routes.values()

    def ask(self, msg: dns.message.Message, tcp: bool) -> dns.message.Message:
        pkt = msg.to_wire()
        if tcp:
            reply = self.handler.answer(pkt, True, 0, ("127.0.0.1", 5353))
        else:
            reply = self.handler.answer_udp(pkt, ("127.0.0.1", 5353))
        if reply is not None and not isinstance(reply, bytes):
            reply = self.loop.run_until_complete(reply)
        assert reply is not None
        return dns.message.from_wire(reply)

    def close(self) -> None:
        self.loop.run_until_complete(self.gen.retire())
        self.loop.close()


@pytest.fixture(scope="module")
def in_process() -> Iterator[_InProcess]:
    handler = _InProcess()
    try:
        yield handler
    finally:
        handler.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            c, id=c.id, marks=[pytest.mark.xfail(reason=c.bug, strict=True)] if c.bug else []
        )
        for c in CASES
    ],
)
def test_answer_in_process(in_process: _InProcess, case: Case, transport: str) -> None:
    """The same rows, through ``answer()`` in this process: what the sockets carry."""
    query = _query(case)
    query.flags |= dns.flags.RD
    reply = in_process.ask(query, transport == "tcp")
    assert reply.rcode() == case.rcode, reply.to_text()
    assert reply.flags & dns.flags.QR
    assert bool(reply.flags & dns.flags.AA) == case.aa, reply.to_text()
    assert reply.flags & dns.flags.RD, "RD must be copied from the query"
    assert not reply.flags & dns.flags.TC
    assert _normalise(rrset_texts(reply, "answer")) == _normalise(list(case.answer))
    assert _normalise(rrset_texts(reply, "authority")) == _normalise(list(case.authority))
    assert _normalise(rrset_texts(reply, "additional")) == _normalise(list(case.additional))
