"""Server-side search path completion, as CoreDNS's plugin/autopath, with its bugs fixed.

A query whose name ends in the first element of the client's search path is the first
try of a stub resolver walking that path. Instead of NXDOMAIN, autopath walks the rest
of the path itself, through the plugins after it, and answers with a CNAME from the
asked name to the first completed name that exists, plus that name's records: one round
trip instead of one per element.

Where kdns departs from CoreDNS (Corefile.compat/autopath.md, Bugs):

- coredns#3765. The walk stops where a stub resolver would: at the first name with
  records of the asked type, or, for A and AAAA, of either address type. glibc sends A
  and AAAA together and keeps searching past an element where both are empty, so a name
  with A but no AAAA stops both queries at the same element: the AAAA query gets the
  CNAME plus the target's NODATA (its SOA in authority), never a bare NOERROR of its own,
  and never an NXDOMAIN while the A query succeeds. An element where the name exists but
  has no address of either family does not stop the walk (CoreDNS's first non-NXDOMAIN
  rule stops there, and glibc then walks on by itself). Answers are built per query and
  never cached by client-blind keys (the cache holds forwarded answers only).
- coredns#2842. The client's namespace is not guessed from its address: the asked name
  says which namespace it searches first (``<base>.<ns>.svc.<zone>``), and autopath acts
  only when the one pod the store knows at the client's address is in that namespace.
- coredns#7120. An address that several pods share (host-network pods share their
  node's) identifies no pod: such clients get plain answers.

Anything else (a client that is no known pod, a walk that fails upstream) gets the
plain answer, as in CoreDNS.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import time
from collections.abc import Awaitable, Callable

import dnslib

from kdns.cluster.store import Store
from kdns.dns import names, wire
from kdns.plugins.autopath.metrics import SUCCESS
from kdns.plugins.autopath.setup import AutopathConfig
from kdns.query.handler import Query

Run = Callable[[Query], Awaitable[tuple[bytes | None, str]]]
"""The plugins after autopath, for one query: its response (None: say nothing) and the
plugin that answered."""

NOBODY = ("", 0)
"""The remote address of autopath's own lookups: no client, so autopath leaves them alone."""

_SIBLING = {wire.A: wire.AAAA, wire.AAAA: wire.A}
_COUNTS = struct.Struct("!HHHH")


class AutoPath:
    """One block's ``autopath``: which clients and names it completes, and the walk."""

    def __init__(
        self,
        config: AutopathConfig,
        server: str,
        store: Store | None = None,
        kube_zones: tuple[str, ...] = (),
    ) -> None:
        self.zones = config.zones
        self.kubernetes = config.plugin == "kubernetes"
        self.search = config.search
        self.store = store
        # longest first, so a name in nested zones takes the innermost
        self.kube_zones = tuple(sorted(kube_zones, key=len, reverse=True))
        self.success = SUCCESS.labels(server)

    @property
    def cluster_only(self) -> bool:
        return self.kubernetes

    def path(self, q: Query) -> tuple[str, list[str]] | None:
        """The asked name's base and the client's search path (first element: the asked
        name's suffix, last: "" for the bare name), or None: answer plainly."""
        qname = q.qname
        if not any(names.is_subdomain(qname, z) for z in self.zones):
            return None
        if not self.kubernetes:
            if not self.search:
                return None
            first = self.search[0]
            if qname == first or not names.is_subdomain(qname, first):
                return None
            return qname[: -len(first) - 1], [*self.search, ""]
        store = self.store
        if store is None or not q.remote[0]:
            return None
        for kz in self.kube_zones:
            if names.is_subdomain(qname, kz):
                break
        else:
            return None
        svc = "svc." if kz == "." else "svc." + kz
        head = qname[: len(qname) - len(svc)]  # "<base>.<ns>." when the name is right
        if not qname.endswith("." + svc) or head.count(".") < 2:
            return None
        base, _, ns = head[:-1].rpartition(".")
        # coredns#2842 and #7120: the one pod at this address must be in the namespace
        # whose search path the asked name starts.
        if store.pod_namespace(q.remote[0]) != ns:
            return None
        return base, [ns + "." + svc, svc, kz, *self.search, ""]

    async def serve(self, q: Query, run: Run) -> tuple[bytes | None, str] | None:
        """The completed answer (or the plain one, already computed), or None when
        autopath does not act on this query and the chain answers it as usual."""
        found = self.path(q)
        if found is None:
            return None
        base, search = found
        plain, plugin = await run(dataclasses.replace(q, remote=NOBODY))
        if plain is None or len(plain) < 12 or plain[3] & 0x0F != wire.NXDOMAIN:
            return plain, plugin
        tried = {q.qname}
        for element in search[1:]:
            name = f"{base}.{element}" if element not in ("", ".") else f"{base}."
            if name in tried:
                continue
            tried.add(name)
            reply = await _ask(run, q, name, q.qtype)
            if reply is None:
                break  # a lookup failed: the plain answer, and the client walks on
            rcode, answer, authority, aa = reply
            if rcode == wire.NXDOMAIN:
                continue
            if rcode != wire.NOERROR:
                break
            if not answer:
                sibling = _SIBLING.get(q.qtype)
                if sibling is None:
                    continue
                other = await _ask(run, q, name, sibling)
                if other is None or other[0] != wire.NOERROR or not other[1]:
                    continue  # no address of either family: stub resolvers search on
            self.success.inc()
            return q.reply(_completed(q.qname, name, answer, authority, aa)), "autopath"
        return plain, plugin


async def _ask(
    run: Run, q: Query, name: str, qtype: int
) -> tuple[int, list[wire.RR], list[wire.RR], bool] | None:
    """One lookup through the plugins after autopath: rcode, answer and authority records,
    the AA bit; None when nothing usable came back."""
    try:
        qwire = names.to_wire(name)
    except (names.BadName, UnicodeError):
        return None
    question = qwire + struct.pack("!HH", qtype, wire.CLASS_IN)
    ident = int.from_bytes(os.urandom(2), "big")
    header = struct.pack("!H", ident) + bytes((q.rd, q.cd << 4))
    raw = header + _COUNTS.pack(1, 0, 0, 1 if q.opt else 0) + question + q.opt
    sub = Query(
        raw=raw,
        qname=name,
        name=qwire.lower(),
        question=question,
        qtype=qtype,
        qclass=wire.CLASS_IN,
        rd=q.rd,
        cd=q.cd,
        opt=q.opt,
        do=q.do,
        limit=65535,
        tcp=q.tcp,
        family=q.family,
        remote=NOBODY,
        started=time.perf_counter(),
    )
    response, _ = await run(sub)
    if response is None:
        return None
    try:
        parsed = dnslib.DNSRecord.parse(response)
    except Exception:  # dnslib raises several types for garbage
        return None
    if parsed.header.tc:
        return None
    answer = [_rr(rr) for rr in parsed.rr]
    authority = [_rr(rr) for rr in parsed.auth if rr.rtype != wire.OPT]
    return parsed.header.rcode, answer, authority, bool(parsed.header.aa)


class _Uncompressed(dnslib.DNSBuffer):  # type: ignore[misc]
    """Packs one record's rdata alone: no pointer may lead outside it."""

    def encode_name(self, name: dnslib.DNSLabel) -> None:
        self.encode_name_nocompress(name)


def _rr(rr: dnslib.RR) -> wire.RR:
    buffer = _Uncompressed()
    rr.rdata.pack(buffer)
    return wire.RR(names.fqdn(str(rr.rname)).lower(), rr.rtype, rr.ttl, bytes(buffer.data))


def _completed(
    asked: str, target: str, answer: list[wire.RR], authority: list[wire.RR], aa: bool
) -> wire.Answer:
    """The CNAME from the asked name to the completed one, then the completed name's
    records; with no records (NODATA), its SOA stays in authority."""
    ttl = (answer or authority)[0].ttl if (answer or authority) else 5
    cname = wire.RR(asked, wire.CNAME, ttl, wire.rdata_name(target))
    return wire.build(asked, wire.NOERROR, [cname, *answer], authority, authoritative=aa)
