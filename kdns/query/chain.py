"""The plugin chain for queries the fast path does not answer.

A listener serves several server blocks; a query goes to the block with the longest
zone containing its name, as CoreDNS routes it. Inside a block the plugins act in the
fixed order of CoreDNS's plugin.cfg, never in Corefile order:
``log -> rewrite -> autopath -> acl -> cache -> template -> hosts -> kubernetes -> forward``,
with ``whoami`` for the built-in default block. acl acts on the name rewrite and autopath
ask for (CVE-2026-26017, coredns#8290), and before the cache (coredns#8289). The
``cache`` holds forwarded answers only: answers of the cluster zone come from the compiled
table, which a watch event updates in milliseconds, so they are never served stale from a
cache.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import dnslib

from kdns.cluster.resolver import FALLTHROUGH
from kdns.cluster.table import Table
from kdns.dns import metrics, names, wire
from kdns.query.handler import FAMILY, PROTO, Query

log = logging.getLogger(__name__)

ROUTED_NAMES = 4096
"""Names whose fast-path route :meth:`Pipeline.outside` remembers (then it starts over)."""


Next = Callable[[Query], Awaitable[tuple[bytes | None, str]]]
"""The plugins after one, for one query: its response (None: say nothing) and the plugin
that answered."""


class Stage(Protocol):
    """rewrite and acl (kdns.plugins.rewrite, kdns.plugins.acl): answer, or call
    ``next_plugin`` with the query (or a rewritten one) and work on its response."""

    async def serve(self, q: Query, server: str, next_plugin: Next) -> tuple[bytes | None, str]: ...


class AnswerSource(Protocol):
    """hosts and template: an answer, or None to let the next plugin try."""

    def answer(self, q: Query) -> wire.Answer | None: ...


class Upstream(Protocol):
    """A block's ``forward`` stanzas, chained in Corefile order.

    ``forward`` without ``qname`` matches stanzas on the query's wire name.
    """

    def matches(self, qname: str) -> bool: ...

    def matches_wire(self, name: bytes) -> bool: ...

    async def forward(self, query: bytes, tcp: bool, qname: str | None = None) -> bytes | None: ...


Send = Callable[[bytes | None], None]
"""Who gets a reply sent by callback (:class:`Sender`)."""


@runtime_checkable
class Sender(Protocol):
    """An upstream that forwards by callback as well (the ``forward`` plugin's chain):
    ``done`` gets what ``forward(query, tcp)`` would return, with no coroutine."""

    def send(self, query: bytes, tcp: bool, done: Send) -> None: ...


class Cache(Protocol):
    """The ``cache`` plugin around the upstream: a hit, or the upstream's reply, stored.

    ``hit`` and ``miss`` serve the handler's fast path by key (lower-cased wire name,
    qtype, DO/CD byte), for a cache whose ``fast`` is true and whose ``zone_wires``
    hold the name.
    """

    zone_wires: frozenset[bytes]
    fast: bool

    @property
    def served(self) -> object | None:
        """What the last ``hit`` served without bookkeeping (an entry and the TTL it
        carried), None when it missed or took the general path: the handler may then
        serve the same query again from its bytes while ``again`` says the entry is
        still what ``hit`` would serve with that TTL (``again`` counts the hit then)."""
        ...

    def again(self, served: object, k: bytes) -> bool: ...

    def matches(self, qname: str) -> bool: ...

    def hit(
        self, k: bytes, query: bytes, qend: int, edns: bool, limit: int, do: bool
    ) -> bytes | None: ...

    async def miss(self, query: bytes, k: bytes, tcp: bool) -> bytes | None: ...

    def fill(self, reply: bytes, k: bytes, query: bytes | None) -> bytes: ...

    def get(
        self, query: bytes, qname: str, qtype: int, do: bool, cd: bool, tcp: bool = False
    ) -> bytes | None: ...

    async def resolve(
        self, query: bytes, qname: str, qtype: int, do: bool, cd: bool, tcp: bool
    ) -> bytes | None: ...


class AutoPath(Protocol):
    """The ``autopath`` plugin (kdns.plugins.autopath): a completed answer, or None."""

    async def serve(
        self, q: Query, run: Callable[[Query], Awaitable[tuple[bytes | None, str]]]
    ) -> tuple[bytes | None, str] | None: ...

    @property
    def cluster_only(self) -> bool:
        """It acts on cluster-zone names only (``@kubernetes``), so names outside them
        may keep the fast path."""
        ...


class QueryLog(Protocol):
    def log(self, q: Query, response: bytes, seconds: float) -> None: ...


@dataclass(slots=True)
class Kube:
    """One ``kubernetes`` plugin instance: its zones and compiled table."""

    table: Table
    zones: tuple[str, ...]

    def covers(self, qname: str) -> bool:
        return any(names.is_subdomain(qname, z) for z in self.zones)


@dataclass(slots=True)
class Block:
    """A server block's plugins, already set up."""

    zones: tuple[str, ...]
    kube: Kube | None = None
    sources: list[tuple[str, AnswerSource]] = field(default_factory=list)  # (plugin, source)
    upstream: Upstream | None = None
    cache: Cache | None = None
    querylog: QueryLog | None = None
    # the whoami plugin's responder (qname, client address, port, protocol), when on
    whoami: Callable[[str, str, int, str], wire.Answer] | None = None
    errors: bool = False  # the errors plugin: log what went wrong upstream
    autopath: AutoPath | None = None  # runs the rest of the chain for a pod's search path
    rewrite: Stage | None = None  # before autopath: the rest of the chain sees its query
    acl: Stage | None = None  # after rewrite and autopath, before everything else


@dataclass(frozen=True, slots=True)
class Outside:
    """How a block answers a name outside its cluster zones when only ``cache`` and
    ``forward`` act on it: the handler's fast path takes such queries as bytes, with no
    :class:`Query` (a cache hit at once, a miss straight to the upstream's sockets)."""

    zone: str  # the block's zone, the metrics label
    upstream: Upstream
    cache: Cache | None
    cache_all: bool  # the cache's zones hold every name
    errors: bool
    uncached: Outside | None = None  # the same block for a name outside the cache's zones
    # The upstream's callback entry (Sender.send), None when it has only the coroutine;
    # ``fills``: a cache miss may take it too, the reply then stored with ``cache.fill``
    # (the cache's own downstream is this upstream, so that is what ``cache.miss`` does).
    send: Callable[[bytes, bool, Send], None] | None = None
    fills: bool = False


class Pipeline:
    """Routes a :class:`Query` to its block and runs the block's plugins."""

    def __init__(self, blocks: Sequence[Block], stats: metrics.QueryStats) -> None:
        self.blocks = list(blocks)
        self.stats = stats
        # The loop plugin's probe names and how often each came back to us.
        self.loop_probes: dict[str, int] = {}
        self.on_loop: Callable[[str], None] | None = None
        self._last_error = 0.0
        self._suppressed = 0
        self._zones: list[tuple[str, Block]] = sorted(
            ((zone, block) for block in blocks for zone in block.zones),
            key=lambda item: len(item[0]),
            reverse=True,
        )
        self._outside = _outside_routes(self._zones)
        # Names routed before, by lower-cased wire name (the handler reads it too).
        self.routed: dict[bytes, Outside | None] = {}
        # rewrite's class rules: the handler hands the chain queries of every class.
        self.all_classes = any(block.rewrite is not None for block in blocks)

    def outside(self, name: bytes) -> Outside | None:
        """The fast path's plan for a lower-cased wire name, or None: the chain decides.

        The longest zone holding the name picks the block, as :meth:`route` does; the
        cluster zones of every block map to None, so their names never take this way.
        The plan's ``cache`` is None when the cache's zones do not hold the name. Names
        seen recently are remembered (routing never changes within a configuration).
        """
        routed = self.routed
        try:
            return routed[name]
        except KeyError:
            pass
        routes = self._outside
        zone = names.wire_zone(name, routes)
        plan = None if zone is None else routes[zone]
        if (
            plan is not None
            and plan.cache is not None
            and not plan.cache_all
            and not names.wire_zone(name, plan.cache.zone_wires)
        ):
            plan = plan.uncached
        if len(routed) >= ROUTED_NAMES:
            routed.clear()
        routed[name] = plan
        return plan

    def route(self, qname: str) -> tuple[str, Block] | None:
        for zone, block in self._zones:
            if names.is_subdomain(qname, zone):
                return zone, block
        return None

    async def resolve(self, q: Query) -> bytes | None:
        if self.loop_probes:
            self.loop_seen(q.qname, q.qtype)
        routed = self.route(q.qname)
        if routed is None:
            # No block serves this name: REFUSED, as CoreDNS answers.
            refused = q.reply(wire.build(q.qname, wire.REFUSED, authoritative=False))
            self._count(q, ".", wire.REFUSED, "", refused)
            return refused
        zone, block = routed
        response, plugin = await self._run(block, q)
        if response is None:
            return None
        rcode = response[3] & 0x0F if len(response) >= 4 else wire.SERVFAIL
        self._count(q, zone, rcode, plugin, response)
        if block.querylog is not None:
            block.querylog.log(q, response, time.perf_counter() - q.started)
        return response

    def loop_seen(self, qname: str, qtype: int) -> None:
        """Count our own loop probe coming back; the third arrival is a loop, as in CoreDNS.

        Only the HINFO probe counts, and the prober resets the count whenever an exchange
        goes unanswered, so retries against a silent upstream never add up to a loop.
        """
        seen = self.loop_probes.get(qname)
        if seen is None or qtype != wire.HINFO:
            return
        self.loop_probes[qname] = seen + 1
        if seen + 1 > 2:
            del self.loop_probes[qname]  # report once; the process is stopping
            if self.on_loop is not None:
                self.on_loop(qname)

    async def _run(self, block: Block, q: Query) -> tuple[bytes | None, str]:
        if block.rewrite is not None:
            return await block.rewrite.serve(q, self.stats.server, lambda r: self._asked(block, r))
        return await self._asked(block, q)

    async def _asked(self, block: Block, q: Query) -> tuple[bytes | None, str]:
        """The chain after rewrite: whoami, autopath, then acl and the rest."""
        if q.qclass != wire.CLASS_IN:  # only a listener with rewrite lets it this far
            return await self._acl(block, q)  # acl may act on it; REFUSED after
        if block.whoami is not None:
            proto = "tcp" if q.tcp else "udp"
            me = block.whoami(q.qname, q.remote[0], q.remote[1], proto)
            return q.reply(me), "whoami"
        autopath = block.autopath
        if autopath is not None and q.remote[0]:  # autopath's own lookups have no remote
            client = q.remote

            def walk(sub: Query) -> Awaitable[tuple[bytes | None, str]]:
                # As CoreDNS's autopath passes on the client's writer: acl judges the
                # client, not the walk (coredns#8290).
                return self._acl(block, dataclasses.replace(sub, remote=client))

            completed = await autopath.serve(q, walk)
            if completed is not None:
                return completed
        return await self._acl(block, q)

    async def _acl(self, block: Block, q: Query) -> tuple[bytes | None, str]:
        if block.acl is not None:
            return await block.acl.serve(q, self.stats.server, lambda a: self._chain(block, a))
        return await self._chain(block, q)

    async def _chain(self, block: Block, q: Query) -> tuple[bytes | None, str]:
        """The plugins that answer: hosts and template, kubernetes, cache, forward."""
        if q.qclass != wire.CLASS_IN:
            return q.reply(wire.build(q.qname, wire.REFUSED, authoritative=False)), ""
        kube = block.kube
        in_kube = kube is not None and kube.covers(q.qname)
        for plugin, source in block.sources:
            found = source.answer(q)
            if found is not None:
                return q.reply(found), plugin
        if kube is not None and in_kube:
            answer = kube.table.lookup(q.name, q.qtype)
            if answer is not None and answer is not FALLTHROUGH:
                if answer.chase and block.upstream is not None:
                    return q.reply(await self._chase(block, kube, q, answer.chase)), "kubernetes"
                return q.reply(answer), "kubernetes"
        cache = block.cache
        if cache is not None and cache.matches(q.qname) and block.upstream is not None:
            # The cache holds forwarded answers only; cluster answers above are never stale.
            reply = await cache.resolve(q.raw, q.qname, q.qtype, q.do, bool(q.cd), q.tcp)
            return (None if reply is None else self._fit(q, reply)), "forward"
        upstream = block.upstream
        if upstream is not None and upstream.matches(q.qname):
            forwarded = await upstream.forward(q.raw, q.tcp, q.qname)
            if forwarded is None:
                return None, "forward"
            if block.errors and len(forwarded) > 3 and forwarded[3] & 0x0F == wire.SERVFAIL:
                self.error(q.qname, q.qtype, "forward: no upstream answered in time")
            return self._fit(q, forwarded), "forward"
        # The end of the chain with nobody answering: CoreDNS's "no next plugin found".
        return q.reply(wire.build(q.qname, wire.SERVFAIL, authoritative=False)), ""

    async def _chase(self, block: Block, kube: Kube, q: Query, target: str) -> wire.Answer:
        """An ExternalName's CNAME plus its target's records from upstream, as CoreDNS adds them.

        Pods' stub resolvers (glibc, musl) do not follow a CNAME themselves, so a bare
        CNAME to a name outside the cluster would leave them with no address.
        """
        ttl = kube.table.resolver.settings.ttl
        records = [wire.RR(q.qname, wire.CNAME, ttl, wire.rdata_name(target))]
        probe = dnslib.DNSRecord.question(target, dnslib.QTYPE.get(q.qtype, "A"))
        probe.header.id = random.getrandbits(16)
        raw = probe.pack()
        reply: bytes | None = None
        cache, upstream = block.cache, block.upstream
        if cache is not None and cache.matches(target):
            reply = await cache.resolve(raw, target, q.qtype, False, False, False)
        elif upstream is not None and upstream.matches(target):
            reply = await upstream.forward(raw, False, target)
        if reply is not None:
            try:
                parsed = dnslib.DNSRecord.parse(reply)
            except Exception:
                parsed = None
            if parsed is not None and parsed.header.rcode == wire.NOERROR:
                for rr in parsed.rr:
                    buffer = dnslib.DNSBuffer()
                    rr.rdata.pack(buffer)
                    name = names.fqdn(str(rr.rname))
                    records.append(wire.RR(name, rr.rtype, rr.ttl, bytes(buffer.data)))
        return wire.build(q.qname, wire.NOERROR, records)

    def quick(self, q: Query) -> bytes | None:
        """A cache hit answered without scheduling a task; None when the chain must run."""
        routed = self.route(q.qname)
        if routed is None:
            return None
        zone, block = routed
        cache = block.cache
        if (
            cache is None
            or block.sources
            or block.whoami is not None
            or block.querylog is not None
            or block.rewrite is not None
            or block.acl is not None
            or (block.autopath is not None and not block.autopath.cluster_only)
            or (block.kube is not None and block.kube.covers(q.qname))
            or not cache.matches(q.qname)
        ):
            return None
        hit = cache.get(q.raw, q.qname, q.qtype, q.do, bool(q.cd), q.tcp)
        if hit is None:
            return None
        reply = self._fit(q, hit)
        self._count(q, zone, reply[3] & 0x0F, "cache", reply)
        return reply

    def error(self, qname: str, qtype: int, message: str) -> None:
        """The errors plugin's line, rate-limited so a dead upstream cannot flood the log."""
        now = time.monotonic()
        if now - self._last_error < 1.0:
            self._suppressed += 1
            return
        suffix = f" ({self._suppressed} more suppressed)" if self._suppressed else ""
        self._last_error, self._suppressed = now, 0
        log.error(
            "plugin/errors: %d %s %s: %s%s",
            wire.SERVFAIL,
            qname,
            metrics.type_name(qtype),
            message,
            suffix,
        )

    def _fit(self, q: Query, response: bytes) -> bytes:
        """An upstream reply as big as the client takes; else TC with the question only."""
        if len(response) <= q.limit:
            return response
        flags = bytes((response[2] | 0x02, response[3]))
        counts = struct.pack("!HHHH", 1, 0, 0, 1 if q.opt else 0)
        return response[:2] + flags + counts + q.question + q.opt

    def _count(self, q: Query, zone: str, rcode: int, plugin: str, response: bytes) -> None:
        self.stats.count(
            zone,
            PROTO[q.tcp],
            FAMILY[q.family],
            q.qtype,
            rcode,
            plugin,
            q.do,
            time.perf_counter() - q.started,
            len(q.raw),
            len(response),
        )


def _outside_routes(zones: Sequence[tuple[str, Block]]) -> dict[bytes, Outside | None]:
    """Wire zone -> the block's :class:`Outside` plan, None where the chain must run.

    A block qualifies when nothing but ``cache`` and ``forward`` can act on a name
    outside its cluster zones: no ``log`` (it wants every query), rewrite, acl, hosts,
    template or whoami, and a cache (if any) the fast path may serve (not ``serve_stale verify``).
    """
    routes: dict[bytes, Outside | None] = {}
    try:
        for zone, block in zones:  # longest first: the first block of a zone wins
            cache = block.cache
            plan: Outside | None = None
            if (
                block.upstream is not None
                and not block.sources
                and block.whoami is None
                and block.querylog is None
                and block.rewrite is None
                and block.acl is None
                and (block.autopath is None or block.autopath.cluster_only)
                and (cache is None or cache.fast)
            ):
                upstream = block.upstream
                send = upstream.send if isinstance(upstream, Sender) else None
                bare = Outside(zone, upstream, None, False, block.errors, send=send)
                plan = bare
                if cache is not None:
                    every = b"\x00" in cache.zone_wires
                    fills = send is not None and getattr(cache, "downstream", None) == getattr(
                        upstream, "forward", None
                    )
                    plan = Outside(
                        zone, upstream, cache, every, block.errors, bare, send=send, fills=fills
                    )
            routes.setdefault(names.to_wire(zone), plan)
        for _, block in zones:
            if block.kube is not None:
                for kz in block.kube.zones:
                    routes[names.to_wire(kz)] = None
    except (names.BadName, UnicodeError):
        return {}  # a zone with no plain wire form: every query takes the chain
    return routes
