"""Query bytes in, response bytes out: the fast path and the slow path.

The fast path reads just enough of a well-formed query (a fixed header, one question,
at most an OPT record) to find the compiled answer, and splices the query's ID and
question into it: no parsing library, no objects. Anything unusual, and every answer
that must be computed, goes to the slow path, which validates the whole message with
dnslib and owns the error policy: FORMERR for malformed input, NOTIMP for other
opcodes, BADVERS for unknown EDNS versions, REFUSED outside our zones, SERVFAIL if
something inside kdns fails. Nothing a client sends raises out of :meth:`handle`.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Awaitable, Callable

import dnslib

from kdns import wire
from kdns.table import DEFAULT, SPECIAL, Table

log = logging.getLogger(__name__)

_QUERY_COUNTS = b"\x00\x01\x00\x00\x00\x00"
_REFUSED = wire.build(".", wire.REFUSED, authoritative=False)
MAX_TCP = 65535

Forwarder = Callable[[bytes, bool], Awaitable[bytes | None]]
"""Forwards a query for a name outside our zones; returns the upstream's response."""


class Stats:
    """Counters the metrics endpoint reads; plain dicts so counting costs next to nothing."""

    __slots__ = ("by_type", "dropped", "errors", "rcodes")

    def __init__(self) -> None:
        self.by_type: dict[int, int] = {}
        self.rcodes: dict[int, int] = {}
        self.dropped = 0
        self.errors = 0


class Handler:
    """Maps a query to its response; transports only move the bytes."""

    def __init__(self, table: Table, max_udp: int = 1232) -> None:
        self.table = table
        self.max_udp = max_udp
        self.stats = Stats()
        self._opt = wire.opt_record(max_udp, False)
        self._opt_do = wire.opt_record(max_udp, True)
        self._last_error_log = 0.0

    def handle(self, pkt: bytes, tcp: bool = False) -> bytes | None:
        """The response to ``pkt``, or None when it deserves none (a response, a runt)."""
        try:
            return self._fast(pkt, tcp)
        except Exception:  # a bug must cost one answer, never the server
            self._log_error()
            return self._servfail(pkt)

    # -- fast path -----------------------------------------------------------------

    def _fast(self, pkt: bytes, tcp: bool) -> bytes | None:
        n = len(pkt)
        if n < 17 or pkt[2] & 0xF8 or pkt[4:10] != _QUERY_COUNTS or pkt[10]:
            return self._slow(pkt, tcp)
        end = pkt.find(0, 12)
        qend = end + 5
        if end < 0 or qend > n or pkt[end + 3] or pkt[end + 4] != 1:
            return self._slow(pkt, tcp)
        arcount = pkt[11]
        if arcount == 0:
            if n != qend:
                return self._slow(pkt, tcp)
            opt = b""
            limit = 512
        elif (
            arcount == 1
            and n >= qend + 11
            and pkt[qend] == 0
            and pkt[qend + 1] == 0
            and pkt[qend + 2] == wire.OPT
            and pkt[qend + 6] == 0  # EDNS version 0; others get BADVERS on the slow path
            and qend + 11 + ((pkt[qend + 9] << 8) | pkt[qend + 10]) == n
        ):
            opt = self._opt_do if pkt[qend + 7] & 0x80 else self._opt
            limit = max(512, min((pkt[qend + 3] << 8) | pkt[qend + 4], self.max_udp))
        else:
            return self._slow(pkt, tcp)
        qtype = (pkt[end + 1] << 8) | pkt[end + 2]
        name = pkt[12 : end + 1].lower()
        node = self.table.nodes.get(name)
        if node is not None and qtype not in SPECIAL:
            answer = node.get(qtype)
            if answer is None:
                answer = node[DEFAULT]
        else:
            found = self.table.lookup(name, qtype)
            if found is None:
                return self._slow(pkt, tcp)
            answer = found
        stats = self.stats
        stats.rcodes[answer.rcode] = stats.rcodes.get(answer.rcode, 0) + 1
        stats.by_type[qtype] = stats.by_type.get(qtype, 0) + 1
        if tcp:
            limit = MAX_TCP
        if qend + len(answer.body) + len(opt) > limit:
            return wire.truncate(
                pkt[:2], pkt[2] & 1, (pkt[3] >> 4) & 1, pkt[12:qend], answer, opt, limit
            )
        return b"".join(
            (
                pkt[:2],
                answer.flags[pkt[2] & 1][(pkt[3] >> 4) & 1],
                answer.counts_opt if opt else answer.counts,
                pkt[12:qend],
                answer.body,
                opt,
            )
        )

    # -- slow path -----------------------------------------------------------------

    def _slow(self, pkt: bytes, tcp: bool) -> bytes | None:
        if len(pkt) < 12:
            self.stats.dropped += 1
            return None  # not even a header to answer to
        if pkt[2] & 0x80:
            self.stats.dropped += 1
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
            return self._error(pkt, wire.NOTIMP, rd, cd, question)
        if qdcount != 1 or question is None:
            return self._error(pkt, wire.FORMERR, rd, cd)
        opts = [rr for rr in msg.ar if rr.rtype == wire.OPT]
        if len(opts) > 1:
            return self._error(pkt, wire.FORMERR, rd, cd)
        opt = b""
        limit = 512
        if opts:
            edns = opts[0]
            edns_ttl = int(edns.ttl)
            do = bool(edns_ttl & 0x8000)
            if (edns_ttl >> 16) & 0xFF != 0:
                # BADVERS is extended rcode 16: 0 in the header, 1 in the OPT record.
                bad = wire.opt_record(self.max_udp, do, ext_rcode=1)
                counts = struct.pack("!HHHH", 1, 0, 0, 1)
                return pkt[:2] + wire.FLAGS[0][rd][cd] + counts + question + bad
            opt = self._opt_do if do else self._opt
            limit = max(512, min(int(edns.rclass), self.max_udp))
        if tcp:
            limit = MAX_TCP
        qname_end = len(question) - 4
        qtype, qclass = struct.unpack_from("!HH", question, qname_end)
        if qclass != wire.CLASS_IN:
            return self._error(pkt, wire.REFUSED, rd, cd, question, opt)
        name = question[:qname_end].lower()
        answer = self.table.lookup(name, qtype)
        if answer is None:
            answer = _REFUSED
        self.stats.rcodes[answer.rcode] = self.stats.rcodes.get(answer.rcode, 0) + 1
        self.stats.by_type[qtype] = self.stats.by_type.get(qtype, 0) + 1
        ident_bytes = pkt[:2]
        if 12 + len(question) + len(answer.body) + len(opt) > limit:
            return wire.truncate(ident_bytes, rd, cd, question, answer, opt, limit)
        counts = answer.counts_opt if opt else answer.counts
        return ident_bytes + answer.flags[rd][cd] + counts + question + answer.body + opt

    def _error(
        self,
        pkt: bytes,
        rcode: int,
        rd: int,
        cd: int,
        question: bytes | None = None,
        opt: bytes = b"",
    ) -> bytes:
        """A header-only (or question-echoing) error reply: never larger than the query."""
        self.stats.rcodes[rcode] = self.stats.rcodes.get(rcode, 0) + 1
        flags = wire.FLAGS[rcode][rd][cd]
        if question is None:
            return pkt[:2] + flags + b"\x00" * 8
        counts = struct.pack("!HHHH", 1, 0, 0, 1 if opt else 0)
        return pkt[:2] + flags + counts + question + opt

    def _servfail(self, pkt: bytes) -> bytes | None:
        if len(pkt) < 12 or pkt[2] & 0x80:
            return None
        self.stats.errors += 1
        return pkt[:2] + wire.FLAGS[wire.SERVFAIL][pkt[2] & 1][(pkt[3] >> 4) & 1] + b"\x00" * 8

    def _log_error(self) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 10:
            self._last_error_log = now
            log.exception("internal error answering a query (logged at most every 10 s)")


def _question_bytes(pkt: bytes) -> bytes | None:
    """The question as sent, when it is one uncompressed name plus type and class."""
    pos = 12
    n = len(pkt)
    while pos < n:
        size = pkt[pos]
        if size == 0:
            end = pos + 5
            return pkt[12:end] if end <= n and end - 12 <= 255 + 4 else None
        if size > 63:
            return None  # a compression pointer, or a reserved label type
        pos += 1 + size
    return None
