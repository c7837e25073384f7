"""Cache hits served again from their bytes (issue 14): the handler remembers a hit's
reply by the query after its ID and serves it again while the cache says the entry and
its TTL are unchanged (``ResponseCache.again``). Every reply and every count must equal
what a handler that remembers nothing gives, through expiry, refills, a denial
shadowing a success, evictions and a clear."""

from __future__ import annotations

import asyncio
import struct

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
    """Answers A with one record (TTL ``ttl``, ``address``), or NXDOMAIN with an SOA when
    ``nx``."""

    def __init__(self) -> None:
        self.ttl = 30
        self.nx = False
        self.address = "192.0.2.1"
        self.asked = 0

    def matches(self, qname: str) -> bool:
        return True

    def matches_wire(self, name: bytes) -> bool:
        return True

    async def forward(self, query: bytes, tcp: bool, qname: str | None = None) -> bytes | None:
        self.asked += 1
        q = dnslib.DNSRecord.parse(query)
        reply = q.reply()
        if self.nx:
            reply.header.rcode = dnslib.RCODE.NXDOMAIN
            soa = dnslib.SOA("ns.example.", "h.example.", (1, 60, 60, 60, 30))
            reply.add_auth(dnslib.RR("example.", dnslib.QTYPE.SOA, rdata=soa, ttl=self.ttl))
        else:
            reply.add_answer(dnslib.RR(q.q.qname, rdata=dnslib.A(self.address), ttl=self.ttl))
        return bytes(reply.pack())


class Server:
    def __init__(self, capacity: int = 100) -> None:
        self.clock = Clock()
        self.upstream = Upstream()
        config = CacheConfig(zones=(".",), success_capacity=capacity, denial_capacity=capacity)
        self.cache = respcache.ResponseCache(
            config, downstream=self.upstream.forward, clock=self.clock
        )
        self.stats = metrics.QueryStats("dns://:53")
        block = chain.Block(zones=(".",), upstream=self.upstream, cache=self.cache)
        self.handler = handler.Handler(None, self.stats, chain.Pipeline([block], self.stats))
        self.loop = asyncio.new_event_loop()

    def ask(self, pkt: bytes) -> bytes | None:
        result = self.handler.answer_udp(pkt, CLIENT)
        if result is None or isinstance(result, bytes):
            return result
        return self.loop.run_until_complete(result)


def query(name: str, ident: int, edns: int | None = None, do: bool = False) -> bytes:
    labels = b"".join(bytes((len(p),)) + p.encode() for p in name.split("."))
    pkt = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 1 if edns else 0)
    pkt += labels + b"\x00\x00\x01\x00\x01"
    if edns:
        pkt += b"\x00" + struct.pack("!HHBBHH", 41, edns, 0, 0, 0x8000 if do else 0, 0)
    return pkt


@pytest.fixture
def pair(monkeypatch: pytest.MonkeyPatch) -> tuple[Server, Server]:
    """A server that remembers hits, and one that never does."""
    remembers, forgets = Server(), Server()
    forgets.handler.hits = _Forgetful()  # type: ignore[assignment]
    return remembers, forgets


class _Forgetful(dict):  # type: ignore[type-arg]
    def __setitem__(self, key: object, value: object) -> None:
        pass


NAMES = ("www.example.org", "WWW.Example.org", "a.example.org")


def both(pair: tuple[Server, Server], pkt: bytes) -> bytes | None:
    a, b = pair
    got, want = a.ask(pkt), b.ask(pkt)
    assert got == want
    return got


def test_replies_and_counts_equal_a_handler_that_remembers_nothing(
    pair: tuple[Server, Server],
) -> None:
    a, b = pair
    ident = 0
    for step in range(40):
        for name in NAMES:
            for edns, do in ((None, False), (1232, False), (1232, True), (600, False)):
                ident += 1
                both(pair, query(name, ident, edns, do))
        for s in pair:
            s.clock.now += 0.4 if step % 7 else 13  # TTLs tick; now and then entries expire
        if step == 15:
            for s in pair:
                s.upstream.nx = True  # refills become denials
        if step == 25:
            for s in pair:
                s.upstream.nx = False
                s.cache.clear()
    assert a.upstream.asked == b.upstream.asked
    c, d = a.cache.counts, b.cache.counts
    assert (c.requests, c.misses, c.hits) == (d.requests, d.misses, d.hits)
    a.stats.expand_fast()
    b.stats.expand_fast()
    assert a.stats.responses == b.stats.responses
    assert a.stats.requests == b.stats.requests
    assert a.stats.do_requests == b.stats.do_requests
    assert len(a.handler.hits) > 0


def test_a_denial_stored_beside_a_success_is_served_first(pair: tuple[Server, Server]) -> None:
    for s in pair:
        s.ask(query("www.example.org", 1))
    both(pair, query("www.example.org", 2))  # remembered
    for s in pair:  # a denial for the same key (as a refresh could store it)
        s.upstream.nx = True
        reply = s.loop.run_until_complete(s.upstream.forward(query("www.example.org", 3), False))
        assert reply is not None
        s.cache.fill(reply, b"\x03www\x07example\x03org\x00\x00\x01\x00", None)
    got = both(pair, query("www.example.org", 4))
    assert got is not None and got[3] & 0x0F == 3  # NXDOMAIN: the denial cache first


def test_evicted_entries_are_not_served_again() -> None:
    a, b = Server(capacity=1), Server(capacity=1)
    b.handler.hits = _Forgetful()  # type: ignore[assignment]
    for ident in range(1, 30):
        name = NAMES[ident % 2 * 2]  # two names through a one-entry cache
        both((a, b), query(name, ident))
        both((a, b), query(name, ident + 100))
    assert a.upstream.asked == b.upstream.asked
    assert a.cache.counts.evictions == b.cache.counts.evictions
