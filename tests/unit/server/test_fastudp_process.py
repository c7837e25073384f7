"""A real ``kdns serve`` answers through the UDP loop it says it uses, C or ctypes.

The other integration tests run kdns with the C loop (the default where it was built);
these check the start-up log names the loop and that ``KDNS_UDP_FAST=0`` (the ctypes
loop) and ``KDNS_UDP_BATCH=0`` (asyncio's datagram endpoint) still answer the same.
With kubeadm's plugin set (``cache`` and ``forward`` to a real dnsmasq), the response-cache
hits the C loop serves must be what the ctypes loop's Python serves, and count the same.
"""

from __future__ import annotations

import importlib.util
import socket
import struct
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.process import (
    EXAMPLES,
    KdnsCommand,
    KdnsProcess,
    free_port,
    http_get,
    rrset_texts,
    wait_until,
)
from tests.support.upstreams import Dnsmasq, needs_dnsmasq

BUILT = importlib.util.find_spec("kdns.server._fastudp") is not None


def _answers(kdns: KdnsProcess) -> list[tuple[str, str, str, list[str], bool]]:
    """What a client sees for a few names: A, SRV, NXDOMAIN, NODATA, with and without EDNS
    (the SOA of negative answers carries the start-up time as its serial: left out)."""
    seen = []
    for name, rdtype, edns in [
        ("web.default.svc.cluster.local.", "A", False),
        ("WEB.default.svc.cluster.local.", "A", 0),
        ("_http._tcp.web.default.svc.cluster.local.", "SRV", 0),
        ("nosuch.default.svc.cluster.local.", "A", False),
        ("web.default.svc.cluster.local.", "TXT", 0),
    ]:
        for _ in range(2):  # the second ask finds the name cached: C may answer it
            msg = kdns.query(name, rdtype, use_edns=edns)
        rcode = dns.rcode.to_text(msg.rcode())
        seen.append((name, rdtype, rcode, rrset_texts(msg), bool(msg.flags & dns.flags.AA)))
    return seen


@pytest.mark.parametrize(
    ("env", "loop"),
    [
        ({}, "C" if BUILT else "ctypes"),
        ({"KDNS_UDP_FAST": "0"}, "ctypes"),
        ({"KDNS_UDP_BATCH": "0"}, "asyncio"),
    ],
)
def test_each_udp_loop_answers_alike(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], loop: str
) -> None:
    monkeypatch.setenv("KDNS_LOG_LEVEL", "debug")
    monkeypatch.delenv("KDNS_UDP_FAST", raising=False)
    monkeypatch.delenv("KDNS_UDP_BATCH", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    kdns = KdnsProcess(EXAMPLES)
    try:
        kdns.wait_for_log(f"UDP on .* is read by the {loop}")
        seen = _answers(kdns)
    finally:
        kdns.stop()
    assert seen[0][2:] == ("NOERROR", ["web.default.svc.cluster.local. 5 IN A 10.96.0.20"], True)
    assert [row[2] for row in seen] == ["NOERROR", "NOERROR", "NOERROR", "NXDOMAIN", "NOERROR"]
    monkeypatch.setenv("KDNS_UDP_FAST", "0")
    monkeypatch.delenv("KDNS_UDP_BATCH", raising=False)
    reference = KdnsProcess(EXAMPLES)
    try:
        assert _answers(reference) == seen
    finally:
        reference.stop()


# kubeadm's default Corefile's query plugins (as benchmarks/harness.py writes it).
COREFILE = """.:{port} {{
    bind 127.0.0.1
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
       manifests {manifests}
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    prometheus 127.0.0.1:{metrics}
    forward . 127.0.0.1:{upstream}
    cache 30 {{
       disable success cluster.local
       disable denial cluster.local
    }}
    loop
    loadbalance
}}
"""
DURATION = "coredns_dns_request_duration_seconds"
EXTERNAL = ["www.example.org.", "other.example.org.", "WWW.Example.ORG."]


def _wire(name: str, ident: int, edns: bool, do: bool, cd: bool) -> bytes:
    msg = dns.message.make_query(name, "A", use_edns=0 if edns else False, want_dnssec=do)
    msg.id = ident
    msg.flags = dns.flags.RD | (dns.flags.CD if cd else 0)
    return msg.to_wire()


def _normal(reply: bytes) -> tuple[int, str]:
    """A reply with its TTLs zeroed (the two processes run seconds apart), and its size."""
    msg = dns.message.from_wire(reply)
    for section in (msg.answer, msg.authority, msg.additional):
        for rrset in section:
            rrset.ttl = 0
    return len(reply), msg.to_text()


def _counted(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The per-query and cache counters (durations' buckets and sums vary: their counts
    only), without
    the ``server`` label (it holds the port)."""
    status, text = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "server"))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith(("coredns_dns_", "coredns_cache_"))
        and s.name not in (DURATION + "_bucket", DURATION + "_sum")
        and not s.name.endswith("_created")
    }


def _serve_external(tmp: Path, dnsmasq: Dnsmasq, env: dict[str, str]) -> tuple[object, ...]:
    """Each external name's replies, asked several times in every variant, and the counts
    those asks added (a scrape before and after)."""
    port, metrics = free_port(), free_port()
    corefile = tmp / f"Corefile.{port}"
    corefile.write_text(
        COREFILE.format(port=port, manifests=EXAMPLES, metrics=metrics, upstream=dnsmasq.port)
    )
    kdns = KdnsCommand(["-conf", str(corefile)], port, env={"KDNS_LOG_LEVEL": "debug", **env})
    try:
        wait_until(lambda: kdns.rcode("web.default.svc.cluster.local") == 0, timeout=20)
        loop = "ctypes" if env.get("KDNS_UDP_FAST") == "0" else "C"
        assert f"is read by the {loop}" in kdns.log
        before = _counted(metrics)
        replies = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            client.connect(("127.0.0.1", port))
            ident = 0
            for name in EXTERNAL:
                for edns, do, cd in ((False, False, False), (True, False, False),
                                     (True, True, False), (True, True, True)):  # fmt: skip
                    for _ in range(4):  # a miss, a hit (remembered), then C's hits
                        ident += 1
                        client.send(_wire(name, ident, edns, do, cd))
                        reply = client.recv(65535)
                        assert struct.unpack("!H", reply[:2])[0] == ident
                        replies.append(_normal(reply))
        after = _counted(metrics)
    finally:
        kdns.stop()
    counts = {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}
    return replies, counts


@needs_dnsmasq
@pytest.mark.skipif(not BUILT, reason="the C extension was not built")
def test_cache_hits_from_c_equal_the_ctypes_loop_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KDNS_UDP_FAST", raising=False)
    monkeypatch.delenv("KDNS_UDP_BATCH", raising=False)
    dnsmasq = Dnsmasq({"www.example.org": "192.0.2.53", "other.example.org": "192.0.2.54"})
    try:
        c_replies, c_counts = _serve_external(tmp_path, dnsmasq, {})
        py_replies, py_counts = _serve_external(tmp_path, dnsmasq, {"KDNS_UDP_FAST": "0"})
    finally:
        dnsmasq.stop()
    assert c_replies == py_replies
    assert c_counts == py_counts
    hits = sum(v for (name, _), v in c_counts.items() if name == "coredns_cache_hits_total")
    # 48 asks; 6 misses: two names' keys by [DO][CD] (EDNS alone is no key of its own,
    # and "WWW.Example.ORG." shares www's entries).
    assert hits == 42
