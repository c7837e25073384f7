"""Query bytes in, response bytes out: the fast path, and the door to the slow one.

The fast path reads just enough of a well-formed query (a fixed header, one question,
at most an OPT record) to find the compiled answer of the cluster zone, and splices
the query's ID and question into it: no parsing library, no objects. A plain query for
a name outside the cluster zones, in a block where only ``cache`` and ``forward`` act
on it, stays bytes too: a response-cache hit is answered at once (looked up by the
lower-cased question plus DO/CD, TTLs patched, ID and question spliced), a miss goes
to the forwarder's pooled sockets as the query bytes and its reply fills the cache
(:meth:`Handler._outside`). Everything else
is parsed once, strictly, into a :class:`Query` (dnslib validates the whole message),
and either answered here (the error policy: FORMERR for malformed input, NOTIMP for
other opcodes, BADVERS for unknown EDNS versions, REFUSED for other classes) or handed
to the asynchronous plugin chain (:mod:`kdns.query.chain`), which may forward upstream.
Nothing a client sends raises out of :meth:`Handler.handle`.
"""

from __future__ import annotations

import functools
import logging
import struct
import time
from bisect import bisect_left
from collections.abc import Coroutine
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any

import dnslib

from kdns.cluster.resolver import FALLTHROUGH
from kdns.cluster.table import DEFAULT, SPECIAL, Table
from kdns.dns import metrics, names, wire
from kdns.dns.metrics import DURATION_BUCKETS, FAST_BOUND
from kdns.query.deferred import Deferred

if TYPE_CHECKING:
    from kdns.query.chain import Cache, Outside, Pipeline

log = logging.getLogger(__name__)

# An answer that comes later: the chain's coroutine, which the transport awaits in a
# tracked task, or a forwarded plain query's Deferred, which calls the transport back.
Pending = Coroutine[Any, Any, "bytes | None"] | Deferred

_NO_ADDITIONAL = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_ONE_ADDITIONAL = b"\x00\x01\x00\x00\x00\x00\x00\x01"
_OPT_START = b"\x00\x00\x29"  # root owner, type OPT
_BITS = ((b"\x00", b"\x01"), (b"\x02", b"\x03"))  # a cache key's last byte, by [DO][CD]
_COUNTS = struct.Struct("!HHHH")
_HINFO = wire.HINFO
MAX_TCP = 65535
HIT_MEMO = 4096  # cache hits remembered by query bytes (then it starts over)
PROTO = ("udp", "tcp")
FAMILY = ("1", "2")  # CoreDNS's family label: 1 IPv4, 2 IPv6


@dataclass(slots=True)
class Query:
    """A validated query, for everything past the fast path."""

    raw: bytes
    qname: str  # absolute, lower-case text
    name: bytes  # lower-cased wire form
    question: bytes  # as sent, for the echo
    qtype: int
    qclass: int
    rd: int
    cd: int
    opt: bytes  # our OPT record for the reply, b"" when the query had none
    do: bool
    limit: int  # the largest reply the client takes
    tcp: bool
    family: int  # 0 IPv4, 1 IPv6
    remote: tuple[str, int]
    started: float

    def reply(self, answer: wire.Answer) -> bytes:
        """The answer spliced behind this query's ID and question, truncated to fit."""
        if 12 + len(self.question) + len(answer.body) + len(self.opt) > self.limit:
            return wire.truncate(
                self.raw[:2], self.rd, self.cd, self.question, answer, self.opt, self.limit
            )
        counts = answer.counts_opt if self.opt else answer.counts
        flags = answer.flags[self.rd][self.cd]
        body = answer.body_for(self.raw[1])
        return self.raw[:2] + flags + counts + self.question + body + self.opt


@dataclass(slots=True)
class FastRoute:
    """A kubernetes table the fast path may answer from, and how to label its answers."""

    table: Table
    zone: str  # the server block zone these names route to (metrics label)
    chase: bool = False  # the block forwards: ExternalName targets are looked up upstream
    # autopath in the block: a name without records (NXDOMAIN, or NODATA for a name with
    # neither A nor AAAA) may become a pod's search-path answer, so those go to the chain;
    # an answer with records is the same with or without autopath.
    positive_only: bool = False


class Handler:
    """One listener's query handling; the transports only move bytes."""

    def __init__(
        self,
        fast: FastRoute | None,
        stats: metrics.QueryStats,
        chain: Pipeline,
        max_udp: int = 1232,
    ) -> None:
        self.fast = fast
        self.stats = stats
        if fast is not None:
            # The zone label of compiled answers: the kubernetes block's zone, as CoreDNS
            # labels a query with the server block that took it.
            stats.fast_zone = fast.zone
        self.chain = chain
        self.max_udp = max_udp
        self._opt = wire.opt_record(max_udp, False)
        self._opt_do = wire.opt_record(max_udp, True)
        # Cache hits served lately, by the query after its ID (UDP, IPv4): the reply after
        # its ID, while the cache says the entry and its TTL are still what it would
        # serve (Cache.again); the ID is spliced in. (cache, served, key, reply[2:], stats key)
        # The C loop (kdns/server/_fastudp.c) serves from it too, under _outside's
        # conditions: a name in chain.routed whose plan's cache is memo[0], not HINFO.
        self.hits: dict[bytes, tuple[Cache, object, bytes, bytes, tuple[Any, ...]]] = {}
        self._last_error_log = 0.0

    def answer(
        self, pkt: bytes, tcp: bool, family: int, remote: tuple[str, int]
    ) -> bytes | Pending | None:
        """THE entry point: query bytes to response bytes, None (say nothing), or, when the
        plugin chain must wait on I/O (forward), an awaitable of the response.

        Every decision lives here: compiled answer, error policy, cache hit, chain.
        Transports send the bytes, or await the awaitable in a tracked task and send.
        """
        response = self.handle(pkt, tcp, family, remote)
        if isinstance(response, Query):
            return self._chain(response)
        return response

    def _chain(self, q: Query) -> bytes | Pending:
        """A cache hit answered at once, else the chain's coroutine (not yet scheduled)."""
        hit = self.chain.quick(q)
        if hit is not None:
            return hit
        return self.chain.resolve(q)

    def handle(
        self, pkt: bytes, tcp: bool, family: int, remote: tuple[str, int]
    ) -> bytes | Query | Pending | None:
        """A response, None (say nothing), a :class:`Query` for the plugin chain, or the
        awaitable of a forwarded plain query."""
        try:
            return self._fast(pkt, tcp, family, remote)
        except Exception:  # a bug must cost one answer, never the server
            self._log_error()
            return self.servfail(pkt)

    # -- fast path -----------------------------------------------------------------

    def answer_udp(self, pkt: bytes, addr: tuple[object, ...]) -> bytes | Pending | None:
        """:meth:`answer` for a datagram: the compiled answer first, with nothing before it."""
        ipv6 = len(addr) == 4 and not str(addr[0]).startswith("::ffff:")
        try:
            quick = self._quick(pkt, False, ipv6)
        except Exception:
            quick = None  # the full path answers, and owns the error policy
        if quick is not None:
            return quick
        response = self.slow(pkt, False, family_of(addr), remote_of(addr))
        if response is None or isinstance(response, bytes):
            return response
        return self._chain(response)

    def slow(
        self, pkt: bytes, tcp: bool, family: int, remote: tuple[str, int]
    ) -> bytes | Query | None:
        """The full path alone, for a query the fast path already declined."""
        try:
            return self.parse(pkt, tcp, family, remote)
        except Exception:  # a bug must cost one answer, never the server
            self._log_error()
            return self.servfail(pkt)

    def _quick(self, pkt: bytes, tcp: bool, ipv6: bool) -> bytes | Pending | None:
        """The compiled answer, a cache hit or forward of a name outside the cluster
        zones (:meth:`_outside`), or None. Every line here runs per query: keep it lean."""
        fast = self.fast
        n = len(pkt)
        if n < 17 or pkt[2] & 0xF8:
            return None  # a runt, a response or an opcode other than QUERY
        started = perf_counter()
        counts = pkt[4:12]
        end = pkt.find(0, 12)
        qend = end + 5
        if end < 0 or qend > n or pkt[end + 3] or pkt[end + 4] != 1:
            return None
        if counts == _NO_ADDITIONAL:
            if n != qend:
                return None
            opt = b""
            limit = 512
        elif (
            counts == _ONE_ADDITIONAL
            and n >= qend + 11
            and pkt[qend : qend + 3] == _OPT_START
            and not pkt[qend + 6]  # EDNS version 0; others get BADVERS on the full path
            and qend + 11 + ((pkt[qend + 9] << 8) | pkt[qend + 10]) == n
        ):
            opt = self._opt_do if pkt[qend + 7] & 0x80 else self._opt
            limit = (pkt[qend + 3] << 8) | pkt[qend + 4]
            if limit < 512:
                limit = 512
            elif limit > self.max_udp:
                limit = self.max_udp
        else:
            return None
        qtype = (pkt[end + 1] << 8) | pkt[end + 2]
        name = pkt[12 : end + 1].lower()
        if fast is None or name in self.chain.routed:
            # No cluster table, or a name seen before outside every cluster zone.
            return self._outside(pkt, name, qtype, qend, opt, limit, tcp, ipv6, started)
        table = fast.table
        node = table.nodes.get(name)
        if node is not None and qtype not in SPECIAL:
            answer = node.get(qtype)
            if answer is None:
                answer = node[DEFAULT]
            if answer is FALLTHROUGH or (answer.chase and fast.chase):
                return None  # the next plugin, or the upstream for an ExternalName's target
        else:
            found = table.lookup(name, qtype)
            if found is None:
                return self._outside(pkt, name, qtype, qend, opt, limit, tcp, ipv6, started)
            if found is FALLTHROUGH or (found.chase and fast.chase):
                return None
            answer = found
        if not answer.an_sizes and fast.positive_only:
            return None  # autopath may complete it from the client's search path
        if tcp:
            limit = MAX_TCP
        body = answer.body
        if answer.rotations:
            body = answer.rotations[pkt[1] % len(answer.rotations)]
        size = qend + len(body) + len(opt)
        if size > limit:
            response = wire.truncate(
                pkt[:2], pkt[2] & 1, (pkt[3] >> 4) & 1, pkt[12:qend], answer, opt, limit
            )
            size = len(response)
        else:
            response = b"".join(
                (
                    pkt[:2],
                    answer.flags[pkt[2] & 1][(pkt[3] >> 4) & 1],
                    answer.counts_opt if opt else answer.counts,
                    pkt[12:qend],
                    body,
                    opt,
                )
            )
        stats = self.stats
        key = (
            qtype if qtype < 256 else 0,
            answer.rcode,
            opt is self._opt_do,
            tcp,
            ipv6,
            n,
            size,
        )
        fast_counts = stats.fast
        fast_counts[key] = fast_counts.get(key, 0) + 1
        elapsed = perf_counter() - started
        if elapsed < FAST_BOUND:
            stats.fast_quick += 1
            stats.fast_seconds += elapsed
        else:
            stats.duration_observe(fast.zone, elapsed)
        return response

    def _outside(
        self,
        pkt: bytes,
        name: bytes,
        qtype: int,
        qend: int,
        opt: bytes,
        limit: int,
        tcp: bool,
        ipv6: bool,
        started: float,
    ) -> bytes | Pending | None:
        """A plain query for a name in no cluster zone: a cache hit, the forward's
        awaitable, or None when the chain must run (:meth:`Pipeline.outside` decides)."""
        chain = self.chain
        try:
            plan = chain.routed[name]  # Pipeline.outside's memory, read inline
        except KeyError:
            plan = chain.outside(name)
        if plan is None or (qtype == _HINFO and chain.loop_probes):
            return None  # the chain, or the loop plugin's probe coming back
        if tcp:
            limit = MAX_TCP
        do = opt is self._opt_do
        cache = plan.cache
        if cache is not None:
            stats = self.stats
            plain = not (tcp or ipv6)
            if plain:
                rest = pkt[2:]
                memo = self.hits.get(rest)
                if memo is not None and memo[0] is cache and cache.again(memo[1], memo[2]):
                    key = memo[4]
                    again = pkt[:2] + memo[3]
                    outside = stats.outside
                    outside[key] = outside.get(key, 0) + 1
                    elapsed = perf_counter() - started
                    if elapsed < FAST_BOUND and plan.zone == stats.fast_zone:
                        stats.fast_quick += 1
                        stats.fast_seconds += elapsed
                    else:
                        stats.duration_observe(plan.zone, elapsed)
                    return again
            k = name + pkt[qend - 4 : qend - 2] + _BITS[do][(pkt[3] >> 4) & 1]
            hit = cache.hit(k, pkt, qend, bool(opt), limit, do)
            if hit is None:
                if plan.fills:
                    return self._send(
                        plan, cache, k, pkt, qtype, qend, opt, limit, tcp, ipv6, started
                    )
                return self._forward(
                    plan, cache, k, pkt, qtype, qend, opt, limit, tcp, ipv6, started
                )
            key = (
                plan.zone,
                "cache",
                qtype,
                hit[3] & 0x0F,
                do,
                tcp,
                ipv6,
                len(pkt),
                len(hit),
            )
            served = cache.served
            if plain and served is not None:
                hits = self.hits
                if len(hits) >= HIT_MEMO:
                    hits.clear()
                hits[rest] = (cache, served, k, hit[2:], key)
            outside = stats.outside
            outside[key] = outside.get(key, 0) + 1
            elapsed = perf_counter() - started
            if elapsed < FAST_BOUND and plan.zone == stats.fast_zone:
                stats.fast_quick += 1  # the first duration bucket, counted as _quick does
                stats.fast_seconds += elapsed
                return hit
            hist = stats.duration.get(plan.zone)
            if hist is None:
                stats.duration_observe(plan.zone, elapsed)
            else:
                hist.counts[bisect_left(DURATION_BUCKETS, elapsed)] += 1
                hist.total += elapsed
            return hit
        if not plan.upstream.matches_wire(name):
            return None  # no stanza takes it: the chain's "no next plugin"
        if plan.send is not None:
            return self._send(plan, None, b"", pkt, qtype, qend, opt, limit, tcp, ipv6, started)
        return self._forward(plan, None, b"", pkt, qtype, qend, opt, limit, tcp, ipv6, started)

    def _send(
        self,
        plan: Outside,
        cache: Cache | None,
        k: bytes,
        pkt: bytes,
        qtype: int,
        qend: int,
        opt: bytes,
        limit: int,
        tcp: bool,
        ipv6: bool,
        started: float,
    ) -> Deferred:
        """:meth:`_forward` by callback, for an upstream that can (``plan.send``): no
        coroutine, no task; the reply comes from the upstream socket's reader."""
        reply = Deferred()
        send = plan.send
        assert send is not None
        done = functools.partial(
            self._sent, reply, plan, cache, k, pkt, qtype, qend, opt, limit, tcp, ipv6, started
        )
        send(pkt, tcp, done)
        return reply

    def _sent(
        self,
        deferred: Deferred,
        plan: Outside,
        cache: Cache | None,
        k: bytes,
        pkt: bytes,
        qtype: int,
        qend: int,
        opt: bytes,
        limit: int,
        tcp: bool,
        ipv6: bool,
        started: float,
        reply: bytes | None,
    ) -> None:
        """The upstream's reply for :meth:`_send`: what :meth:`_forward` makes of it."""
        try:
            if reply is not None and cache is not None:
                reply = cache.fill(reply, k, pkt)
            if reply is None:
                deferred.resolve(None)
                return
            if len(reply) > limit:
                reply = _truncated(reply, pkt, qend, opt)
            rcode = reply[3] & 0x0F if len(reply) >= 4 else wire.SERVFAIL
            if cache is None and plan.errors and rcode == wire.SERVFAIL:
                qname = names.wire_to_text(pkt[12 : qend - 4].lower())
                self.chain.error(qname, qtype, "forward: no upstream answered in time")
            self.stats.count(
                plan.zone,
                PROTO[tcp],
                FAMILY[ipv6],
                qtype,
                rcode,
                "forward",
                opt is self._opt_do,
                perf_counter() - started,
                len(pkt),
                len(reply),
            )
        except Exception:  # a bug must cost one answer, never the server
            self._log_error()
            reply = self.servfail(pkt)
        deferred.resolve(reply)

    async def _forward(
        self,
        plan: Outside,
        cache: Cache | None,
        k: bytes,
        pkt: bytes,
        qtype: int,
        qend: int,
        opt: bytes,
        limit: int,
        tcp: bool,
        ipv6: bool,
        started: float,
    ) -> bytes | None:
        """The upstream's reply to a plain query, through the cache when there is one."""
        try:
            if cache is not None:
                reply = await cache.miss(pkt, k, tcp)
            else:
                reply = await plan.upstream.forward(pkt, tcp)
            if reply is None:
                return None
            if len(reply) > limit:
                reply = _truncated(reply, pkt, qend, opt)
            rcode = reply[3] & 0x0F if len(reply) >= 4 else wire.SERVFAIL
            if cache is None and plan.errors and rcode == wire.SERVFAIL:
                qname = names.wire_to_text(pkt[12 : qend - 4].lower())
                self.chain.error(qname, qtype, "forward: no upstream answered in time")
        except Exception:  # a bug must cost one answer, never the server
            self._log_error()
            return self.servfail(pkt)
        self.stats.count(
            plan.zone,
            PROTO[tcp],
            FAMILY[ipv6],
            qtype,
            rcode,
            "forward",
            opt is self._opt_do,
            perf_counter() - started,
            len(pkt),
            len(reply),
        )
        return reply

    def _fast(
        self, pkt: bytes, tcp: bool, family: int, remote: tuple[str, int]
    ) -> bytes | Query | Pending | None:
        quick = self._quick(pkt, tcp, family == 1)
        if quick is not None:
            return quick
        return self.parse(pkt, tcp, family, remote)

    # -- validation for everything else --------------------------------------------

    def parse(
        self, pkt: bytes, tcp: bool, family: int, remote: tuple[str, int]
    ) -> bytes | Query | None:
        """Validate a query fully; answer errors here, return the rest as a Query."""
        started = time.perf_counter()
        if len(pkt) < 12:
            return None  # not even a header to answer to
        if pkt[2] & 0x80:
            return None  # a response: answering it could start a loop
        flags = int.from_bytes(pkt[2:4], "big")
        qdcount = int.from_bytes(pkt[4:6], "big")
        rd = flags >> 8 & 1
        cd = flags >> 4 & 1
        opcode = flags >> 11 & 0xF
        try:
            msg = dnslib.DNSRecord.parse(pkt)
        except Exception:  # dnslib raises several types for garbage
            return self._error(pkt, wire.FORMERR, rd, cd)
        question = _question_bytes(pkt) if qdcount == 1 else None
        if opcode != 0:
            return self._error(pkt, wire.NOTIMP, rd, cd, question, opcode)
        if qdcount != 1 or question is None:
            return self._error(pkt, wire.FORMERR, rd, cd)
        opts = [rr for rr in msg.ar if rr.rtype == wire.OPT]
        if len(opts) > 1:
            return self._error(pkt, wire.FORMERR, rd, cd)
        opt = b""
        do = False
        limit = 512
        if opts:
            edns_ttl = int(opts[0].ttl)
            do = bool(edns_ttl & 0x8000)
            if (edns_ttl >> 16) & 0xFF != 0:
                # BADVERS is extended rcode 16: 0 in the header, 1 in the OPT record.
                bad = wire.opt_record(self.max_udp, do, ext_rcode=1)
                counts = struct.pack("!HHHH", 1, 0, 0, 1)
                return pkt[:2] + wire.FLAGS[0][rd][cd] + counts + question + bad
            opt = self._opt_do if do else self._opt
            limit = max(512, min(int(opts[0].rclass), self.max_udp))
        if tcp:
            limit = MAX_TCP
        qname_end = len(question) - 4
        qtype, qclass = struct.unpack_from("!HH", question, qname_end)
        name = question[:qname_end].lower()
        query = Query(
            raw=pkt,
            qname=names.wire_to_text(name),
            name=name,
            question=question,
            qtype=qtype,
            qclass=qclass,
            rd=rd,
            cd=cd,
            opt=opt,
            do=do,
            limit=limit,
            tcp=tcp,
            family=family,
            remote=remote,
            started=started,
        )
        if qclass != wire.CLASS_IN and not self.chain.all_classes:  # rewrite's class rules
            return query.reply(wire.build(query.qname, wire.REFUSED, authoritative=False))
        return query

    def _error(
        self,
        pkt: bytes,
        rcode: int,
        rd: int,
        cd: int,
        question: bytes | None = None,
        opcode: int = 0,
    ) -> bytes:
        """A header-only (or question-echoing) error reply: never larger than the query.

        The opcode is copied, as RFC 1035 asks and clients check.
        """
        flags = wire.FLAGS[rcode][rd][cd]
        if opcode:
            flags = bytes((flags[0] | (opcode << 3), flags[1]))
        if question is None:
            return pkt[:2] + flags + b"\x00" * 8
        return pkt[:2] + flags + struct.pack("!HHHH", 1, 0, 0, 0) + question

    def servfail(self, pkt: bytes) -> bytes | None:
        if len(pkt) < 12 or pkt[2] & 0x80:
            return None
        metrics.PANICS.inc()
        question = _question_bytes(pkt) if pkt[4:6] == b"\x00\x01" else None
        flags = wire.FLAGS[wire.SERVFAIL][pkt[2] & 1][(pkt[3] >> 4) & 1]
        if question is None:
            return pkt[:2] + flags + b"\x00" * 8
        return pkt[:2] + flags + b"\x00\x01\x00\x00\x00\x00\x00\x00" + question

    def _log_error(self) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 10:
            self._last_error_log = now
            log.exception("internal error answering a query (logged at most every 10 s)")


def _truncated(reply: bytes, pkt: bytes, qend: int, opt: bytes) -> bytes:
    """A reply too big for the client: TC set, the question (and our OPT) only."""
    counts = _COUNTS.pack(1, 0, 0, 1 if opt else 0)
    return reply[:2] + bytes((reply[2] | 0x02, reply[3])) + counts + pkt[12:qend] + opt


def _question_bytes(pkt: bytes) -> bytes | None:
    """The question as sent, when it is one uncompressed name plus type and class."""
    try:
        end = names.name_end(pkt) + 4
    except names.BadName:
        return None  # a compression pointer, a reserved label type, over 255 octets
    return pkt[12:end] if end <= len(pkt) else None


def remote_of(addr: tuple[object, ...]) -> tuple[str, int]:
    """The client as Go's net package shows it to CoreDNS's log, whoami and template.

    A dual-stack socket sees IPv4 clients as ``::ffff:127.0.0.1``; Go prints those as
    plain IPv4, and so must kdns.
    """
    host, port = str(addr[0]), addr[1]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, port if isinstance(port, int) else 0


def family_of(addr: tuple[object, ...]) -> int:
    """CoreDNS counts v4-mapped clients of a dual-stack socket as IPv4."""
    if len(addr) == 4 and not str(addr[0]).startswith("::ffff:"):
        return 1
    return 0
