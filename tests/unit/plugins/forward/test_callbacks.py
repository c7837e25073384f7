"""Forwarding by callback (issue 14): the handler's forwarded queries are Deferreds that
the upstream socket's reader resolves, with no task; the policy loop, timeouts, ``next``
and metrics behave as the awaited ``forward`` always did.

Upstreams are real UDP sockets on 127.0.0.1 in the test's own event loop.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from kdns.dns import metrics
from kdns.plugins.forward import forward
from kdns.plugins.forward.setup import ForwardConfig, Upstream
from kdns.query import chain, handler
from kdns.query.deferred import Deferred

ANSWER = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\xc0\x00\x02\x01"
CLIENT = ("127.0.0.1", 5353)


def query(name: str, ident: int = 0x1234) -> bytes:
    labels = b"".join(bytes((len(p),)) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x00\x01\x00\x01"


class Server(asyncio.DatagramProtocol):
    """An upstream: answers A with 192.0.2.1 (``rcode`` in the header), or stays silent."""

    def __init__(self, rcode: int = 0, silent: bool = False) -> None:
        self.rcode = rcode
        self.silent = silent
        self.seen: list[bytes] = []
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.seen.append(data)
        if self.silent:
            return
        end = data.find(0, 12) + 5
        flags = bytes((0x81, 0x80 | self.rcode))
        counts = (
            b"\x00\x01\x00\x00\x00\x00\x00\x00"
            if self.rcode
            else b"\x00\x01\x00\x01\x00\x00\x00\x00"
        )
        body = b"" if self.rcode else ANSWER
        self.transport.sendto(data[:2] + flags + counts + data[12:end] + body, addr)


async def serve(server: Server) -> Upstream:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    return Upstream("dns", "127.0.0.1", transport.get_extra_info("sockname")[1])


def config(*to: Upstream, **options: Any) -> ForwardConfig:
    options.setdefault("policy", "sequential")
    return ForwardConfig(from_zone=".", to=to, to_args=tuple(u.host for u in to), **options)


class Replies:
    """A ``done`` callback that keeps what it gets; tests wait on it, not on sleeps."""

    def __init__(self) -> None:
        self.got: list[bytes | None] = []
        self.changed = asyncio.Event()

    def __call__(self, reply: bytes | None) -> None:
        self.got.append(reply)
        self.changed.set()

    async def wait(self, n: int) -> list[bytes | None]:
        while len(self.got) < n:
            self.changed.clear()
            await self.changed.wait()
        return self.got


def run(body: Callable[[], Any]) -> Any:
    return asyncio.run(body())


def test_a_forwarded_udp_query_is_a_deferred_resolved_without_a_task() -> None:
    async def body() -> None:
        server = Server()
        f = forward.Forwarder(config(await serve(server)))
        upstream = forward.Chain([f])
        stats = metrics.QueryStats("dns://:53")
        pipeline = chain.Pipeline([chain.Block(zones=(".",), upstream=upstream)], stats)
        h = handler.Handler(None, stats, pipeline)
        pkt = query("www.example.org", ident=0xABCD)
        for i in range(forward.UDP_SOCKETS):  # the pool open, as on a busy server
            await f.proxies[0]._open_udp(i)
        tasks = len(asyncio.all_tasks())
        replies = Replies()
        pending = h.answer_udp(pkt, CLIENT)
        assert isinstance(pending, Deferred)
        pending.then(replies)
        assert len(asyncio.all_tasks()) == tasks  # nothing scheduled: the reader calls back
        [reply] = await replies.wait(1)
        assert reply is not None and reply[:2] == b"\xab\xcd"
        assert reply == await upstream.forward(pkt, False)  # what the chain's forward gives
        assert len(server.seen) == 2
        assert len({q[:2] for q in server.seen}) == 2  # a fresh upstream ID each time
        stats.expand_fast()
        assert stats.responses == {(".", 0, "forward"): 1}
        await f.stop()

    run(body)


def test_a_silent_upstream_times_out_to_the_next_one_and_frees_its_ids() -> None:
    async def body() -> None:
        silent, live = Server(silent=True), Server()
        f = forward.Forwarder(
            config(await serve(silent), await serve(live)), timeout=2, read_timeout=0.1
        )
        for i in range(forward.UDP_SOCKETS):  # open every pooled socket of both upstreams
            for proxy in f.proxies:
                await proxy._open_udp(i)
        replies = await asyncio.gather(*(f.forward(query(f"h{i}.example.org", i), False)
                                         for i in range(10)))  # fmt: skip
        for i, reply in enumerate(replies):
            assert reply is not None and reply[:2] == struct.pack("!H", i)
            assert reply[3] & 0x0F == 0 and reply[7] == 1
        asked = [q for q in silent.seen if b"example" in q]  # not the health probes
        assert len(asked) == len(live.seen) == 10
        pending = [w for p in f.proxies for s in p._udp_socks if s for w in s.pending.values()]
        assert not [w for w in pending if isinstance(w, forward._Flight)]  # probes may wait
        assert not f._expiry.flights and f._inflight == 0
        await f.stop()

    run(body)


def test_only_silence_is_servfail_after_every_pass_within_the_budget() -> None:
    async def body() -> None:
        silent = Server(silent=True)
        f = forward.Forwarder(config(await serve(silent), max_fails=0), timeout=0.5,
                              read_timeout=0.1)  # fmt: skip
        for i in range(forward.UDP_SOCKETS):
            await f.proxies[0]._open_udp(i)
        reply = await f.forward(query("www.example.org", 7), False)
        assert reply is not None and reply[:2] == b"\x00\x07" and reply[3] & 0x0F == 2
        assert len(silent.seen) == forward.MAX_PASSES  # one upstream: a try per pass
        assert f._inflight == 0 and not f._expiry.flights
        await f.stop()

    run(body)


def test_next_hands_the_reply_to_the_next_stanza_by_callback() -> None:
    async def body() -> None:
        nx, good = Server(rcode=3), Server()
        first = forward.Forwarder(config(await serve(nx), next_rcodes=("NXDOMAIN",)))
        second = forward.Forwarder(config(await serve(good)))
        upstream = forward.Chain([first, second])
        replies = Replies()
        upstream.send(query("www.example.org", 9), False, replies)
        [reply] = await replies.wait(1)
        assert reply is not None and reply[3] & 0x0F == 0 and reply[:2] == b"\x00\x09"
        assert len(nx.seen) == len(good.seen) == 1
        alone = forward.Chain([first])  # no later stanza: the NXDOMAIN stands
        assert (await alone.forward(query("www.example.org"), False) or b"")[3] & 0x0F == 3
        for f in (first, second):
            await f.stop()

    run(body)


def test_max_concurrent_refuses_at_once() -> None:
    async def body() -> None:
        silent = Server(silent=True)
        registry = CollectorRegistry()
        f = forward.Forwarder(config(await serve(silent), max_concurrent=1), registry,
                              timeout=0.3, read_timeout=0.1)  # fmt: skip
        replies = Replies()
        f.send(query("a.example.org", 1), False, replies)
        f.send(query("b.example.org", 2), False, replies)
        got = replies.got
        assert len(got) == 1 and got[0] is not None and got[0][3] & 0x0F == 5  # REFUSED, now
        await replies.wait(2)
        assert got[1] is not None and got[1][3] & 0x0F == 2
        assert registry.get_sample_value("coredns_forward_max_concurrent_rejects_total") == 1
        await f.stop()

    run(body)


def test_legacy_metrics_sum_over_proxy_names() -> None:
    async def body() -> tuple[str, CollectorRegistry]:
        server = Server()
        up = await serve(server)
        registry = CollectorRegistry()
        a = forward.Forwarder(config(up), registry, proxy_name="forward")
        b = forward.Forwarder(config(up), registry, proxy_name="other")
        for f in (a, b, b):
            assert await f.forward(query("www.example.org"), False) is not None
        for f in (a, b):
            await f.stop()
        return f"127.0.0.1:{up.port}", registry

    to, registry = run(body)
    value = registry.get_sample_value
    assert value("coredns_forward_requests_total", {"to": to}) == 3
    assert value("coredns_forward_responses_total", {"to": to, "rcode": "NOERROR"}) == 3
    legacy = "coredns_forward_request_duration_seconds_count"
    assert value(legacy, {"to": to, "rcode": "NOERROR"}) == 3
    proxy = "coredns_proxy_request_duration_seconds_count"
    assert value(proxy, {"proxy_name": "forward", "to": to, "rcode": "NOERROR"}) == 1
    assert value(proxy, {"proxy_name": "other", "to": to, "rcode": "NOERROR"}) == 2


@pytest.mark.parametrize("early", [True, False], ids=["resolved-first", "then-first"])
def test_a_deferred_delivers_once_whichever_comes_first(early: bool) -> None:
    d = Deferred()
    got: list[bytes | None] = []
    if early:
        d.resolve(b"reply")
    d.then(got.append)
    d.resolve(b"reply")
    d.resolve(b"again")  # ignored
    assert got == [b"reply"]
    closed = Deferred()
    closed.then(got.append)
    closed.close()
    closed.resolve(b"nobody")
    assert got == [b"reply"]

    async def awaited() -> bytes | None:
        later = Deferred()
        asyncio.get_running_loop().call_soon(later.resolve, b"late")
        return await later

    assert asyncio.run(awaited()) == b"late"


def closed_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_send_errors_fail_each_try_once(loop: str) -> None:
    """ICMP port unreachable comes back as error_received, at once from the send itself on
    asyncio's transport: every query still ends once, in SERVFAIL, with nothing left."""
    uvloop = pytest.importorskip("uvloop") if loop == "uvloop" else None

    async def body() -> None:
        dead = Upstream("dns", "127.0.0.1", closed_port())
        f = forward.Forwarder(config(dead, max_fails=0), timeout=1.0, read_timeout=0.5)
        for i in range(forward.UDP_SOCKETS):
            await f.proxies[0]._open_udp(i)
        replies = await asyncio.gather(
            *(f.forward(query(f"h{i}.example.org", i), False) for i in range(8))
        )
        for i, reply in enumerate(replies):
            assert reply is not None and reply[:2] == struct.pack("!H", i)
            assert reply[3] & 0x0F == 2
        assert f._inflight == 0 and not f._expiry.flights
        assert not any(s is not None and s.pending for s in f.proxies[0]._udp_socks)
        await f.stop()

    if uvloop is not None:
        uvloop.run(body())
    else:
        asyncio.run(body())


def test_a_cache_miss_goes_by_callback_and_fills_the_cache() -> None:
    from kdns.plugins.cache import respcache
    from kdns.plugins.cache.setup import CacheConfig

    async def body() -> None:
        server = Server()
        f = forward.Forwarder(config(await serve(server)))
        upstream = forward.Chain([f])
        cache = respcache.ResponseCache(CacheConfig(zones=(".",)), downstream=upstream.forward)
        stats = metrics.QueryStats("dns://:53")
        block = chain.Block(zones=(".",), upstream=upstream, cache=cache)
        h = handler.Handler(None, stats, chain.Pipeline([block], stats))
        for i in range(forward.UDP_SOCKETS):
            await f.proxies[0]._open_udp(i)
        pkt = query("www.example.org", ident=0x0102)
        miss = h.answer_udp(pkt, CLIENT)
        assert isinstance(miss, Deferred)
        replies = Replies()
        miss.then(replies)
        [reply] = await replies.wait(1)
        hit = h.answer_udp(query("WWW.example.org", ident=0x0103), CLIENT)
        assert isinstance(hit, bytes) and hit[:2] == b"\x01\x03"
        assert reply is not None and reply[:2] == b"\x01\x02"
        assert len(reply) == len(hit) and reply[-4:] == hit[-4:] == b"\xc0\x00\x02\x01"
        assert len(server.seen) == 1
        assert (cache.counts.requests, cache.counts.misses) == (2, 1)
        await f.stop()

    run(body)
