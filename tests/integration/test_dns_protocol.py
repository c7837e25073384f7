"""The wire protocol around the answers: EDNS0, truncation, TCP framing, bad input.

What a resolver library relies on besides the records themselves: an OPT record
back when it sent one (with DO echoed, RFC 3225, and our payload size), BADVERS for
an EDNS version we do not speak (RFC 6891 6.1.3), TC with only whole records when the
answer exceeds the client's UDP size (capped at 1232, the DNS Flag Day 2020 value) and
the full answer over TCP, pipelined TCP queries answered in order (RFC 7766), and
FORMERR/NOTIMP for what is not a well-formed QUERY, never larger than what was sent
(no amplification). Every check ends by making sure the server still answers.
"""

from __future__ import annotations

import random
import shutil
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.support.process import KdnsProcess, rrset_texts

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "cluster"
BIG = 150  # endpoints of the big headless service: ~2.4 kB of A records
MEDIUM = 40  # fits 1232 bytes, not 512
BIG_NAME = "big.stateful.svc.cluster.local."
MEDIUM_NAME = "medium.stateful.svc.cluster.local."
SINGLE = "single.apps.svc.cluster.local."


def _headless(name: str, count: int, third_octet: int) -> str:
    endpoints = "\n".join(
        f"  - addresses: [10.250.{third_octet}.{i + 1}]\n    conditions: {{ready: true}}"
        for i in range(count)
    )
    return f"""apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: stateful}}
spec:
  clusterIP: None
  ports: [{{name: http, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: stateful
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: 80, protocol: TCP}}]
endpoints:
{endpoints}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KdnsProcess]:
    """The fixture cluster plus two headless services sized around the UDP limits."""
    folder = tmp_path_factory.mktemp("protocol") / "cluster"
    shutil.copytree(FIXTURE, folder)
    (folder / "90-big.yaml").write_text(
        _headless("big", BIG, 1) + "---\n" + _headless("medium", MEDIUM, 2)
    )
    proc = KdnsProcess(folder)
    try:
        yield proc
    finally:
        proc.stop()


# -- raw socket helpers ----------------------------------------------------------------


def _udp_exchange(server: KdnsProcess, wire: bytes, timeout: float = 3.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(wire, (server.host, server.port))
        data, _ = sock.recvfrom(65535)
        return data


def _udp_no_reply_then_answer(server: KdnsProcess, bad: bytes) -> None:
    """Send ``bad`` then a valid query on one socket: the first reply must be the valid one.

    An event to wait on instead of a sleep: UDP from one server socket to one client
    socket on loopback arrives in order, so a reply to ``bad`` would come first.
    """
    probe = dns.message.make_query(SINGLE, "A", use_edns=False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(bad, (server.host, server.port))
        sock.sendto(probe.to_wire(), (server.host, server.port))
        data, _ = sock.recvfrom(65535)
    reply = dns.message.from_wire(data)
    assert reply.id == probe.id, "the server answered a packet it must ignore"
    assert rrset_texts(reply) == [f"{SINGLE} 5 IN A 10.96.1.1"]


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = b""
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        assert chunk, "connection closed early"
        buf += chunk
    return buf


def _tcp_read(sock: socket.socket) -> bytes:
    (size,) = struct.unpack("!H", _recv_exact(sock, 2))
    return _recv_exact(sock, size)


def _assert_alive(server: KdnsProcess) -> None:
    assert server.proc.poll() is None, server.log
    for tcp in (False, True):
        reply = server.query(SINGLE, "A", tcp=tcp)
        assert rrset_texts(reply) == [f"{SINGLE} 5 IN A 10.96.1.1"]


def _header(ident: int, flags: int, qd: int, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


def _question(name: str = SINGLE, qtype: int = 1) -> bytes:
    wire = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    return wire + struct.pack("!HH", qtype, 1)


# -- EDNS0 -----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_opt_echoed_only_when_asked(server: KdnsProcess, transport: str) -> None:
    """RFC 6891 7: a responder must not add OPT to a reply to a query without one."""
    tcp = transport == "tcp"
    plain = server.query(SINGLE, "A", tcp=tcp, use_edns=False)
    assert plain.edns == -1
    with_opt = server.query(SINGLE, "A", tcp=tcp, use_edns=0, payload=4096)
    assert with_opt.edns == 0
    assert with_opt.payload == 1232, "our advertised size is the configured cap"
    assert not with_opt.ednsflags & dns.flags.DO
    assert rrset_texts(with_opt) == [f"{SINGLE} 5 IN A 10.96.1.1"]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(
    "name", [SINGLE, "missing.apps.svc.cluster.local.", "1.1.96.10.in-addr.arpa."]
)
def test_do_bit_echoed(server: KdnsProcess, name: str, transport: str) -> None:
    """RFC 3225: DO is copied into the reply's OPT, on hits, misses and lazy answers alike."""
    qtype = "PTR" if name.endswith("arpa.") else "A"
    reply = server.query(name, qtype, tcp=transport == "tcp", want_dnssec=True)
    assert reply.edns == 0
    assert reply.ednsflags & dns.flags.DO


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_badvers_for_edns_version_1(server: KdnsProcess, transport: str) -> None:
    """RFC 6891 6.1.3: an unknown EDNS version gets BADVERS with our OPT (version 0)."""
    query = dns.message.make_query(SINGLE, "A", use_edns=1)
    if transport == "tcp":
        reply = dns.query.tcp(query, server.host, port=server.port, timeout=3)
    else:
        reply = dns.query.udp(query, server.host, port=server.port, timeout=3)
    assert reply.rcode() == dns.rcode.BADVERS
    assert reply.edns == 0
    assert not reply.answer
    _assert_alive(server)


def _udp_reply(
    server: KdnsProcess, name: str, payload: int | None
) -> tuple[bytes, dns.message.Message]:
    if payload is None:
        query = dns.message.make_query(name, "A", use_edns=False)
    else:
        query = dns.message.make_query(name, "A", use_edns=0, payload=payload)
    wire = _udp_exchange(server, query.to_wire())
    return wire, dns.message.from_wire(wire)


@pytest.mark.parametrize(
    ("payload", "limit"),
    [(None, 512), (512, 512), (1000, 1000), (1232, 1232), (4096, 1232), (65535, 1232)],
    ids=["no-edns", "512", "1000", "1232", "4096-capped", "65535-capped"],
)
def test_udp_size_honoured_with_cap(server: KdnsProcess, payload: int | None, limit: int) -> None:
    """The reply never exceeds min(client size, 1232) (512 without EDNS); TC marks the cut."""
    wire, reply = _udp_reply(server, BIG_NAME, payload)
    assert len(wire) <= limit
    assert reply.flags & dns.flags.TC
    full = server.query(BIG_NAME, "A", tcp=True)
    assert len(rrset_texts(full)) == BIG
    kept = rrset_texts(reply)
    assert set(kept) <= set(rrset_texts(full)), "a truncated answer holds only real records"
    # Whole records only, and as many as fit: one more 16-byte A record would not.
    assert len(wire) + 16 > limit


@pytest.mark.parametrize("payload", [None, 512])
def test_medium_answer_truncated_at_512_fits_1232(server: KdnsProcess, payload: int | None) -> None:
    """40 A records (~700 bytes) need EDNS: TC at 512, whole at 1232."""
    _, small = _udp_reply(server, MEDIUM_NAME, payload)
    assert small.flags & dns.flags.TC
    wire, roomy = _udp_reply(server, MEDIUM_NAME, 1232)
    assert not roomy.flags & dns.flags.TC
    assert len(rrset_texts(roomy)) == MEDIUM
    assert roomy.edns == 0
    assert len(wire) <= 1232


def test_truncated_reply_keeps_opt_and_question(server: KdnsProcess) -> None:
    """A TC reply is still a valid message: question echoed, OPT kept, no partial RR."""
    query = dns.message.make_query(
        BIG_NAME.upper(), "A", use_edns=0, payload=1232, want_dnssec=True
    )
    wire = query.to_wire()
    reply_wire = _udp_exchange(server, wire)
    qlen = len(_question(BIG_NAME))
    assert reply_wire[12 : 12 + qlen] == wire[12 : 12 + qlen]
    reply = dns.message.from_wire(reply_wire)  # raises on a cut record
    assert reply.flags & dns.flags.TC
    assert reply.edns == 0 and reply.ednsflags & dns.flags.DO
    assert not reply.authority


def test_tcp_gets_the_full_answer(server: KdnsProcess) -> None:
    """The same query over TCP (RFC 7766) gets all records, no TC."""
    reply = server.query(BIG_NAME, "A", tcp=True, use_edns=0, payload=512)
    assert not reply.flags & dns.flags.TC
    assert len(rrset_texts(reply)) == BIG
    srv = server.query(f"_http._tcp.{BIG_NAME}", "SRV", tcp=True)
    assert len(rrset_texts(srv)) == BIG
    assert len(rrset_texts(srv, "additional")) == BIG


def test_truncated_srv_over_udp_drops_additional(server: KdnsProcess) -> None:
    """An SRV answer too big for UDP is cut to whole SRV records and sets TC."""
    query = dns.message.make_query(f"_http._tcp.{BIG_NAME}", "SRV", use_edns=0, payload=1232)
    wire = _udp_exchange(server, query.to_wire())
    reply = dns.message.from_wire(wire)
    assert len(wire) <= 1232
    assert reply.flags & dns.flags.TC
    assert 0 < len(rrset_texts(reply)) < BIG


# -- TCP framing ---------------------------------------------------------------------------


def test_tcp_pipelining_in_order(server: KdnsProcess) -> None:
    """Several queries in one write on one connection are answered in order (RFC 7766 6.2.1.1)."""
    names = [
        SINGLE,
        "multi.apps.svc.cluster.local.",
        "missing.apps.svc.cluster.local.",
        "1.1.96.10.in-addr.arpa.",
        BIG_NAME,
        "dual.apps.svc.cluster.local.",
    ]
    queries = [
        dns.message.make_query(n, "PTR" if n.endswith("arpa.") else "A", use_edns=False)
        for n in names
    ]
    blob = b"".join(struct.pack("!H", len(w)) + w for w in (q.to_wire() for q in queries))
    with socket.create_connection((server.host, server.port), timeout=3) as sock:
        sock.sendall(blob)
        replies = [dns.message.from_wire(_tcp_read(sock)) for _ in queries]
        # A second round on the same connection, sent byte by byte: framing is a stream.
        again = dns.message.make_query(SINGLE, "A", use_edns=False).to_wire()
        for byte in struct.pack("!H", len(again)) + again:
            sock.sendall(bytes([byte]))
        last = dns.message.from_wire(_tcp_read(sock))
    assert [r.id for r in replies] == [q.id for q in queries]
    assert [r.rcode() for r in replies] == [0, 0, dns.rcode.NXDOMAIN, 0, 0, 0]
    assert rrset_texts(last) == [f"{SINGLE} 5 IN A 10.96.1.1"]


# -- bad input --------------------------------------------------------------------------------


def _bad_packets() -> list[tuple[str, bytes, int]]:
    """(id, packet, expected rcode) for malformed or unsupported queries."""
    rnd = random.Random(2)
    q = _question()
    garbage = _header(0x1111, 0x0100, 1) + bytes(rnd.randrange(256) for _ in range(40))
    return [
        ("garbage-name", _header(0x1111, 0x0100, 1) + b"\x3f" + b"x" * 10, dns.rcode.FORMERR),
        ("random-body", garbage, dns.rcode.FORMERR),
        ("truncated-question", _header(0x2222, 0x0100, 1) + q[:-3], dns.rcode.FORMERR),
        ("name-without-end", _header(0x2323, 0x0100, 1) + q[:10], dns.rcode.FORMERR),
        ("qdcount-0", _header(0x3333, 0x0100, 0), dns.rcode.FORMERR),
        ("qdcount-2", _header(0x4444, 0x0100, 2) + q + q, dns.rcode.FORMERR),
        ("qdcount-2-one-sent", _header(0x4545, 0x0100, 2) + q, dns.rcode.FORMERR),
        ("ancount-lie", _header(0x4646, 0x0100, 1, an=3) + q, dns.rcode.FORMERR),
        ("opcode-status", _header(0x5555, 2 << 11, 1) + q, dns.rcode.NOTIMP),
        ("opcode-notify", _header(0x6666, 4 << 11, 1) + q, dns.rcode.NOTIMP),
        ("opcode-update", _header(0x7777, 5 << 11, 1) + q, dns.rcode.NOTIMP),
        ("opcode-iquery", _header(0x7878, 1 << 11, 1) + q, dns.rcode.NOTIMP),
    ]


BAD = _bad_packets()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(
    ("packet", "rcode"), [(p, r) for _, p, r in BAD], ids=[i for i, _, _ in BAD]
)
def test_bad_input_gets_error_no_larger_than_query(
    server: KdnsProcess, packet: bytes, rcode: int, transport: str
) -> None:
    """FORMERR / NOTIMP with the ID echoed and QR set, never larger than the query."""
    if transport == "tcp":
        with socket.create_connection((server.host, server.port), timeout=3) as sock:
            sock.sendall(struct.pack("!H", len(packet)) + packet)
            reply = _tcp_read(sock)
    else:
        reply = _udp_exchange(server, packet)
    assert len(reply) >= 12
    assert len(reply) <= len(packet), "an error reply must not amplify"
    assert reply[:2] == packet[:2]
    assert reply[2] & 0x80, "QR set"
    assert reply[3] & 0x0F == rcode
    _assert_alive(server)


@pytest.mark.parametrize(
    "packet",
    [
        pytest.param(_header(0x8888, 0x8100, 1) + _question(), id="response-bit-set"),
        pytest.param(_header(0x8989, 0x8500, 1, an=1) + _question(), id="response-with-answer"),
        pytest.param(b"\x12\x34\x01", id="runt"),
        pytest.param(b"", id="empty"),
    ],
)
def test_responses_and_runts_are_ignored(server: KdnsProcess, packet: bytes) -> None:
    """Answering a response could start a loop between two servers; a runt has no header."""
    _udp_no_reply_then_answer(server, packet)
    _assert_alive(server)


def test_non_in_class_is_refused_not_amplified(server: KdnsProcess) -> None:
    """CHAOS/HESIOD questions are not ours: REFUSED, small."""
    packet = _header(0x9999, 0x0100, 1) + _question(qtype=16)[:-2] + struct.pack("!H", 3)
    reply = _udp_exchange(server, packet)
    assert reply[3] & 0x0F == dns.rcode.REFUSED
    assert len(reply) <= len(packet)
    _assert_alive(server)


def test_refused_out_of_zone_no_larger_than_query(server: KdnsProcess) -> None:
    """Out-of-zone REFUSED echoes the question and adds nothing: no amplification."""
    query = dns.message.make_query("www.example.com.", "A", use_edns=0)
    wire = query.to_wire()
    reply = _udp_exchange(server, wire)
    assert len(reply) <= len(wire)
    assert dns.message.from_wire(reply).rcode() == dns.rcode.REFUSED


@pytest.mark.parametrize("opcode", [1, 2, 4, 5], ids=["iquery", "status", "notify", "update"])
def test_notimp_echoes_opcode(server: KdnsProcess, opcode: int) -> None:
    """The opcode of a NOTIMP reply is the query's, so the client can match it."""
    packet = _header(0x5A5A, (opcode << 11) | 0x0100, 1) + _question()
    reply = _udp_exchange(server, packet)
    assert reply[3] & 0x0F == dns.rcode.NOTIMP
    assert (reply[2] >> 3) & 0x0F == opcode


def test_opcode_notimp_via_dnspython(server: KdnsProcess) -> None:
    """A NOTIFY built by a real library gets NOTIMP, and dnspython accepts the reply."""
    query = dns.message.make_query("cluster.local.", "SOA", use_edns=False)
    query.set_opcode(dns.opcode.NOTIFY)
    reply = dns.query.udp(query, server.host, port=server.port, timeout=3)
    assert reply.rcode() == dns.rcode.NOTIMP
    assert reply.opcode() == dns.opcode.NOTIFY


def test_two_opt_records_is_formerr(server: KdnsProcess) -> None:
    """RFC 6891 6.1.1: more than one OPT is a FORMERR."""
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    packet = _header(0xABCD, 0x0100, 1, ar=2) + _question() + opt + opt
    reply = _udp_exchange(server, packet)
    assert reply[3] & 0x0F == dns.rcode.FORMERR
    assert len(reply) <= len(packet)
    _assert_alive(server)
