"""The cache plugin (respcache) before a real unbound (through forward), with a hand-driven clock.

The cache's clock is injected so TTL arithmetic, expiry, serve_stale and prefetch are
checked exactly, without sleeping; the upstream is real, and a counting wrapper shows
whether a query reached it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dnslib
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from kdns.plugins.cache import respcache
from kdns.plugins.cache.setup import CacheConfig
from kdns.plugins.forward import forward
from kdns.plugins.forward.setup import Upstream
from tests.support.upstreams import (
    Dnsmasq,
    Unbound,
    addresses,
    closed_port,
    config,
    needs_unbound,
    parse,
    query,
    wait_until,
)

pytestmark = [needs_unbound, pytest.mark.timeout(60)]

Downstream = Callable[[bytes, bool], Awaitable[bytes | None]]


@pytest.fixture(scope="module")
def unbound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:
    if not Path("/usr/sbin/unbound").exists():
        pytest.skip("unbound not installed")
    server = Unbound(tmp_path_factory.mktemp("unbound"))
    yield server
    server.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counting:
    """A downstream that counts calls and can be switched to failing."""

    def __init__(self, inner: Downstream) -> None:
        self.inner = inner
        self.calls = 0
        self.failing = False

    async def __call__(self, wire: bytes, tcp: bool) -> bytes | None:
        self.calls += 1
        if self.failing:
            return forward.error_reply(wire, forward.SERVFAIL)
        return await self.inner(wire, tcp)


def make(
    unbound: Unbound,
    registry: CollectorRegistry | None = None,
    **opts: object,
) -> tuple[respcache.ResponseCache, Counting, Clock, forward.Forwarder]:
    fwd = forward.Forwarder(config(unbound.upstream()))
    down = Counting(fwd.forward)
    clock = Clock()
    cfg = replace(CacheConfig(zones=(".",)), **opts)  # type: ignore[arg-type]
    cache = respcache.ResponseCache(cfg, registry, downstream=down, clock=clock)
    return cache, down, clock, fwd


async def ask(
    cache: respcache.ResponseCache,
    name: str,
    rdtype: str = "A",
    tcp: bool = False,
    **kw: object,
) -> dns.message.Message:
    q = query(name, rdtype, **kw)
    do = bool(q.ednsflags & dns.flags.DO)
    cd = bool(q.flags & dns.flags.CD)
    wire = await cache.resolve(q.to_wire(), name, dns.rdatatype.from_text(rdtype), do, cd, tcp)
    reply = parse(wire)
    assert reply.id == q.id
    return reply


def ttls(msg: dns.message.Message) -> list[int]:
    return [rrset.ttl for section in (msg.answer, msg.authority) for rrset in section]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    base = {"server": "dns://:53", "zones": ".", "view": ""}
    value = registry.get_sample_value(name, {**base, **labels})
    return 0.0 if value is None else value


# -- hits and TTLs -----------------------------------------------------------------


def test_miss_then_hit_with_decremented_ttl_and_aa(unbound: Unbound) -> None:
    registry = CollectorRegistry()

    async def run() -> respcache.ResponseCache:
        cache, down, clock, _ = make(unbound, registry)
        first = await ask(cache, "www.example.net")
        assert addresses(first) == ["192.0.2.10"] and ttls(first) == [300]
        clock.now += 10.4
        hit = await ask(cache, "www.example.net")
        assert down.calls == 1
        assert addresses(hit) == ["192.0.2.10"]
        assert ttls(hit) == [290]
        assert hit.flags & dns.flags.AA and hit.flags & dns.flags.RA
        assert hit.flags & dns.flags.RD and hit.flags & dns.flags.QR
        return cache

    _alive = asyncio.run(run())  # the entries gauge counts live caches
    assert sample(registry, "coredns_cache_requests_total") == 2
    assert sample(registry, "coredns_cache_misses_total") == 1
    assert sample(registry, "coredns_cache_hits_total", type="success") == 1
    assert sample(registry, "coredns_cache_entries", type="success") == 1
    assert sample(registry, "coredns_cache_entries", type="denial") == 0


def test_ttl_cap_applies_to_the_first_reply_too(unbound: Unbound) -> None:
    async def run() -> None:
        cache, _, clock, _ = make(unbound, success_ttl=30)
        assert ttls(await ask(cache, "www.example.net")) == [30]
        clock.now += 5
        assert ttls(await ask(cache, "www.example.net")) == [25]
        clock.now += 25
        await ask(cache, "www.example.net")  # expired: a miss, refetched

    asyncio.run(run())


def test_min_ttl_raises_short_ttls(unbound: Unbound) -> None:
    async def run() -> None:
        cache, down, clock, _ = make(unbound)
        assert ttls(await ask(cache, "short.example.net")) == [5]  # 2 s raised to MINTTL 5
        clock.now += 4
        assert ttls(await ask(cache, "short.example.net")) == [1]
        assert down.calls == 1

    asyncio.run(run())


def test_expired_entry_is_a_miss(unbound: Unbound) -> None:
    async def run() -> None:
        cache, down, clock, _ = make(unbound)
        await ask(cache, "www.example.net")
        clock.now += 300
        assert ttls(await ask(cache, "www.example.net")) == [300]
        assert down.calls == 2

    asyncio.run(run())


def test_keepttl_serves_the_stored_ttl(unbound: Unbound) -> None:
    async def run() -> None:
        cache, _, clock, _ = make(unbound, keepttl=True)
        await ask(cache, "www.example.net")
        clock.now += 100
        assert ttls(await ask(cache, "www.example.net")) == [300]

    asyncio.run(run())


# -- keys ----------------------------------------------------------------------------


def test_key_is_case_insensitive_and_echoes_the_clients_case(unbound: Unbound) -> None:
    async def run() -> None:
        cache, down, _, _ = make(unbound)
        await ask(cache, "www.example.net")
        hit = await ask(cache, "WWW.Example.NET")
        assert down.calls == 1
        assert hit.question[0].name.to_text() == "WWW.Example.NET."
        assert addresses(hit) == ["192.0.2.10"]

    asyncio.run(run())


def test_do_cd_and_qtype_are_separate_entries(unbound: Unbound) -> None:
    async def run() -> None:
        cache, down, _, _ = make(unbound)
        await ask(cache, "www.example.net")
        do = await ask(cache, "www.example.net", use_edns=0, want_dnssec=True)
        assert down.calls == 2
        assert do.edns == 0 and do.ednsflags & dns.flags.DO  # a fresh OPT echoing DO
        cd = query("www.example.net")
        cd.flags |= dns.flags.CD
        wire = await cache.resolve(cd.to_wire(), "www.example.net.", 1, False, True, False)
        assert parse(wire).flags & dns.flags.CD
        assert down.calls == 3
        await ask(cache, "www.example.net", "TXT")
        assert down.calls == 4
        for _ in range(2):
            await ask(cache, "www.example.net", use_edns=0, want_dnssec=True)
        assert down.calls == 4
        assert len(cache) == 4

    asyncio.run(run())


# -- denial, servfail, what is never cached -----------------------------------------


def test_nxdomain_is_cached_with_the_soa_minimum(unbound: Unbound) -> None:
    registry = CollectorRegistry()

    async def run() -> respcache.ResponseCache:
        cache, down, clock, _ = make(unbound, registry)
        nx = await ask(cache, "nope.example.net")
        assert nx.rcode() == dns.rcode.NXDOMAIN
        assert ttls(nx) == [30]  # min(SOA TTL 3600, MINIMUM 30)
        clock.now += 10
        hit = await ask(cache, "nope.example.net")
        assert hit.rcode() == dns.rcode.NXDOMAIN and ttls(hit) == [20]
        assert hit.authority[0].rdtype == dns.rdatatype.SOA
        nodata = await ask(cache, "www.example.net", "AAAA")
        assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
        await ask(cache, "www.example.net", "AAAA")
        assert down.calls == 2
        return cache

    _alive = asyncio.run(run())  # the entries gauge counts live caches
    assert sample(registry, "coredns_cache_entries", type="denial") == 2
    assert sample(registry, "coredns_cache_hits_total", type="denial") == 2


def test_denial_cap(unbound: Unbound) -> None:
    async def run() -> None:
        cache, _, _, _ = make(unbound, denial_ttl=7)
        assert ttls(await ask(cache, "nope.example.net")) == [7]

    asyncio.run(run())


def test_disable_success_and_denial_for_zones(unbound: Unbound) -> None:
    async def run() -> None:
        cache, down, _, _ = make(
            unbound, disable_success=("example.net.",), disable_denial=("other.test.",)
        )
        for _ in range(2):
            await ask(cache, "www.example.net")
        assert down.calls == 2  # success not cached under example.net
        for _ in range(2):
            await ask(cache, "nope.example.net")
        assert down.calls == 3  # denial still cached there
        cache2, down2, _, _ = make(unbound, disable_denial=(".",))
        for _ in range(2):
            await ask(cache2, "nope.example.net")
        assert down2.calls == 2

    asyncio.run(run())


def test_servfail_is_cached_for_the_servfail_duration() -> None:
    async def run() -> None:
        dead = forward.Forwarder(config(forward_down()), read_timeout=0.2, timeout=0.3)
        down = Counting(dead.forward)
        clock = Clock()
        cache = respcache.ResponseCache(CacheConfig(zones=(".",)), downstream=down, clock=clock)
        first = await ask(cache, "www.example.net")
        assert first.rcode() == dns.rcode.SERVFAIL
        clock.now += 4
        assert (await ask(cache, "www.example.net")).rcode() == dns.rcode.SERVFAIL
        assert down.calls == 1
        clock.now += 1
        await ask(cache, "www.example.net")
        assert down.calls == 2
        off = respcache.ResponseCache(
            CacheConfig(zones=(".",), servfail_ttl=0), downstream=down, clock=clock
        )
        await ask(off, "www.example.net")
        await ask(off, "www.example.net")
        assert down.calls == 4
        await dead.stop()

    asyncio.run(run())


def forward_down() -> Upstream:
    return Upstream("dns", "127.0.0.1", closed_port())


def test_refused_truncated_and_soa_less_nxdomain_are_not_cached() -> None:
    dnsmasq = Dnsmasq({"example.org": "192.0.2.1"})
    try:

        async def run() -> None:
            fwd = forward.Forwarder(config(dnsmasq.upstream()))
            down = Counting(fwd.forward)
            cache = respcache.ResponseCache(CacheConfig(zones=(".",)), downstream=down)
            for _ in range(2):
                refused = await ask(cache, "www.unknown.test")
                assert refused.rcode() == dns.rcode.REFUSED  # dnsmasq knows no upstream
            assert down.calls == 2
            q = query("x.example.org")
            tc = dnslib.DNSRecord.parse(q.to_wire()).reply()
            tc.header.tc = 1
            cache.put(bytes(tc.pack()), "x.example.org.", 1, False, False)
            nx = dnslib.DNSRecord.parse(q.to_wire()).reply()
            nx.header.rcode = dns.rcode.NXDOMAIN
            cache.put(bytes(nx.pack()), "x.example.org.", 1, False, False)
            assert len(cache) == 0
            await fwd.stop()

        asyncio.run(run())
    finally:
        dnsmasq.stop()


def test_reply_for_another_question_is_dropped(unbound: Unbound) -> None:
    registry = CollectorRegistry()

    async def run() -> None:
        cache, _, _, fwd = make(unbound, registry)
        other = await fwd.forward(query("other.example.net").to_wire(), False)
        assert other is not None
        q = query("www.example.net")
        out = cache.put(other, "www.example.net.", 1, False, False, q.to_wire())
        assert addresses(parse(out)) == ["192.0.2.11"]  # passed on, just not stored
        assert len(cache) == 0

    asyncio.run(run())
    assert sample(registry, "coredns_cache_drops_total") == 1


# -- capacity ----------------------------------------------------------------------


def test_capacity_evicts_and_counts(unbound: Unbound) -> None:
    registry = CollectorRegistry()

    async def run() -> respcache.ResponseCache:
        cache, _, _, _ = make(unbound, registry, success_capacity=2)
        for name in ("www", "other", "third"):
            await ask(cache, f"{name}.example.net")
        assert len(cache) == 2
        return cache

    _alive = asyncio.run(run())  # the entries gauge counts live caches
    assert sample(registry, "coredns_cache_evictions_total", type="success") == 1
    assert sample(registry, "coredns_cache_entries", type="success") == 2


# -- serve_stale ----------------------------------------------------------------------


def test_serve_stale_immediate_serves_ttl_zero_and_refreshes(unbound: Unbound) -> None:
    registry = CollectorRegistry()

    async def run() -> None:
        cache, down, clock, _ = make(unbound, registry, serve_stale=3600.0)
        await ask(cache, "www.example.net")
        clock.now += 400  # 100 s past expiry
        down.failing = True
        stale = await ask(cache, "www.example.net")
        assert addresses(stale) == ["192.0.2.10"] and ttls(stale) == [0]
        await wait_until(lambda: down.calls == 2)  # the background refresh ran (and failed)
        down.failing = False
        stale = await ask(cache, "www.example.net")
        assert ttls(stale) == [0]
        await wait_until(lambda: down.calls == 3)
        await wait_until(lambda: not cache._refreshing)
        fresh = await ask(cache, "www.example.net")
        assert ttls(fresh) == [300]
        assert down.calls == 3
        clock.now += 300 + 3600
        await ask(cache, "www.example.net")  # too old even for stale
        assert down.calls == 4
        await cache.stop()

    asyncio.run(run())
    assert sample(registry, "coredns_cache_served_stale_total") == 2


def test_serve_stale_verify_prefers_a_fresh_answer(unbound: Unbound) -> None:
    async def run() -> None:
        cache, down, clock, _ = make(unbound, serve_stale=3600.0, serve_stale_verify=True)
        await ask(cache, "www.example.net")
        clock.now += 400
        fresh = await ask(cache, "www.example.net")
        assert ttls(fresh) == [300] and down.calls == 2
        clock.now += 400
        down.failing = True
        stale = await ask(cache, "www.example.net")
        assert ttls(stale) == [0] and addresses(stale) == ["192.0.2.10"]
        assert down.calls == 3
        assert (
            cache.get(query("www.example.net").to_wire(), "www.example.net", 1, False, False)
            is None
        )

    asyncio.run(run())


# -- prefetch ----------------------------------------------------------------------


def test_prefetch_refreshes_popular_entries_before_they_expire(unbound: Unbound) -> None:
    registry = CollectorRegistry()

    async def run() -> None:
        cache, down, clock, _ = make(
            unbound, registry, prefetch=2, prefetch_duration=600.0, prefetch_percentage=10
        )
        await ask(cache, "www.example.net")
        clock.now += 100
        await ask(cache, "www.example.net")  # hit 1, ttl 200: not yet
        clock.now += 170
        assert ttls(await ask(cache, "www.example.net")) == [30]  # hit 2, ttl 30 <= 10%
        await wait_until(lambda: down.calls == 2)
        await wait_until(lambda: not cache._refreshing)
        assert ttls(await ask(cache, "www.example.net")) == [300]  # the refreshed entry
        assert down.calls == 2

    asyncio.run(run())
    assert sample(registry, "coredns_cache_prefetch_total") == 1


def test_prefetch_needs_amount_hits_without_gaps(unbound: Unbound) -> None:
    async def run() -> None:
        cache, down, clock, _ = make(unbound, prefetch=3, prefetch_duration=10.0)
        await ask(cache, "www.example.net")
        for _ in range(3):
            clock.now += 90  # gaps longer than DURATION reset the count
            await ask(cache, "www.example.net")
        await asyncio.sleep(0)
        assert down.calls == 1

    asyncio.run(run())


# -- sizes, zones, the sync API, metrics -----------------------------------------------


def test_large_cached_reply_is_truncated_for_a_small_udp_client() -> None:
    cache = respcache.ResponseCache(CacheConfig(zones=(".",)))
    q = query("big.example.org", use_edns=False)
    reply = dnslib.DNSRecord.parse(q.to_wire()).reply()
    for i in range(60):
        reply.add_answer(
            dnslib.RR("big.example.org", dnslib.QTYPE.A, rdata=dnslib.A(f"198.51.100.{i}"), ttl=60)
        )
    cache.put(bytes(reply.pack()), "big.example.org.", 1, False, False)
    udp = parse(cache.get(q.to_wire(), "big.example.org", 1, False, False))
    assert udp.flags & dns.flags.TC and not udp.answer
    tcp = parse(cache.get(q.to_wire(), "big.example.org", 1, False, False, tcp=True))
    assert not tcp.flags & dns.flags.TC and len(addresses(tcp)) == 60
    edns = query("big.example.org", use_edns=0, payload=4096)
    big = parse(cache.get(edns.to_wire(), "big.example.org", 1, False, False))
    assert not big.flags & dns.flags.TC and big.payload == 1232


def test_zones_limit_what_is_cached(unbound: Unbound) -> None:
    async def run() -> None:
        cache, down, _, _ = make(unbound, zones=("example.com.",))
        assert not cache.matches("www.example.net.")
        assert cache.matches("a.Example.COM")
        for _ in range(2):
            await ask(cache, "www.example.net")
        assert down.calls == 2 and len(cache) == 0

    asyncio.run(run())


def test_ad_bit_only_for_clients_that_ask() -> None:
    cache = respcache.ResponseCache(CacheConfig(zones=(".",)))
    q = query("secure.example.org")
    reply = dnslib.DNSRecord.parse(q.to_wire()).reply()
    reply.header.ad = 1
    reply.add_answer(dnslib.RR("secure.example.org", rdata=dnslib.A("192.0.2.5"), ttl=60))
    out = parse(cache.put(bytes(reply.pack()), "secure.example.org.", 1, False, False, q.to_wire()))
    assert not out.flags & dns.flags.AD
    assert (
        not parse(cache.get(q.to_wire(), "secure.example.org", 1, False, False)).flags
        & dns.flags.AD
    )
    q.flags |= dns.flags.AD
    assert parse(cache.get(q.to_wire(), "secure.example.org", 1, False, False)).flags & dns.flags.AD


def test_metric_names_and_labels_are_corednss(unbound: Unbound) -> None:
    registry = CollectorRegistry()

    async def run() -> respcache.ResponseCache:
        cache, _, _, _ = make(unbound, registry)
        # A second cache on the same registry shares the collectors.
        respcache.ResponseCache(CacheConfig(zones=("example.org.",)), registry)
        await ask(cache, "www.example.net")
        await ask(cache, "www.example.net")
        return cache

    _alive = asyncio.run(run())  # the entries gauge counts live caches
    text = generate_latest(registry).decode()
    labels = 'server="dns://:53",view="",zones="."'
    for line in (
        'coredns_cache_entries{server="dns://:53",type="success",view="",zones="."} 1.0',
        'coredns_cache_hits_total{server="dns://:53",type="success",view="",zones="."} 1.0',
        f"coredns_cache_requests_total{{{labels}}} 2.0",
        f"coredns_cache_misses_total{{{labels}}} 1.0",
    ):
        assert line in text, line
    for name in ("prefetch", "drops", "served_stale", "evictions"):
        assert f"# TYPE coredns_cache_{name}_total counter" in text
    assert "# TYPE coredns_cache_entries gauge" in text


def test_counters_survive_a_new_cache_with_the_same_labels() -> None:
    """A reload builds new caches; the counters keep counting, as CoreDNS's vectors do."""
    registry = CollectorRegistry()
    q = query("x.example.org")
    for _ in range(2):
        cache = respcache.ResponseCache(CacheConfig(zones=(".",)), registry)
        assert cache.get(q.to_wire(), "x.example.org.", 1, False, False) is None
    assert sample(registry, "coredns_cache_requests_total") == 2
    assert sample(registry, "coredns_cache_entries", type="success") == 0


def test_hit_is_fast() -> None:
    """The hit path is a dict lookup and a join; keep it well under 20 µs."""
    import time

    cache = respcache.ResponseCache(CacheConfig(zones=(".",)))
    q = query("fast.example.org")
    reply = dnslib.DNSRecord.parse(q.to_wire()).reply()
    reply.add_answer(dnslib.RR("fast.example.org", rdata=dnslib.A("192.0.2.5"), ttl=60))
    cache.put(bytes(reply.pack()), "fast.example.org.", 1, False, False)
    wire = q.to_wire()
    started = time.perf_counter()
    for _ in range(10_000):
        assert cache.get(wire, "fast.example.org.", 1, False, False) is not None
    per_hit = (time.perf_counter() - started) / 10_000
    assert per_hit < 50e-6, per_hit
