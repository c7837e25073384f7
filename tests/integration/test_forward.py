"""kdns.plugins.forward against real upstreams (dnsmasq, unbound) and scripted fault servers.

Each test runs its own event loop (``asyncio.run``); upstream processes are shared per
module. Timeouts are shortened through the Forwarder's constructor so a test that
exercises "the upstream never answers" takes a fraction of a second, not CoreDNS's 5 s.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.rcode
import dns.rdatatype
import dnslib
import pytest
from prometheus_client import CollectorRegistry, generate_latest

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None  # type: ignore[assignment]

from kdns.plugins.forward import forward
from kdns.plugins.forward.setup import Upstream
from tests.support.upstreams import (
    Dnsmasq,
    FaultServer,
    Unbound,
    addresses,
    answer,
    closed_port,
    config,
    needs_dnsmasq,
    needs_unbound,
    parse,
    query,
    truncating,
    wait_until,
)

pytestmark = [needs_dnsmasq, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def dnsmasq_a() -> Iterator[Dnsmasq]:
    server = Dnsmasq({"example.org": "192.0.2.1"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dnsmasq_b() -> Iterator[Dnsmasq]:
    server = Dnsmasq({"example.org": "192.0.2.2"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def unbound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:
    if not Path("/usr/sbin/unbound").exists():
        pytest.skip("unbound not installed")
    server = Unbound(tmp_path_factory.mktemp("unbound"))
    yield server
    server.stop()


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def down() -> Upstream:
    return Upstream("dns", "127.0.0.1", closed_port())


# -- answers -----------------------------------------------------------------------


def test_udp_and_tcp_answers_carry_the_client_id_and_question(dnsmasq_a: Dnsmasq) -> None:
    registry = CollectorRegistry()

    async def run() -> None:
        f = forward.Forwarder(config(dnsmasq_a.upstream()), registry)
        await f.start()
        try:
            for tcp in (False, True):
                q = query("WWW.Example.ORG", "A")
                reply = parse(await f.forward(q.to_wire(), tcp))
                assert reply.id == q.id
                assert reply.question[0].name.to_text() == "WWW.Example.ORG."
                assert reply.rcode() == dns.rcode.NOERROR
                assert addresses(reply) == ["192.0.2.1"]
        finally:
            await f.stop()

    asyncio.run(run())
    to = f"127.0.0.1:{dnsmasq_a.port}"
    assert sample(registry, "coredns_forward_requests_total", to=to) == 2
    assert sample(registry, "coredns_forward_responses_total", to=to, rcode="NOERROR") == 2
    count = "coredns_proxy_request_duration_seconds_count"
    assert sample(registry, count, proxy_name="forward", to=to, rcode="NOERROR") == 2
    legacy = "coredns_forward_request_duration_seconds_count"
    assert sample(registry, legacy, to=to, rcode="NOERROR") == 2


@needs_unbound
def test_unbound_answers_and_denials_pass_through(unbound: Unbound) -> None:
    async def run() -> None:
        f = forward.Forwarder(config(unbound.upstream()))
        reply = parse(await f.forward(query("www.example.net").to_wire(), False))
        assert addresses(reply) == ["192.0.2.10"]
        nx = parse(await f.forward(query("nope.example.net").to_wire(), False))
        assert nx.rcode() == dns.rcode.NXDOMAIN
        assert nx.authority and nx.authority[0].rdtype == dns.rdatatype.SOA
        await f.stop()

    asyncio.run(run())


def test_matches_from_zone_and_except() -> None:
    f = forward.Forwarder(
        config(
            Upstream("dns", "127.0.0.1", 53),
            from_zone="example.org.",
            except_zones=("internal.example.org.",),
        )
    )
    assert f.matches("example.org.")
    assert f.matches("www.Example.org")
    assert not f.matches("www.example.com.")
    assert not f.matches("notexample.org.")
    assert not f.matches("a.internal.example.org.")
    assert not f.matches("internal.example.org.")
    root = forward.Forwarder(
        config(Upstream("dns", "127.0.0.1", 53), except_zones=("example.org.",))
    )
    assert root.matches("anything.test.")
    assert not root.matches("www.example.org.")


def test_not_a_query_gets_no_answer(dnsmasq_a: Dnsmasq) -> None:
    async def run() -> None:
        f = forward.Forwarder(config(dnsmasq_a.upstream()))
        assert await f.forward(b"\x12\x34", False) is None
        response = bytearray(query("www.example.org").to_wire())
        response[2] |= 0x80
        assert await f.forward(bytes(response), False) is None

    asyncio.run(run())


# -- policies ----------------------------------------------------------------------


def _who_answers(dnsmasq_a: Dnsmasq, dnsmasq_b: Dnsmasq, policy: str, n: int) -> list[str]:
    async def run() -> list[str]:
        f = forward.Forwarder(config(dnsmasq_a.upstream(), dnsmasq_b.upstream(), policy=policy))
        seen = []
        for _ in range(n):
            seen += addresses(parse(await f.forward(query("www.example.org").to_wire(), False)))
        return seen

    return asyncio.run(run())


def test_policy_sequential_always_asks_the_first(dnsmasq_a: Dnsmasq, dnsmasq_b: Dnsmasq) -> None:
    assert set(_who_answers(dnsmasq_a, dnsmasq_b, "sequential", 10)) == {"192.0.2.1"}


def test_policy_round_robin_alternates(dnsmasq_a: Dnsmasq, dnsmasq_b: Dnsmasq) -> None:
    seen = _who_answers(dnsmasq_a, dnsmasq_b, "round_robin", 6)
    assert all(a != b for a, b in itertools.pairwise(seen))
    assert set(seen) == {"192.0.2.1", "192.0.2.2"}


def test_policy_random_uses_both(dnsmasq_a: Dnsmasq, dnsmasq_b: Dnsmasq) -> None:
    assert set(_who_answers(dnsmasq_a, dnsmasq_b, "random", 40)) == {"192.0.2.1", "192.0.2.2"}


# -- failures and health -----------------------------------------------------------


def test_down_upstream_is_skipped_and_marked_down(dnsmasq_a: Dnsmasq) -> None:
    registry = CollectorRegistry()
    dead = down()

    async def run() -> None:
        f = forward.Forwarder(
            config(dead, dnsmasq_a.upstream(), policy="sequential", health_check=0.02),
            registry,
        )
        await f.start()
        try:
            reply = parse(await f.forward(query("www.example.org").to_wire(), False))
            assert addresses(reply) == ["192.0.2.1"]
            # The error started a probe; it fails until the upstream is down (fails > 2).
            await wait_until(lambda: f.proxies[0].down(2))
            assert not f.proxies[1].down(2)
            started = time.monotonic()
            reply = parse(await f.forward(query("www.example.org").to_wire(), False))
            assert addresses(reply) == ["192.0.2.1"]
            assert time.monotonic() - started < 0.5
        finally:
            await f.stop()

    asyncio.run(run())
    to = f"127.0.0.1:{dead.port}"
    assert sample(registry, "coredns_forward_healthcheck_failures_total", to=to) >= 3
    assert (
        sample(registry, "coredns_proxy_healthcheck_failures_total", proxy_name="forward", to=to)
        >= 3
    )


def test_all_down_still_tries_one_and_counts_broken_healthchecks() -> None:
    registry = CollectorRegistry()

    async def run() -> None:
        f = forward.Forwarder(config(down(), down(), health_check=0.02), registry)
        await f.start()
        try:
            q = query("www.example.org")
            started = time.monotonic()
            reply = parse(await f.forward(q.to_wire(), False))
            assert reply.rcode() == dns.rcode.SERVFAIL
            assert reply.id == q.id and reply.question == q.question
            assert time.monotonic() - started < 1.0  # refused is fast; no spinning to 5 s
            await wait_until(lambda: all(p.down(2) for p in f.proxies))
            reply = parse(await f.forward(q.to_wire(), False))
            assert reply.rcode() == dns.rcode.SERVFAIL
        finally:
            await f.stop()

    asyncio.run(run())
    assert sample(registry, "coredns_forward_healthcheck_broken_total") >= 1


def test_failfast_all_unhealthy_answers_servfail_without_trying() -> None:
    registry = CollectorRegistry()
    dead = down()

    async def run() -> None:
        f = forward.Forwarder(config(dead, failfast_all_unhealthy_upstreams=True), registry)
        f.proxies[0].fails = 3  # as if three health checks had failed
        reply = parse(await f.forward(query("www.example.org").to_wire(), False))
        assert reply.rcode() == dns.rcode.SERVFAIL
        await f.stop()

    asyncio.run(run())
    to = f"127.0.0.1:{dead.port}"
    assert sample(registry, "coredns_forward_requests_total", to=to) == 0
    assert sample(registry, "coredns_forward_healthcheck_broken_total") == 1


def test_upstream_comes_back_when_a_health_check_succeeds() -> None:
    async def run() -> None:
        port = closed_port()
        f = forward.Forwarder(config(Upstream("dns", "127.0.0.1", port), health_check=0.02))
        await f.start()
        try:
            await f.forward(query("www.example.org").to_wire(), False)
            await wait_until(lambda: f.proxies[0].down(2))
            revived = await asyncio.to_thread(Dnsmasq, {"example.org": "192.0.2.7"}, port)
            try:
                await wait_until(lambda: f.proxies[0].fails == 0)
                reply = parse(await f.forward(query("www.example.org").to_wire(), False))
                assert addresses(reply) == ["192.0.2.7"]
            finally:
                revived.stop()
        finally:
            await f.stop()

    asyncio.run(run())


def test_max_fails_zero_never_marks_down_nor_probes() -> None:
    async def run() -> None:
        f = forward.Forwarder(config(down(), max_fails=0, health_check=0.02))
        for _ in range(3):
            reply = parse(await f.forward(query("www.example.org").to_wire(), False))
            assert reply.rcode() == dns.rcode.SERVFAIL
        assert f.proxies[0].fails == 0 and not f._tasks
        await f.stop()

    asyncio.run(run())


def test_slow_upstream_times_out_into_servfail_within_the_budget() -> None:
    async def run() -> None:
        async with FaultServer(lambda w, p: [answer(w)], delay=2.0) as slow:
            f = forward.Forwarder(config(slow.upstream()), timeout=0.6, read_timeout=0.25)
            q = query("slow.example.org")
            started = time.monotonic()
            reply = parse(await f.forward(q.to_wire(), False))
            elapsed = time.monotonic() - started
            assert reply.rcode() == dns.rcode.SERVFAIL
            assert reply.id == q.id and reply.question == q.question
            assert reply.flags & dns.flags.RD
            assert 0.5 < elapsed < 1.0
            assert len(slow.seen) >= 2  # retried within the budget
            await f.stop()

    asyncio.run(run())


def test_slow_upstream_falls_over_to_the_next(dnsmasq_a: Dnsmasq) -> None:
    async def run() -> None:
        async with FaultServer(lambda w, p: [answer(w)], delay=2.0) as slow:
            f = forward.Forwarder(
                config(slow.upstream(), dnsmasq_a.upstream(), policy="sequential"),
                read_timeout=0.2,
            )
            reply = parse(await f.forward(query("www.example.org").to_wire(), False))
            assert addresses(reply) == ["192.0.2.1"]
            await f.stop()

    asyncio.run(run())


def test_default_timeouts_are_corednss() -> None:
    assert forward.DEFAULT_TIMEOUT == 5.0
    assert forward.READ_TIMEOUT == 2.0


# -- protocols and truncation ------------------------------------------------------


def test_truncated_udp_reply_goes_back_to_a_udp_client() -> None:
    async def run() -> None:
        async with FaultServer(truncating) as srv:
            f = forward.Forwarder(config(srv.upstream()))
            reply = parse(await f.forward(query("big.example.org").to_wire(), False))
            assert reply.flags & dns.flags.TC
            assert [proto for proto, _ in srv.seen] == ["udp"]
            # The client retries over TCP, and so does kdns towards the upstream.
            reply = parse(await f.forward(query("big.example.org").to_wire(), True))
            assert not reply.flags & dns.flags.TC
            assert len(addresses(reply)) == 60
            assert [proto for proto, _ in srv.seen] == ["udp", "tcp"]
            await f.stop()

    asyncio.run(run())


def test_prefer_udp_retries_over_tcp_when_truncated() -> None:
    async def run() -> None:
        async with FaultServer(truncating) as srv:
            f = forward.Forwarder(config(srv.upstream(), prefer_udp=True))
            reply = parse(await f.forward(query("big.example.org").to_wire(), True))
            assert not reply.flags & dns.flags.TC
            assert len(addresses(reply)) == 60
            assert [proto for proto, _ in srv.seen] == ["udp", "tcp"]
            await f.stop()

    asyncio.run(run())


def test_force_tcp_uses_tcp_for_udp_clients_and_reuses_the_connection() -> None:
    registry = CollectorRegistry()

    async def run() -> int:
        async with FaultServer(truncating) as srv:
            f = forward.Forwarder(config(srv.upstream(), force_tcp=True, prefer_udp=True), registry)
            for _ in range(3):
                reply = parse(await f.forward(query("big.example.org").to_wire(), False))
                assert len(addresses(reply)) == 60
            assert [proto for proto, _ in srv.seen] == ["tcp"] * 3
            await f.stop()
            return srv.port

    port = asyncio.run(run())
    to = f"127.0.0.1:{port}"
    assert sample(registry, "coredns_forward_conn_cache_misses_total", to=to, proto="tcp") == 1
    assert sample(registry, "coredns_forward_conn_cache_hits_total", to=to, proto="tcp") == 2
    hits = "coredns_proxy_conn_cache_hits_total"
    assert sample(registry, hits, proxy_name="forward", to=to, proto="tcp") == 2


def test_pooled_tcp_connection_closed_by_upstream_is_replaced(dnsmasq_a: Dnsmasq) -> None:
    async def run() -> None:
        f = forward.Forwarder(config(dnsmasq_a.upstream(), force_tcp=True))
        assert addresses(parse(await f.forward(query("www.example.org").to_wire(), False)))
        for conn in f.proxies[0]._idle:  # the upstream hangs up
            conn.writer.close()
            await conn.writer.wait_closed()
        reply = parse(await f.forward(query("www.example.org").to_wire(), False))
        assert addresses(reply) == ["192.0.2.1"]
        await f.stop()

    asyncio.run(run())


# -- what comes back must belong to the query --------------------------------------


def test_mismatched_replies_are_dropped_and_the_right_one_taken() -> None:
    def liar(wire: bytes, proto: str) -> list[bytes]:
        good = answer(wire, "192.0.2.50")
        wrong_id = bytes([good[0] ^ 0xFF]) + good[1:]
        other = query("evil.example.com")
        other.id = int.from_bytes(wire[:2], "big")
        wrong_question = answer(other.to_wire(), "203.0.113.66")
        return [wrong_id, wrong_question, good]

    async def run() -> None:
        async with FaultServer(liar) as srv:
            f = forward.Forwarder(config(srv.upstream()))
            for tcp in (False, True):
                q = query("www.example.org")
                reply = parse(await f.forward(q.to_wire(), tcp))
                assert reply.id == q.id
                assert addresses(reply) == ["192.0.2.50"]
            await f.stop()

    asyncio.run(run())


def test_only_mismatched_replies_mean_servfail() -> None:
    def spoofer(wire: bytes, proto: str) -> list[bytes]:
        good = answer(wire)
        return [bytes([good[0] ^ 0xFF]) + good[1:]]

    async def run() -> None:
        async with FaultServer(spoofer) as srv:
            f = forward.Forwarder(config(srv.upstream()), timeout=0.4, read_timeout=0.2)
            reply = parse(await f.forward(query("www.example.org").to_wire(), False))
            assert reply.rcode() == dns.rcode.SERVFAIL
            await f.stop()

    asyncio.run(run())


# -- limits ------------------------------------------------------------------------


def test_max_concurrent_refuses_the_excess_and_counts_it() -> None:
    registry = CollectorRegistry()

    async def run() -> list[int]:
        async with FaultServer(lambda w, p: [answer(w)], delay=0.3) as slow:
            f = forward.Forwarder(config(slow.upstream(), max_concurrent=2), registry)
            queries = [query("www.example.org") for _ in range(5)]
            replies = await asyncio.gather(*(f.forward(q.to_wire(), False) for q in queries))
            await f.stop()
            for q, r in zip(queries, replies, strict=True):
                assert parse(r).id == q.id
            return sorted(parse(r).rcode() for r in replies)

    rcodes = asyncio.run(run())
    assert rcodes == [dns.rcode.NOERROR] * 2 + [dns.rcode.REFUSED] * 3
    assert sample(registry, "coredns_forward_max_concurrent_rejects_total") == 3


# -- chains ------------------------------------------------------------------------


@needs_unbound
def test_next_rcode_hands_the_query_to_the_next_stanza(
    unbound: Unbound, dnsmasq_a: Dnsmasq
) -> None:
    async def run() -> None:
        first = forward.Forwarder(config(unbound.upstream(), next_rcodes=("NXDOMAIN",)))
        second = forward.Forwarder(config(dnsmasq_a.upstream()))
        chain = forward.Chain([first, second])
        q = query("www.example.org")
        reply = parse(await chain.forward(q.to_wire(), False, "www.example.org."))
        assert addresses(reply) == ["192.0.2.1"]
        # Without `next`, the first matching stanza's answer stands.
        plain = forward.Chain([forward.Forwarder(config(unbound.upstream())), second])
        reply = parse(await plain.forward(q.to_wire(), False))
        assert reply.rcode() == dns.rcode.NXDOMAIN
        await chain.stop()

    asyncio.run(run())


def test_chain_picks_the_first_matching_stanza(dnsmasq_a: Dnsmasq, dnsmasq_b: Dnsmasq) -> None:
    async def run() -> None:
        chain = forward.Chain(
            [
                forward.Forwarder(config(dnsmasq_b.upstream(), from_zone="example.org.")),
                forward.Forwarder(config(dnsmasq_a.upstream())),
            ]
        )
        assert chain.matches("www.example.org.")
        reply = parse(await chain.forward(query("www.Example.org").to_wire(), False))
        assert addresses(reply) == ["192.0.2.2"]
        only_org = forward.Chain(chain.forwarders[:1])
        reply = parse(await only_org.forward(query("www.example.com").to_wire(), False))
        assert reply.rcode() == dns.rcode.REFUSED
        assert forward.qname_of(query("A.b.C").to_wire()) == "a.b.c."
        await chain.stop()

    asyncio.run(run())


# -- configuration warnings and metrics --------------------------------------------


def test_loopback_resolv_conf_upstream_warns_at_construction(
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream = Upstream("dns", "127.0.0.53", 53, resolv_conf="/etc/resolv.conf")
    with caplog.at_level(logging.WARNING, logger="kdns.plugins.forward.forward"):
        forward.Forwarder(config(upstream))
    [record] = [r for r in caplog.records if r.name == "kdns.plugins.forward.forward"]
    assert record.levelno == logging.WARNING
    assert "/etc/resolv.conf" in record.getMessage()
    assert "127.0.0.53" in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kdns.plugins.forward.forward"):
        forward.Forwarder(config(Upstream("dns", "127.0.0.1", 53)))  # written explicitly: fine
    assert not caplog.records


def test_metric_names_and_labels_are_corednss(dnsmasq_a: Dnsmasq) -> None:
    registry = CollectorRegistry()

    async def run() -> None:
        # Two stanzas share one registry: metrics are shared, not registered twice.
        f1 = forward.Forwarder(config(dnsmasq_a.upstream()), registry)
        f2 = forward.Forwarder(config(dnsmasq_a.upstream(), force_tcp=True), registry)
        await f1.forward(query("www.example.org").to_wire(), False)
        await f2.forward(query("www.example.org").to_wire(), False)
        await f2.stop()

    asyncio.run(run())
    text = generate_latest(registry).decode()
    to = f'to="127.0.0.1:{dnsmasq_a.port}"'
    for line in (
        f"coredns_forward_requests_total{{{to}}} 2.0",
        f'coredns_forward_responses_total{{rcode="NOERROR",{to}}} 2.0',
        f'coredns_forward_request_duration_seconds_count{{rcode="NOERROR",{to}}} 2.0',
        "coredns_proxy_request_duration_seconds_count"
        f'{{proxy_name="forward",rcode="NOERROR",{to}}} 2.0',
        f'coredns_forward_conn_cache_misses_total{{proto="tcp",{to}}} 1.0',
        "coredns_forward_healthcheck_broken_total 0.0",
        "coredns_forward_max_concurrent_rejects_total 0.0",
    ):
        assert line in text, line
    assert "# TYPE coredns_forward_healthcheck_failures_total counter" in text
    assert "# TYPE coredns_proxy_healthcheck_failures_total counter" in text
    assert 'le="8.192"' in text  # plugin.TimeBuckets: 0.25 ms doubling to ~8 s


def test_error_reply_echoes_opt_and_flags() -> None:
    q = query("www.example.org", use_edns=0, want_dnssec=True, payload=1400)
    q.flags |= dns.flags.CD
    reply = parse(forward.error_reply(q.to_wire(), forward.SERVFAIL))
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert reply.flags & dns.flags.QR and reply.flags & dns.flags.RD and reply.flags & dns.flags.CD
    assert reply.edns == 0 and reply.payload == 1400 and reply.ednsflags & dns.flags.DO
    assert reply.question == q.question


# -- the UDP socket pool (issue 12, item 8) ------------------------------------------


class FakeUpstream:
    """A bare UDP socket on 127.0.0.1 that collects queries and answers as a test says."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    async def receive(self, n: int) -> list[tuple[bytes, tuple[str, int]]]:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(5):
            return [await loop.sock_recvfrom(self.sock, 4096) for _ in range(n)]

    def send(self, packet: bytes, addr: tuple[str, int]) -> None:
        self.sock.sendto(packet, addr)

    def upstream(self) -> Upstream:
        return Upstream("dns", "127.0.0.1", self.port)


def test_concurrent_queries_share_a_few_sockets_and_spoofs_are_ignored() -> None:
    """Right ID with another question, on the right port, is dropped; the real reply wins.

    Twenty queries in flight at once leave through at most UDP_SOCKETS source ports
    under distinct IDs, and each gets its own answer although the upstream answers them
    in reverse order, every one preceded by a spoof.
    """
    fake = FakeUpstream()

    async def run() -> None:
        f = forward.Forwarder(config(fake.upstream()), timeout=3, read_timeout=2)
        queries = [query(f"host{i}.example.org") for i in range(20)]
        pending = [asyncio.ensure_future(f.forward(q.to_wire(), False)) for q in queries]
        received = await fake.receive(len(queries))
        ports = {addr for _, addr in received}
        assert len(ports) <= forward.UDP_SOCKETS
        per_port: dict[tuple[str, int], set[bytes]] = {}
        for wire, addr in received:
            per_port.setdefault(addr, set()).add(wire[:2])
        assert sum(map(len, per_port.values())) == len(queries)  # IDs unique per socket
        for wire, addr in reversed(received):
            spoof = query("evil.example.com")
            spoof.id = int.from_bytes(wire[:2], "big")
            fake.send(answer(spoof.to_wire(), "203.0.113.66"), addr)
            name = dnslib.DNSRecord.parse(wire).q.qname
            fake.send(answer(wire, f"192.0.2.{str(name).split('.')[0][4:]}"), addr)
        replies = [parse(r) for r in await asyncio.gather(*pending)]
        for i, (q, reply) in enumerate(zip(queries, replies, strict=True)):
            assert reply.id == q.id
            assert reply.question == q.question
            assert addresses(reply) == [f"192.0.2.{i}"]
        await f.stop()
        assert all(sock is None for sock in f.proxies[0]._udp_socks)

    try:
        asyncio.run(run())
    finally:
        fake.sock.close()


def test_only_spoofs_mean_a_timeout_and_the_id_is_freed() -> None:
    fake = FakeUpstream()

    async def run() -> None:
        f = forward.Forwarder(config(fake.upstream()), timeout=0.3, read_timeout=0.3)
        q = query("www.example.org")
        pending = asyncio.ensure_future(f.forward(q.to_wire(), False))
        [(wire, addr)] = await fake.receive(1)
        spoof = query("www.example.org", "AAAA")  # same name, another type
        spoof.id = int.from_bytes(wire[:2], "big")
        fake.send(answer(spoof.to_wire()), addr)
        reply = parse(await pending)
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert not any(sock and sock.pending for sock in f.proxies[0]._udp_socks)
        await f.stop()

    try:
        asyncio.run(run())
    finally:
        fake.sock.close()


def test_idle_pooled_udp_sockets_are_closed_after_expire(dnsmasq_a: Dnsmasq) -> None:
    async def run() -> None:
        f = forward.Forwarder(config(dnsmasq_a.upstream(), expire=0.05))
        reply = parse(await f.forward(query("www.example.org").to_wire(), False))
        assert addresses(reply) == ["192.0.2.1"]
        proxy = f.proxies[0]
        [sock] = [s for s in proxy._udp_socks if s is not None]
        await wait_until(lambda: time.monotonic() - sock.used > 0.05)
        proxy.close_idle(only_expired=True)
        assert sock.closed and all(s is None for s in proxy._udp_socks)
        reply = parse(await f.forward(query("www.example.org").to_wire(), False))
        assert addresses(reply) == ["192.0.2.1"]  # a fresh socket on demand
        await f.stop()

    asyncio.run(run())


@pytest.mark.skipif(uvloop is None, reason="uvloop not installed")
def test_forward_latency_is_timed_finer_than_the_loop_clock(dnsmasq_a: Dnsmasq) -> None:
    """uvloop's clock ticks in whole milliseconds; the histogram must not (item 14)."""
    registry = CollectorRegistry()

    async def run() -> None:
        f = forward.Forwarder(config(dnsmasq_a.upstream()), registry)
        for _ in range(20):
            await f.forward(query("www.example.org").to_wire(), False)
        await f.stop()

    assert uvloop is not None
    uvloop.run(run())
    to = f"127.0.0.1:{dnsmasq_a.port}"
    name = "coredns_proxy_request_duration_seconds"
    labels = {"proxy_name": "forward", "to": to, "rcode": "NOERROR"}
    total = sample(registry, name + "_sum", **labels)
    assert total > 0
    assert abs(total * 1000 - round(total * 1000)) > 1e-6, total
    assert sample(registry, name + "_bucket", le="0.001", **labels) >= 1
