"""A real ``kdns serve`` answers through the UDP loop it says it uses, C or ctypes.

The other integration tests run kdns with the C loop (the default where it was built);
these check the start-up log names the loop and that ``KDNS_UDP_FAST=0`` (the ctypes
loop) and ``KDNS_UDP_BATCH=0`` (asyncio's datagram endpoint) still answer the same.
"""

from __future__ import annotations

import importlib.util

import dns.flags
import dns.rcode
import pytest

from tests.support.process import EXAMPLES, KdnsProcess, rrset_texts

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
