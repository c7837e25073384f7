"""The C compiled-answer loop (kdns.server._fastudp) answers exactly as the Python path.

A real DNSServer with the C loop serves on 127.0.0.1, ::1 or a dual-stack socket, its
event loop in a thread. Beside it, a reference Handler over the same cluster table
answers each query through ``answer_udp`` in process (on the server's loop: the table is
not shared across threads). Every reply must be byte-identical, C must answer the
compiled answers itself (the server handler's ``answer_udp`` is not called for them),
decline everything else to Python, and count what it answers as ``_quick`` counts it.
With a response cache (an in-process upstream, both caches on one test clock), C serves
the hits the handler remembered (``Handler.hits``) exactly when ``_outside`` would.
"""

from __future__ import annotations

import asyncio
import select
import shutil
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdns.cluster import manifests, resolver, store, table
from kdns.dns import metrics
from kdns.dns.tasks import Tasks
from kdns.plugins.cache import respcache
from kdns.plugins.cache.setup import CacheConfig
from kdns.query import chain, handler
from kdns.server import transport
from kdns.server.plan import ListenAddress
from tests.unit.plugins.cache import test_hit_memo
from tests.unit.server import test_udp_batch

_fastudp = pytest.importorskip("kdns.server._fastudp", reason="the C extension was not built")

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "cluster"
ZONES = ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")
BIG = 80  # endpoints of the big headless service: its A answer needs truncation at 512


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def _manifests(folder: Path) -> Path:
    """The shared test cluster plus a headless service too big for a 512-byte answer."""
    for item in FIXTURE.iterdir():
        shutil.copy(item, folder / item.name)
    endpoints = "\n".join(
        f"  - addresses: [10.245.{i // 200}.{i % 200 + 1}]\n    conditions: {{ready: true}}"
        for i in range(BIG)
    )
    (folder / "90-big.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: big, namespace: stateful}\n"
        "spec:\n  clusterIP: None\n  ports: [{name: http, port: 80}]\n---\n"
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: big-1\n"
        "  namespace: stateful\n  labels: {kubernetes.io/service-name: big}\n"
        "addressType: IPv4\nports: [{name: http, port: 80, protocol: TCP}]\n"
        f"endpoints:\n{endpoints}\n"
    )
    return folder


class Caching:
    """A ``.`` block's response cache and its in-process upstream, on a shared test clock."""

    def __init__(self, clock: test_hit_memo.Clock, capacity: int) -> None:
        self.upstream = test_hit_memo.Upstream()
        config = CacheConfig(zones=(".",), success_capacity=capacity, denial_capacity=capacity)
        self.cache = respcache.ResponseCache(config, downstream=self.upstream.forward, clock=clock)


def _handler(
    tbl: table.Table,
    positive_only: bool,
    max_udp: int,
    zone: str = ".",
    caching: Caching | None = None,
    cluster: bool = True,
) -> handler.Handler:
    stats = metrics.QueryStats("dns://:53")
    blocks = [chain.Block(zones=ZONES, kube=chain.Kube(tbl, ZONES))]
    if caching is not None:
        blocks.append(chain.Block(zones=(".",), upstream=caching.upstream, cache=caching.cache))
    route = handler.FastRoute(tbl, zone, positive_only=positive_only) if cluster else None
    return handler.Handler(route, stats, chain.Pipeline(blocks, stats), max_udp=max_udp)


class Served:
    """A DNSServer with the C loop, and a reference handler over the same table."""

    def __init__(
        self,
        folder: Path,
        host: str = "127.0.0.1",
        loadbalance: bool = False,
        positive_only: bool = False,
        max_udp: int = 1232,
        zone: str = ".",
        capacity: int = 0,
        cluster: bool = True,
    ) -> None:
        """``zone``: the fast route's (stats.fast_zone); ``capacity``: with a response
        cache of that many entries per kind; ``cluster``: False, no fast route at all."""
        data = store.Store()
        manifests.ManifestsSource(folder, data).load()
        self.table = table.Table(data, resolver.Resolver(data, resolver.Settings(zones=ZONES)))
        self.table.rebuild()
        self.table.loadbalance = loadbalance
        self.clock = test_hit_memo.Clock()
        self.caching = [Caching(self.clock, capacity) for _ in range(2)] if capacity else []
        mine, ref = self.caching or (None, None)
        self.handler = _handler(self.table, positive_only, max_udp, zone, mine, cluster)
        self.ref = _handler(self.table, positive_only, max_udp, zone, ref, cluster)
        self.python_calls = 0  # datagrams C declined to the server handler's answer_udp
        answer_udp = self.handler.answer_udp

        def counted(pkt: bytes, addr: tuple[object, ...]) -> Any:
            if pkt not in self.sentinels:
                self.python_calls += 1
            return answer_udp(pkt, addr)

        self.handler.answer_udp = counted  # type: ignore[method-assign]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = transport.DNSServer(ListenAddress(host, 0), self.handler, Tasks())
        self._run(self.server.start())
        udp = self.server._udp
        assert isinstance(udp, transport._BatchedUDP) and udp.fast is not None, "C loop unused"
        self.family = udp.family
        self.host = host or "::1"
        self.sentinels: set[bytes] = set()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def client(self, family: socket.AddressFamily | None = None) -> socket.socket:
        fam = family if family is not None else self.family
        sock = socket.socket(fam, socket.SOCK_DGRAM)
        sock.settimeout(10)  # a safety net only: every wait ends on a reply
        target = "127.0.0.1" if fam == socket.AF_INET else self.host
        sock.connect((target, self.server.port))
        return sock

    def expected(self, pkt: bytes, client: socket.socket) -> bytes | None:
        """What Python's answer_udp says to this client (on the server's loop)."""
        local = client.getsockname()
        if self.family == socket.AF_INET6 and client.family == socket.AF_INET:
            addr: tuple[object, ...] = ("::ffff:" + local[0], local[1], 0, 0)
        else:
            addr = tuple(local)

        async def answer() -> bytes | None:
            result = self.ref.answer_udp(pkt, addr)
            if result is None or isinstance(result, bytes):
                return result
            return await result

        result: bytes | None = self._run(answer())
        return result

    def exchange(self, pkt: bytes, client: socket.socket, expect: bool = False) -> bytes | None:
        """The server's reply to ``pkt``, or None: a sentinel query (always answered, by
        Python) follows it, and its reply closes the wait (or, when a reply is expected,
        the reply does: the chain may answer after the sentinel)."""
        ident = (int.from_bytes(pkt[:2].ljust(2, b"\0"), "big") ^ 0x5A5A) & 0xFFFF
        sentinel = struct.pack("!HH8x", ident, 0x0100)  # no question: FORMERR, from Python
        self.expected(sentinel, client)  # the reference counts it too
        self.sentinels.add(sentinel)
        client.send(pkt)
        client.send(sentinel)
        reply = None
        closed = False
        while not closed or (expect and reply is None):
            got = client.recv(65535)
            if got[:2] == sentinel[:2] and len(got) == 12 and got[3] & 0x0F == 1:
                closed = True
                continue
            assert reply is None, "two replies to one query"
            reply = got
            if expect:
                closed = closed or self._drain_sentinel(client, sentinel)
        return reply

    def _drain_sentinel(self, client: socket.socket, sentinel: bytes) -> bool:
        got = client.recv(65535)
        assert got[:2] == sentinel[:2], "two replies to one query"
        return True

    def check(self, pkt: bytes, client: socket.socket) -> bytes | None:
        """Send ``pkt``; its reply must be what the Python path sends."""
        want = self.expected(pkt, client)
        got = self.exchange(pkt, client, want is not None)
        assert got == want, (pkt, got, want)
        return got

    def same_metrics(self) -> None:
        """C counted its answers as _quick counts them: the same labelled counters."""
        mine, ref = self.handler.stats, self.ref.stats
        assert mine.fast == ref.fast
        assert mine.outside == ref.outside
        for stats in (mine, ref):
            stats.expand_fast()
        for field in ("requests", "responses", "do_requests"):
            assert getattr(mine, field) == getattr(ref, field), field
        for field in ("request_size", "response_size"):
            assert {k: v.counts for k, v in getattr(mine, field).items()} == {
                k: v.counts for k, v in getattr(ref, field).items()
            }, field
        # The same answers timed, per zone (bucket by bucket may differ).
        timed = [{z: sum(h.counts) for z, h in s.duration.items()} for s in (mine, ref)]
        assert timed[0] == timed[1]
        if self.caching:
            c, d = (cached.cache.counts for cached in self.caching)
            assert (c.requests, c.misses, c.hits, c.evictions) == (
                d.requests, d.misses, d.hits, d.evictions
            )  # fmt: skip
            assert self.caching[0].upstream.asked == self.caching[1].upstream.asked

    def close(self) -> None:
        self._run(self.server.close(0.1))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _manifests(tmp_path_factory.mktemp("cluster"))


@pytest.fixture
def served(folder: Path) -> Iterator[Served]:
    s = Served(folder)
    yield s
    s.close()


def query(
    name: str,
    rdtype: str = "A",
    edns: int | bool = False,
    payload: int = 1232,
    do: bool = False,
    cd: bool = False,
    rd: bool = True,
    ident: int = 0x1234,
) -> bytes:
    q = dns.message.make_query(name, rdtype, use_edns=edns, payload=payload, want_dnssec=do)
    q.id = ident
    q.flags = (dns.flags.RD if rd else 0) | (dns.flags.CD if cd else 0)
    return q.to_wire()


COMPILED = [
    ("single.apps.svc.cluster.local.", "A"),
    ("single.apps.svc.cluster.local.", "AAAA"),  # NODATA
    ("single.apps.svc.cluster.local.", "TXT"),  # NODATA, the DEFAULT answer
    ("_http._tcp.multi.apps.svc.cluster.local.", "SRV"),
    ("web-0.hl.stateful.svc.cluster.local.", "A"),
    ("hl.stateful.svc.cluster.local.", "A"),
    ("1.1.96.10.in-addr.arpa.", "PTR"),
    ("web.default.svc.cluster.local.", "A"),
    ("missing.apps.svc.cluster.local.", "A"),  # NXDOMAIN, a cached template
    ("missing.apps.svc.cluster.local.", "AAAA"),
]


@pytest.mark.parametrize(("name", "rdtype"), COMPILED)
def test_compiled_answers_come_from_c_byte_for_byte(served: Served, name: str, rdtype: str) -> None:
    client = served.client()
    try:
        variants = [
            query(name, rdtype),
            query(name.upper(), rdtype, rd=False, ident=7),
            query(name, rdtype, edns=0, payload=4096, do=True),
            query(name, rdtype, edns=0, payload=100, cd=True),  # clamped up to 512
            query(name.swapcase(), rdtype, edns=0, do=True, cd=True, ident=0xFFFF),
        ]
        served.check(variants[0], client)  # the first ask unpacks the name into nodes
        before = served.python_calls
        for pkt in variants:
            assert served.check(pkt, client) is not None
        assert served.python_calls == before, "C declined a compiled answer"
        served.same_metrics()
    finally:
        client.close()


DECLINED = {
    "not-asked-yet": query("nobody.apps.svc.cluster.local."),
    "any": query("single.apps.svc.cluster.local.", "ANY"),
    "truncated": query("big.stateful.svc.cluster.local."),
    "truncated-edns": query("big.stateful.svc.cluster.local.", edns=0, payload=600),
    "edns-version-1": query("single.apps.svc.cluster.local.", edns=1),
    "runt-5": b"\x12\x34\x01\x00\x00",
    "runt-12": b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",
    "runt-16": b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00",
    "response": b"\x12\x34\x81\x00" + query("single.apps.svc.cluster.local.")[4:],
    "opcode-status": b"\x12\x34\x11\x00" + query("single.apps.svc.cluster.local.")[4:],
    "opcode-notify": b"\x12\x34\x21\x00" + query("single.apps.svc.cluster.local.")[4:],
    "qdcount-2": query("single.apps.svc.cluster.local.")[:5]
    + b"\x02"
    + query("single.apps.svc.cluster.local.")[6:] * 1,
    "qdcount-0": query("single.apps.svc.cluster.local.")[:5]
    + b"\x00"
    + query("single.apps.svc.cluster.local.")[6:],
    "class-chaos": query("single.apps.svc.cluster.local.")[:-1] + b"\x03",
    "trailing-byte": query("single.apps.svc.cluster.local.") + b"\x00",
    "two-opt": query("single.apps.svc.cluster.local.", edns=0)[:11]
    + b"\x02"
    + query("single.apps.svc.cluster.local.", edns=0)[12:]
    + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00",
    # "single" with a zero byte inside its first label: the name does not end there.
    "zero-in-label": b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    + b"\x06sin\x00le\x04apps\x03svc\x07cluster\x05local\x00\x00\x01\x00\x01",
    "pointer": b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
    "label-past-end": b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3f" + b"a" * 10,
}


@pytest.mark.parametrize("case", sorted(DECLINED))
def test_everything_else_goes_to_python_unchanged(served: Served, case: str) -> None:
    client = served.client()
    pkt = DECLINED[case]
    try:
        served.check(query("single.apps.svc.cluster.local."), client)  # unpacked: C may answer
        before = served.python_calls
        if case == "not-asked-yet":  # the server first: no reference lookup before it
            assert served.exchange(pkt, client, True) == served.expected(pkt, client)
        else:
            served.check(pkt, client)
        assert served.python_calls == before + 1, "C answered what Python must"
        served.same_metrics()
    finally:
        client.close()


def test_truncation_and_zero_byte_replies_are_the_python_ones(served: Served) -> None:
    client = served.client()
    try:
        reply = served.check(DECLINED["truncated"], client)
        assert reply is not None and reply[2] & 0x02, "TC not set"
        served.check(query("single.apps.svc.cluster.local."), client)
        # Python's answer: NXDOMAIN for the name "sin\000le.apps...", never single's A.
        reply = served.check(DECLINED["zero-in-label"], client)
        assert reply is not None and reply[3] & 0x0F == 3 and reply[6:8] == b"\0\0"
    finally:
        client.close()


def test_an_oversize_datagram_is_dropped(served: Served) -> None:
    """Bigger than a buffer slot (MSG_TRUNC): no query, no reply, as the ctypes loop."""
    client = served.client()
    try:
        pkt = query("single.apps.svc.cluster.local.", edns=0)
        big = pkt[:-2] + struct.pack("!H", 5000) + b"\0" * 5000
        before = served.python_calls
        assert served.exchange(big, client) is None
        assert served.python_calls == before
    finally:
        client.close()


def test_a_burst_mixed_in_one_batch(served: Served) -> None:
    """C's answers and Python's share a sendmmsg: every query gets its own reply."""
    client = served.client()
    names = [n for n, _ in COMPILED] + ["nobody.apps.svc.cluster.local."]
    pkts = [query(names[i % len(names)], ident=i) for i in range(200)]
    try:
        want = {}
        for pkt in pkts:
            want[pkt[:2]] = served.expected(pkt, client)
        for pkt in pkts:
            client.send(pkt)
        got = {}
        while len(got) < len(pkts):
            reply = client.recv(65535)
            got[reply[:2]] = reply
        assert got == want
        served.same_metrics()
    finally:
        client.close()


@pytest.mark.skipif(not _ipv6(), reason="no IPv6 loopback")
@pytest.mark.parametrize("host", ["::1", ""])
def test_ipv6_and_v4_mapped_clients(folder: Path, host: str) -> None:
    s = Served(folder, host=host)
    try:
        families = [socket.AF_INET6] + ([socket.AF_INET] if host == "" else [])
        for family in families:
            client = s.client(family)
            try:
                for name, rdtype in COMPILED:
                    s.check(query(name, rdtype), client)
                    s.check(query(name, rdtype, edns=0, do=True), client)
            finally:
                client.close()
        assert any(key[4] for key in s.handler.stats.fast), "no IPv6 answer counted"
        if host == "":
            assert any(not key[4] for key in s.handler.stats.fast), "v4-mapped counted as IPv6"
        s.same_metrics()
    finally:
        s.close()


@pytest.mark.parametrize(
    ("loadbalance", "positive_only", "max_udp"), [(True, False, 1232), (False, True, 700)]
)
def test_rotations_positive_only_and_max_udp(
    folder: Path, loadbalance: bool, positive_only: bool, max_udp: int
) -> None:
    s = Served(folder, loadbalance=loadbalance, positive_only=positive_only, max_udp=max_udp)
    client = s.client()
    try:
        for ident in range(12):  # rotations are picked by the query ID's low byte
            for name, rdtype in COMPILED:
                s.check(query(name, rdtype, ident=ident), client)
                s.check(query(name, rdtype, edns=0, payload=4096, ident=ident), client)
            s.check(query("big.stateful.svc.cluster.local.", edns=0, ident=ident), client)
        s.same_metrics()
    finally:
        client.close()
        s.close()


def test_kdns_udp_fast_0_keeps_the_ctypes_loop(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(transport.FAST_ENV, "0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert transport._fast_batch(sock) is None
    monkeypatch.setenv(transport.FAST_ENV, "1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert transport._fast_batch(sock) is not None
        monkeypatch.setattr(transport, "FAST_ABI", transport.FAST_ABI + 1)
        assert transport._fast_batch(sock) is None  # a stale build is not used


def test_a_failing_batch_still_sends_c_answers_and_forgets_the_rest(served: Served) -> None:
    """A bug past the answers (here a stats object without counters) raises, C's replies
    leave anyway, and nothing of the batch is left in ``declined`` for the next one."""
    pkt = query("single.apps.svc.cluster.local.")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.setblocking(False)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(10)
            client.connect(srv.getsockname())
            batch = transport._fast_batch(srv)
            assert batch is not None
            served.expected(pkt, client)  # the name unpacked: C answers it
            client.send(pkt)
            client.send(struct.pack("!HH8x", 9, 0x0100))  # declined to Python
            select.select([srv], [], [], 10)
            declined: list[Any] = [(0, b"stale", b"")]
            tbl = served.table
            with pytest.raises(AttributeError):
                batch.receive(
                    tbl.nodes, tbl.packed, tbl.lazy, {}, object(), ".", False, 1232, declined,
                    None,
                )  # fmt: skip
            assert declined == []
            assert client.recv(4096) == served.expected(pkt, client)


def test_the_ctypes_loop_still_answers_a_burst(monkeypatch: pytest.MonkeyPatch) -> None:
    """test_udp_batch's burst runs the C loop by default; here the ctypes one."""
    monkeypatch.setenv(transport.FAST_ENV, "0")
    test_udp_batch.test_a_burst_is_answered_each_to_its_sender()


def test_c_knows_the_table_s_special_types() -> None:
    assert set(_fastudp.SPECIAL) == set(table.SPECIAL)
    assert transport.UDP_BATCH == _fastudp.BATCH
    assert transport.UDP_SLOT == _fastudp.SLOT


# -- random and mutated packets ----------------------------------------------------------


BASES = [
    query(name, rdtype, edns=edns, do=do)
    for name, rdtype in COMPILED
    for edns, do in ((False, False), (0, False), (0, True))
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    pkt = bytearray(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.integers(0, 4))
        at = draw(st.integers(0, len(pkt) - 1))
        if kind == 0:
            pkt[at] = draw(st.integers(0, 255))
        elif kind == 1:
            pkt[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == 2:
            del pkt[at:]
            if not pkt:
                pkt.append(0)
        elif kind == 3:
            pkt += draw(st.binary(max_size=12))
        else:
            pkt[at] = draw(st.sampled_from([0, 0x3F, 0x40, 0xC0, ord("A")]))
    return bytes(pkt)


@pytest.fixture(scope="module")
def fuzzed(folder: Path) -> Iterator[tuple[Served, socket.socket]]:
    s = Served(folder)
    client = s.client()
    for pkt in BASES:
        s.check(pkt, client)  # every base name unpacked: C answers their mutations
    yield s, client
    client.close()
    s.close()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pkt=st.one_of(mutated(), st.binary(min_size=1, max_size=80)))
def test_random_and_mutated_packets_agree(fuzzed: tuple[Served, socket.socket], pkt: bytes) -> None:
    served, client = fuzzed
    served.check(pkt, client)


def test_fuzzed_metrics_agree(fuzzed: tuple[Served, socket.socket]) -> None:
    fuzzed[0].same_metrics()


# -- remembered response-cache hits ------------------------------------------------------


OUTSIDE = "www.example.org."


def _outside_variants(name: str) -> list[bytes]:
    """A name outside the cluster zones as clients ask it: plain, EDNS with DO and/or CD,
    a small payload (clamped to 512), another case."""
    return [
        query(name),
        query(name, edns=0, do=True),
        query(name, edns=0, cd=True),
        query(name, edns=0, do=True, cd=True, payload=4096),
        query(name, edns=0, payload=100),
        query(name.upper(), rd=False),
    ]


def _fill(s: Served, name: str, family: socket.AddressFamily | None = None) -> None:
    """Ask until the hit is remembered (a miss forwards it, the next hit is remembered)."""
    client = s.client(family)
    try:
        for pkt in _outside_variants(name):
            s.check(pkt, client)  # a miss: forwarded, stored
            s.check(pkt, client)  # a hit: remembered by Python
    finally:
        client.close()


def _ttl(reply: bytes | None) -> int:
    assert reply is not None
    msg = dns.message.from_wire(reply)
    rrsets = msg.answer or msg.authority
    return int(rrsets[0].ttl)


@pytest.mark.parametrize("zone", [".", "cluster.local."])
def test_remembered_cache_hits_come_from_c_byte_for_byte(folder: Path, zone: str) -> None:
    """Each variant's second hit (a new ID) is C's; counted as _outside counts it, with the
    first duration bucket only for the fast route's zone (here "." or another block)."""
    s = Served(folder, zone=zone, capacity=100)
    client = s.client()
    try:
        _fill(s, OUTSIDE)
        assert len(s.handler.hits) == len(_outside_variants(OUTSIDE))
        before = s.python_calls
        for ident in range(3):
            for pkt in _outside_variants(OUTSIDE):
                again = bytes((ident, 0x77)) + pkt[2:]
                assert s.check(again, client) is not None
        assert s.python_calls == before, "C declined a remembered hit"
        assert s.handler.stats.outside, "no cache hit counted"
        s.same_metrics()
    finally:
        client.close()
        s.close()


def test_a_ttl_ticking_over_a_second_boundary_is_served_by_python_once(folder: Path) -> None:
    s = Served(folder, capacity=100)
    client = s.client()
    pkt = query(OUTSIDE, edns=0)
    try:
        s.clock.now = 1000.3
        s.check(pkt, client)  # stored at 1000.3
        s.check(pkt, client)  # remembered
        before = s.python_calls
        ttls = []
        for step in range(8):  # 1000.3 .. 1003.1: the TTL ticks at 1001.3, 1002.3, 1003.3
            s.clock.now = 1000.3 + 0.4 * step
            ttls.append(_ttl(s.check(pkt, client)))
        assert ttls == [30, 30, 30, 29, 29, 28, 28, 28]
        assert s.python_calls == before + 2, "one Python answer per tick, C the others"
        s.same_metrics()
    finally:
        client.close()
        s.close()


def test_expired_replaced_and_shadowed_entries_are_never_served_stale(folder: Path) -> None:
    s = Served(folder, capacity=100)
    client = s.client()
    pkt = query(OUTSIDE)
    try:
        s.check(pkt, client)
        s.check(pkt, client)  # remembered
        before = s.python_calls
        s.check(pkt, client)
        assert s.python_calls == before
        for cached in s.caching:  # expired, refilled with another address
            cached.upstream.address = "192.0.2.77"
        s.clock.now += 31
        reply = s.check(pkt, client)
        assert reply is not None and bytes((192, 0, 2, 77)) in reply
        assert s.python_calls == before + 1
        s.check(pkt, client)  # the new entry, remembered
        s.check(pkt, client)  # C's
        assert s.python_calls == before + 2
        # A denial stored for the same key shadows the success entry (as a refresh may).
        key = b"\x03www\x07example\x03org\x00\x00\x01\x00"  # name, type A, no DO/CD

        async def shadow() -> None:
            for cached in s.caching:
                cached.upstream.nx = True
                denial = await cached.upstream.forward(pkt, False)
                assert denial is not None
                cached.cache.fill(denial, key, None)

        s._run(shadow())
        reply = s.check(pkt, client)
        assert reply is not None and reply[3] & 0x0F == 3, "the shadowed success was served"
        s.check(pkt, client)  # the denial's hit, remembered by the ask before: C's
        s.check(pkt, client)
        assert s.python_calls == before + 3
        s._run(_clear(s))  # a clear: nothing is current
        s.check(pkt, client)
        assert s.python_calls == before + 4
        s.same_metrics()
    finally:
        client.close()
        s.close()


async def _clear(s: Served) -> None:
    for cached in s.caching:
        cached.cache.clear()


def test_evicted_entries_are_not_served_from_c(folder: Path) -> None:
    """Two names through a one-entry cache: each ask evicts the other's entry."""
    s = Served(folder, capacity=1)
    client = s.client()
    try:
        for ident in range(1, 12):
            name = ("a.example.org.", "b.example.org.")[ident % 2]
            for again in range(3):
                s.check(query(name, ident=ident * 4 + again), client)
        s.same_metrics()
        assert s.caching[0].cache.counts.evictions  # the evictions happened
    finally:
        client.close()
        s.close()


def test_hinfo_and_routed_cluster_names_stay_python_s(folder: Path) -> None:
    """A loop probe's type (HINFO) is never C's; a name routed to the chain (None) neither."""
    s = Served(folder, capacity=100)
    client = s.client()
    try:
        pkt = query(OUTSIDE, "HINFO")
        s.check(pkt, client)
        s.check(pkt, client)
        before = s.python_calls
        s.check(pkt, client)
        assert s.python_calls == before + 1
        s.same_metrics()
    finally:
        client.close()
        s.close()


def test_a_burst_of_remembered_hits_and_compiled_answers(folder: Path) -> None:
    """Hits of several names and variants mixed with compiled answers in full batches:
    every reply byte for byte, every count equal (C counts a batch's hits per key)."""
    s = Served(folder, capacity=100)
    client = s.client()
    names = ["www.example.org.", "a.example.org.", "b.example.net."]
    try:
        for name in names:
            _fill(s, name)
        for name, rdtype in COMPILED:
            s.check(query(name, rdtype), client)
        variants = [v for name in names for v in _outside_variants(name)]
        variants += [query(name, rdtype) for name, rdtype in COMPILED]
        pkts = [struct.pack("!H", i) + variants[i % len(variants)][2:] for i in range(300)]
        want = {pkt[:2]: s.expected(pkt, client) for pkt in pkts}
        before = s.python_calls
        got = {}
        for at in range(0, len(pkts), 64):  # bursts of two batches: no socket buffer overruns
            for pkt in pkts[at : at + 64]:
                client.send(pkt)
            while len(got) < min(at + 64, len(pkts)):
                reply = client.recv(65535)
                got[reply[:2]] = reply
        assert got == want
        assert s.python_calls == before
        s.same_metrics()
    finally:
        client.close()
        s.close()


def test_remembered_hits_without_a_cluster_table(folder: Path) -> None:
    """A server with no kubernetes route: C still serves the remembered hits."""
    s = Served(folder, capacity=100, cluster=False)
    client = s.client()
    try:
        _fill(s, OUTSIDE)
        before = s.python_calls
        for pkt in _outside_variants(OUTSIDE):
            s.check(b"\x55\x55" + pkt[2:], client)
        assert s.python_calls == before
        s.check(query("single.apps.svc.cluster.local."), client)  # the chain's
        assert s.python_calls == before + 1
        s.same_metrics()
    finally:
        client.close()
        s.close()


@pytest.mark.skipif(not _ipv6(), reason="no IPv6 loopback")
@pytest.mark.parametrize("host", ["::1", ""])
def test_ipv6_clients_hits_are_not_remembered(folder: Path, host: str) -> None:
    """_outside remembers IPv4 hits only: an IPv6 client's hits are Python's every time;
    a v4-mapped client of a dual-stack socket counts as IPv4 and gets C's."""
    s = Served(folder, host=host, capacity=100)
    try:
        client = s.client(socket.AF_INET6)
        try:
            for _ in range(3):
                for pkt in _outside_variants(OUTSIDE):
                    s.check(pkt, client)
            assert not s.handler.hits
            before = s.python_calls
            s.check(query(OUTSIDE), client)
            assert s.python_calls == before + 1
        finally:
            client.close()
        if host == "":
            _fill(s, OUTSIDE, socket.AF_INET)  # a v4-mapped client
            client = s.client(socket.AF_INET)
            try:
                before = s.python_calls
                for pkt in _outside_variants(OUTSIDE):
                    s.check(pkt, client)
                assert s.python_calls == before
            finally:
                client.close()
        s.same_metrics()
    finally:
        s.close()
