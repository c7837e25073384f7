"""CoreDNS's per-query metrics, summed exactly over every path an answer takes.

The compiled-answer loop (C, or the ctypes loop with ``KDNS_UDP_FAST=0``), TCP, the
response cache's hits and the forwarder each count a query their own way, folded into
the same families at scrape time. Here a known set of queries goes to a real process and
the scrape must hold exactly their counts and the sums of their sizes, labelled with the
server block's zone that took each query (CoreDNS's ``zone`` label).
"""

from __future__ import annotations

import socket
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.process import ROOT, KdnsCommand, free_port, http_get, wait_until
from tests.support.upstreams import Dnsmasq, needs_dnsmasq

pytestmark = [pytest.mark.timeout(90), needs_dnsmasq]

EXAMPLES = ROOT / "examples" / "cluster"
CLUSTER = "cluster.local."
OUTSIDE = "."

# (zone label, name, type, EDNS): compiled answers, a search-path miss, NODATA, outside names
QUERIES = [
    (CLUSTER, "web.default.svc.cluster.local.", "A", False),
    (CLUSTER, "web.default.svc.cluster.local.", "A", True),
    (CLUSTER, "WEB.default.svc.cluster.local.", "AAAA", True),
    (CLUSTER, "web.default.default.svc.cluster.local.", "A", False),
    (CLUSTER, "default.svc.cluster.local.", "A", True),
    (OUTSIDE, "www.example.org.", "A", False),  # forwarded, then cache hits
    (OUTSIDE, "www.example.org.", "A", False),
    (OUTSIDE, "www.example.org.", "A", True),
]


@pytest.fixture(params=["c", "ctypes"], scope="module")
def kdns(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[KdnsCommand, int]]:
    tmp: Path = tmp_path_factory.mktemp("qmetrics")
    upstream = Dnsmasq({"www.example.org": "192.0.2.53"})
    dns_port, metrics_port = free_port(), free_port()
    (tmp / "Corefile").write_text(
        f"""cluster.local:{dns_port} {{
    kubernetes cluster.local {{
        manifests {EXAMPLES}
    }}
    prometheus 127.0.0.1:{metrics_port}
}}
.:{dns_port} {{
    prometheus 127.0.0.1:{metrics_port}
    cache 30
    forward . 127.0.0.1:{upstream.port}
}}
"""
    )
    env = {"KDNS_UDP_FAST": "0"} if request.param == "ctypes" else {}
    proc = KdnsCommand(["-conf", str(tmp / "Corefile")], dns_port, env=env)
    try:
        wait_until(lambda: proc.rcode("web.default.svc.cluster.local") == 0, timeout=20)
        wait_until(lambda: proc.rcode("www.example.org") == 0, timeout=10)
        yield proc, metrics_port
    finally:
        proc.stop()
        upstream.stop()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("coredns_dns_")
    }


def delta(
    before: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    after: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    name: str,
    **labels: str,
) -> float:
    def pick(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
        return sum(
            v
            for (n, lbl), v in samples.items()
            if n == name and labels.items() <= dict(lbl).items()
        )

    return pick(after) - pick(before)


def ask_udp(port: int, wire: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(wire, ("127.0.0.1", port))
        return s.recv(65535)


def ask_tcp(port: int, wire: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        head = s.recv(2, socket.MSG_WAITALL)
        (size,) = struct.unpack("!H", head)
        return s.recv(size, socket.MSG_WAITALL)


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_counts_and_size_sums_are_exact_per_zone(kdns: tuple[KdnsCommand, int], proto: str) -> None:
    proc, metrics_port = kdns
    before = scrape(metrics_port)
    sent: Counter[tuple[str, str]] = Counter()
    received: Counter[tuple[str, str]] = Counter()
    asked: Counter[str] = Counter()
    for zone, name, rdtype, edns in QUERIES:
        query = dns.message.make_query(name, rdtype, use_edns=0 if edns else None)
        wire = query.to_wire()
        reply = (ask_udp if proto == "udp" else ask_tcp)(proc.port, wire)
        assert dns.message.from_wire(reply).id == query.id
        sent[(zone, proto)] += len(wire)
        received[(zone, proto)] += len(reply)
        asked[zone] += 1
    after = scrape(metrics_port)
    for zone in (CLUSTER, OUTSIDE):
        labels = {"zone": zone, "proto": proto}
        assert delta(before, after, "coredns_dns_requests_total", **labels) == asked[zone]
        assert delta(before, after, "coredns_dns_request_size_bytes_count", **labels) == asked[zone]
        assert (
            delta(before, after, "coredns_dns_request_size_bytes_sum", **labels)
            == sent[(zone, proto)]
        ), zone
        assert (
            delta(before, after, "coredns_dns_response_size_bytes_sum", **labels)
            == received[(zone, proto)]
        ), zone
        assert delta(before, after, "coredns_dns_responses_total", zone=zone) == asked[zone]
        assert (
            delta(before, after, "coredns_dns_request_duration_seconds_count", zone=zone)
            == (asked[zone])
        )


def test_plugins_label_their_metrics_with_the_bound_server(tmp_path: Path) -> None:
    """Under ``bind``, the cache's metrics carry the same ``server`` label as the query
    metrics (CoreDNS takes both from the server that took the query)."""
    upstream = Dnsmasq({"www.example.org": "192.0.2.53"})
    dns_port, metrics_port = free_port(), free_port()
    (tmp_path / "Corefile").write_text(
        f""".:{dns_port} {{
    bind 127.0.0.1
    prometheus 127.0.0.1:{metrics_port}
    cache 30
    forward . 127.0.0.1:{upstream.port}
}}
"""
    )
    proc = KdnsCommand(["-conf", str(tmp_path / "Corefile")], dns_port)
    try:
        wait_until(lambda: proc.rcode("www.example.org") == 0, timeout=20)
        proc.query("www.example.org")
        status, text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        proc.stop()
        upstream.stop()
    assert status == 200
    servers = {
        family.name: {s.labels["server"] for s in family.samples}
        for family in text_string_to_metric_families(text)
        if family.name.startswith(("coredns_dns_requests", "coredns_cache_"))
    }
    assert servers["coredns_dns_requests"] == {f"dns://127.0.0.1:{dns_port}"}
    for name in ("coredns_cache_hits", "coredns_cache_misses", "coredns_cache_entries"):
        assert servers[name] == {f"dns://127.0.0.1:{dns_port}"}, name
