"""Names outside the cluster zones on the handler's fast path (issue 14).

A plain query (one question, class IN, at most an OPT record) in a block where only
``cache`` and ``forward`` act on it stays bytes: a response-cache hit is answered at
once, with no dnslib parsing, no :class:`Query` and no coroutine; a miss is the query
bytes handed to the upstream, whose reply fills the cache. Every reply must equal what
the plugin chain gives for the same query.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator

import dnslib
import pytest

from kdns.dns import metrics
from kdns.plugins.cache import respcache
from kdns.plugins.cache.setup import CacheConfig
from kdns.query import chain, handler

CLIENT = ("127.0.0.1", 5353)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Upstream:
    """A forward chain stand-in: answers A with one record, NXDOMAIN under ``nx.``."""

    def __init__(self, ttl: int = 300, records: int = 1) -> None:
        self.seen: list[bytes] = []
        self.ttl = ttl
        self.records = records

    def matches(self, qname: str) -> bool:
        return True

    def matches_wire(self, name: bytes) -> bool:
        return True

    async def forward(self, query: bytes, tcp: bool, qname: str | None = None) -> bytes | None:
        """A reply built from the query's bytes (the tests ban dnslib's parser)."""
        self.seen.append(query)
        labels, pos = [], 12
        while query[pos]:
            labels.append(query[pos + 1 : pos + 1 + query[pos]].decode())
            pos += 1 + query[pos]
        qtype = int.from_bytes(query[pos + 1 : pos + 3], "big")
        header = dnslib.DNSHeader(id=int.from_bytes(query[:2], "big"), qr=1, rd=1, ra=1)
        q = dnslib.DNSQuestion(".".join(labels) + ".", qtype)
        reply = dnslib.DNSRecord(header, q=q)
        name = str(q.qname).lower()
        if name.endswith("nx.example."):
            reply.header.rcode = dnslib.RCODE.NXDOMAIN
            soa = dnslib.SOA("ns.example.", "h.example.", (1, 60, 60, 60, 30))
            reply.add_auth(dnslib.RR("example.", dnslib.QTYPE.SOA, rdata=soa, ttl=self.ttl))
        else:
            for i in range(self.records):
                rdata = dnslib.A(f"192.0.2.{i + 1}")
                reply.add_answer(dnslib.RR(q.qname, rdata=rdata, ttl=self.ttl))
        return bytes(reply.pack())


def query(
    name: str,
    qtype: int = 1,
    ident: int = 0x1234,
    edns: int | None = None,
    do: bool = False,
    cd: bool = False,
) -> bytes:
    flags = 0x0100 | (0x0010 if cd else 0)
    labels = b"".join(bytes((len(p),)) + p.encode() for p in name.rstrip(".").split("."))
    pkt = struct.pack("!HHHHHH", ident, flags, 1, 0, 0, 1 if edns else 0)
    pkt += labels + b"\x00" + struct.pack("!HH", qtype, 1)
    if edns:
        pkt += b"\x00" + struct.pack("!HHBBHH", 41, edns, 0, 0, 0x8000 if do else 0, 0)
    return pkt


class Setup:
    def __init__(self, cached: bool = True, **block: object) -> None:
        self.clock = Clock()
        self.upstream = Upstream()
        self.cache = (
            respcache.ResponseCache(
                CacheConfig(zones=(".",)), downstream=self.upstream.forward, clock=self.clock
            )
            if cached
            else None
        )
        self.block = chain.Block(zones=(".",), upstream=self.upstream, cache=self.cache)
        for attr, value in block.items():
            setattr(self.block, attr, value)
        self.stats = metrics.QueryStats("dns://:53")
        self.pipeline = chain.Pipeline([self.block], self.stats)
        self.handler = handler.Handler(None, self.stats, self.pipeline)
        self.loop = asyncio.new_event_loop()

    def ask(self, pkt: bytes, tcp: bool = False) -> bytes | None:
        """What a transport would send: the entry point, awaited when it says so."""
        if tcp:
            result = self.handler.answer(pkt, True, 0, CLIENT)
        else:
            result = self.handler.answer_udp(pkt, CLIENT)
        if result is None or isinstance(result, bytes):
            return result
        return self.loop.run_until_complete(result)

    def chain_answer(self, pkt: bytes, tcp: bool = False) -> bytes | None:
        """The same query through validation and the plugin chain."""
        q = self.handler.slow(pkt, tcp, 0, CLIENT)
        assert isinstance(q, handler.Query)
        result = self.handler._chain(q)
        if isinstance(result, bytes):
            return result
        return self.loop.run_until_complete(result)


@pytest.fixture
def setup() -> Iterator[Setup]:
    s = Setup()
    yield s
    s.loop.close()


@pytest.fixture
def no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the query path builds a dnslib record or a Query."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the fast path parsed the query")

    monkeypatch.setattr(handler.dnslib.DNSRecord, "parse", refuse)
    monkeypatch.setattr(handler, "Query", refuse)


def test_a_cache_hit_is_bytes_at_once_without_parsing(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert setup.ask(query("www.example.org")) is not None  # fills the cache
    monkeypatch.setattr(handler.dnslib.DNSRecord, "parse", _refuse)
    monkeypatch.setattr(handler, "Query", _refuse)
    hit = setup.handler.answer_udp(query("WwW.Example.ORG", ident=0xBEEF), CLIENT)
    assert isinstance(hit, bytes)  # no coroutine, no task
    assert hit[:2] == b"\xbe\xef"
    assert b"\x03WwW\x07Example\x03ORG\x00" in hit  # the question as the client sent it
    assert len(setup.upstream.seen) == 1


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("the fast path parsed the query")


def test_hit_ttls_count_down_with_age(setup: Setup) -> None:
    setup.ask(query("www.example.org"))
    setup.clock.now += 100
    reply = dnslib.DNSRecord.parse(setup.ask(query("www.example.org")))
    assert [rr.ttl for rr in reply.rr] == [200]
    setup.clock.now += 250  # expired: asked again upstream
    reply = dnslib.DNSRecord.parse(setup.ask(query("www.example.org")))
    assert [rr.ttl for rr in reply.rr] == [300]
    assert len(setup.upstream.seen) == 2


def test_a_miss_sends_the_query_bytes_and_restores_nothing_else(
    setup: Setup, no_parsing: None
) -> None:
    pkt = query("Mixed.Example.org", ident=0x4242, edns=1232)
    pending = setup.handler.answer_udp(pkt, CLIENT)
    assert not isinstance(pending, bytes) and pending is not None
    reply = setup.loop.run_until_complete(pending)
    assert setup.upstream.seen == [pkt]  # as sent: case, ID, OPT
    assert reply is not None and reply[:2] == b"\x42\x42"
    assert isinstance(setup.handler.answer_udp(pkt, CLIENT), bytes)  # filled: now a hit


# Queries whose fast answer must equal the chain's, byte for byte.
SAME = {
    "plain": query("www.example.org"),
    "mixed case": query("WWW.example.ORG", ident=7),
    "edns": query("www.example.org", edns=4096),
    "edns small": query("www.example.org", edns=100),
    "do": query("www.example.org", edns=1232, do=True),
    "cd": query("www.example.org", cd=True),
    "aaaa": query("www.example.org", qtype=28),
    "nxdomain": query("a.nx.example"),
    "nxdomain edns": query("a.nx.example", edns=1232),
}


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("name", list(SAME))
def test_fast_answers_equal_the_chains(name: str, tcp: bool) -> None:
    fast, slow = Setup(), Setup()
    pkt = SAME[name]
    for _ in range(2):  # the miss, then the hit
        slow.clock.now += 7
        fast.clock.now += 7
        assert fast.ask(pkt, tcp) == slow.chain_answer(pkt, tcp)
    assert len(fast.upstream.seen) == len(slow.upstream.seen) == 1


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_a_big_reply_is_truncated_as_the_chain_does(tcp: bool) -> None:
    fast, slow = Setup(), Setup()
    fast.upstream.records = slow.upstream.records = 60  # 60 A records: > 512 bytes
    for pkt in (query("big.example.org"), query("big.example.org", edns=600)):
        for _ in range(2):
            got = fast.ask(pkt, tcp)
            assert got == slow.chain_answer(pkt, tcp)
            assert got is not None and bool(got[2] & 0x02) == (not tcp)


def test_without_a_cache_every_query_is_forwarded_as_bytes() -> None:
    s = Setup(cached=False)
    pkt = query("www.example.org", ident=0x0101)
    for _ in range(2):
        pending = s.handler.answer_udp(pkt, CLIENT)
        assert not isinstance(pending, bytes) and pending is not None
        reply = s.loop.run_until_complete(pending)
        assert reply == s.chain_answer(pkt)
    assert s.upstream.seen == [pkt] * 4


def test_do_and_cd_are_separate_entries(setup: Setup) -> None:
    setup.ask(query("www.example.org", edns=1232))
    setup.ask(query("www.example.org", edns=1232, do=True))
    setup.ask(query("www.example.org", cd=True))
    setup.ask(query("www.example.org", edns=1232, do=True))
    assert len(setup.upstream.seen) == 3


def test_metrics_count_fast_hits_and_forwards(setup: Setup) -> None:
    setup.ask(query("www.example.org"))
    setup.ask(query("www.example.org"))
    setup.ask(query("www.example.org", edns=1232, do=True))
    setup.stats.expand_fast()
    assert setup.stats.responses == {(".", 0, "forward"): 2, (".", 0, "cache"): 1}
    assert setup.stats.requests == {(".", "udp", "1", 1): 3}
    assert setup.stats.do_requests == {".": 1}
    assert setup.cache is not None
    counts = setup.cache.counts
    assert (counts.requests, counts.misses, counts.hits[respcache.SUCCESS]) == (3, 2, 1)


def _is_chain_path(s: Setup, pkt: bytes) -> bool:
    """The query went through validation (a Query was made)."""
    made: list[handler.Query] = []
    original = handler.Handler.parse

    def spy(self: handler.Handler, *args: object) -> object:
        result = original(self, *args)  # type: ignore[arg-type]
        if isinstance(result, handler.Query):
            made.append(result)
        return result

    handler.Handler.parse = spy  # type: ignore[assignment,method-assign]
    try:
        s.ask(pkt)
    finally:
        handler.Handler.parse = original  # type: ignore[method-assign]
    return bool(made)


class Log:
    def log(self, q: handler.Query, response: bytes, seconds: float) -> None:
        pass


class Nothing:
    """A hosts or template source that answers nothing; a table that holds nothing."""

    def answer(self, q: handler.Query) -> None:
        return None

    def lookup(self, name: bytes, qtype: int) -> None:
        return None


def test_blocks_where_other_plugins_act_take_the_chain() -> None:
    assert not _is_chain_path(Setup(), query("www.example.org"))
    assert _is_chain_path(Setup(querylog=Log()), query("www.example.org"))
    assert _is_chain_path(Setup(sources=[("hosts", Nothing())]), query("www.example.org"))
    stale_verify = CacheConfig(zones=(".",), serve_stale=60, serve_stale_verify=True)
    s = Setup()
    s.block.cache = respcache.ResponseCache(stale_verify, downstream=s.upstream.forward)
    s.pipeline = chain.Pipeline([s.block], s.stats)
    s.handler = handler.Handler(None, s.stats, s.pipeline)
    assert _is_chain_path(s, query("www.example.org"))


def test_cluster_zones_loop_probes_and_odd_queries_take_the_chain() -> None:
    s = Setup()
    s.block.kube = chain.Kube(table=Nothing(), zones=("cluster.local.",))  # type: ignore[arg-type]
    s.pipeline = chain.Pipeline([s.block], s.stats)
    s.handler = handler.Handler(None, s.stats, s.pipeline)
    assert _is_chain_path(s, query("web.default.svc.Cluster.Local"))
    assert not _is_chain_path(s, query("cluster.local.example.org"))
    s.pipeline.loop_probes["probe.example.org."] = 0
    assert _is_chain_path(s, query("probe.example.org", qtype=13))
    assert s.pipeline.loop_probes["probe.example.org."] == 1
    asked = len(s.upstream.seen)
    reply = s.ask(query("x" * 64 + ".example.org"))  # a label over 63 octets
    assert reply is not None and reply[3] & 0x0F == 1  # FORMERR, from validation
    assert len(s.upstream.seen) == asked


def test_a_cache_zone_narrower_than_the_block() -> None:
    s = Setup()
    narrow = CacheConfig(zones=("example.org.",))
    s.block.cache = respcache.ResponseCache(narrow, downstream=s.upstream.forward)
    s.pipeline = chain.Pipeline([s.block], s.stats)
    s.handler = handler.Handler(None, s.stats, s.pipeline)
    for _ in range(2):
        s.ask(query("www.example.org"))
        s.ask(query("www.example.net"))
    assert [dnslib.DNSRecord.parse(p).q.qname for p in s.upstream.seen] == [
        "www.example.org.",
        "www.example.net.",
        "www.example.net.",
    ]
