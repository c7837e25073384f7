"""The response cache in front of forwarding, as CoreDNS's ``cache`` plugin behaves.

What it keeps and for how long follows CoreDNS (``plugin/cache``):

* Key: lower-cased qname, qtype, DO bit, CD bit. Two caches: *success* (NOERROR with
  data, delegations) and *denial* (NXDOMAIN and NODATA with an SOA, and SERVFAIL/NOTIMP
  for ``servfail`` seconds), each with its own capacity, TTL cap and minimum TTL.
  Truncated replies, other errors, NXDOMAIN without SOA, transfers, NOTIFY and UPDATE
  are never stored.
* An entry lives for the message's smallest TTL (for denials also the SOA MINIMUM),
  clamped to [min TTL, cap]. Every record of a reply served from the cache carries the
  remaining lifetime (``keepttl``: the stored one), and so does the reply that filled
  the cache, so clients never see 1799 then 8.
* Hits are authoritative (AA=1), echo the client's ID, question, RD and CD; AD only
  when the client asked with DO or AD.
* ``prefetch AMOUNT [DURATION [PERCENTAGE%]]``: an entry asked AMOUNT times with no gap
  of DURATION, whose remaining TTL fell to PERCENTAGE of its original, is refreshed in
  the background while the hit is served.
* ``serve_stale [DURATION] [immediate|verify]``: an expired entry younger than DURATION
  is served with TTL 0 and refreshed in the background (``immediate``), or only after
  a refresh failed to give NOERROR or NXDOMAIN (``verify``).
* ``disable success|denial ZONES``: those names are not stored in that cache.

An entry is stored as the wire bytes after the question, split at the TTL fields (the
offsets found by the one walk over the reply that filled it): a hit is one ``join``
with the remaining TTL (kept with the entry for the second it is valid) plus a fixed
header, no parsing. The hop-by-hop OPT record is dropped from storage and a fresh one
is added per client. The key is bytes, ready-made from a query without parsing it: the
lower-cased wire name, the qtype and one byte of DO/CD bits (:func:`key`), so the
server's fast path looks a hit up straight from the datagram (:meth:`ResponseCache.hit`).
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from kdns import errors as kdns_errors
from kdns.dns import names
from kdns.dns.tasks import Tasks
from kdns.plugins.cache.setup import CacheConfig

Downstream = Callable[[bytes, bool], Awaitable[bytes | None]]
"""What the cache sits in front of: ``(query, tcp) -> reply`` (the forwarder chain)."""

Key = bytes
"""Lower-cased wire qname + qtype (2 bytes) + ``BITS[do][cd]``: see :func:`key`."""
BITS = ((b"\x00", b"\x01"), (b"\x02", b"\x03"))
"""The key's last byte, indexed [DO][CD]."""

MAX_REFRESHES = 64
"""Background refreshes (prefetch, stale) in flight at once; more are skipped."""
MAX_TTL = 3600
MIN_DEFAULT_TTL = 5
MAX_TCP = 65535
SUCCESS = "success"
DENIAL = "denial"

# Message classes of CoreDNS's response.Typify.
NOERROR_T, NXDOMAIN_T, SERVERERROR_T, NODATA_T, DELEGATION_T, META_T, UPDATE_T, OTHER_T = range(8)

_OPT = 41
_SOA = 6
_NS = 2
_AXFR = 252
_IXFR = 251
_TTL = struct.Struct("!I")
_RR = struct.Struct("!HHIH")
_COUNTS = struct.Struct("!HHHH")
_OPT_START = b"\x00\x00\x29"  # root owner, type OPT


class _Entry:
    """One cached reply: the sections split at TTL fields, plus what the header needs."""

    __slots__ = (
        "ad",
        "body",
        "body_ttl",
        "counts",
        "counts_opt",
        "counts_plain",
        "current",
        "flags1",
        "hits",
        "kind",
        "last",
        "orig_ttl",
        "ra",
        "rcode",
        "segments",
        "size",
        "stored",
    )

    def __init__(
        self,
        segments: tuple[bytes, ...],
        counts: tuple[int, int, int],
        rcode: int,
        ad: bool,
        ra: bool,
        orig_ttl: int,
        stored: float,
        kind: str,
    ) -> None:
        self.segments = segments
        self.size = sum(len(s) for s in segments) + 4 * (len(segments) - 1)
        self.counts = counts
        self.rcode = rcode
        self.ad = ad
        self.ra = ra
        self.orig_ttl = orig_ttl
        self.stored = stored
        self.kind = kind
        self.hits = 0
        self.last = stored
        an, ns, ar = counts
        self.counts_plain = _COUNTS.pack(1, an, ns, ar)
        self.counts_opt = _COUNTS.pack(1, an, ns, ar + 1)
        self.flags1 = (0x80 if ra else 0) | rcode  # RA and RCODE; CD and AD are per client
        # The sections as last rendered, and the TTL they carry: a TTL changes once a second.
        self.body = b""
        self.body_ttl = -1
        # What a lookup of its key finds first: False once it left its store, was replaced,
        # or a denial entry shadows it (ResponseCache.again trusts nothing else).
        self.current = True

    def render(self, ttl: int) -> bytes:
        """The sections with every TTL set to ``ttl``."""
        if ttl != self.body_ttl:
            self.body = _TTL.pack(ttl).join(self.segments)
            self.body_ttl = ttl
        return self.body

    def ttl(self, now: float) -> int:
        return self.orig_ttl - int(now - self.stored)


@dataclass(frozen=True, slots=True)
class Parsed:
    """What one walk over a reply tells the cache."""

    kind: int  # a Typify class
    rcode: int
    flags: int
    qend: int
    ttl_offsets: tuple[int, ...]
    min_ttl: int  # CoreDNS's MinimalTTL, in seconds
    opt: tuple[int, int] | None  # byte span of the OPT record
    counts: tuple[int, int, int]  # an, ns, ar without OPT


class BadMessage(kdns_errors.ProtocolError, ValueError):
    """The reply does not parse as a DNS message."""


_skip_name = names.skip_name  # names.BadName: parse says BadMessage


def parse(msg: bytes) -> Parsed:
    """Walk a reply once: its class, TTL field offsets, minimal TTL and OPT record."""
    try:
        return _parse(msg)
    except (IndexError, struct.error):
        raise BadMessage("short message") from None
    except names.BadName as exc:
        raise BadMessage(str(exc)) from None


def _parse(msg: bytes) -> Parsed:
    _ident, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", msg, 0)
    if qd != 1:
        raise BadMessage("not one question")
    pos = _skip_name(msg, 12)
    qtype = (msg[pos] << 8) | msg[pos + 1]
    pos += 4
    qend = pos
    if pos > len(msg):
        raise BadMessage("short question")
    offsets: list[int] = []
    min_ttl = MAX_TTL
    soa = False
    soa_min = MAX_TTL
    ns_count = 0
    opt: tuple[int, int] | None = None
    ext_rcode = 0
    for section, count in ((0, an), (1, ns), (2, ar)):
        for _ in range(count):
            start = pos
            pos = _skip_name(msg, pos)
            rtype, _rclass, ttl, rdlen = _RR.unpack_from(msg, pos)
            end = pos + 10 + rdlen
            if end > len(msg):
                raise BadMessage("short record")
            if rtype == _OPT and section == 2:
                opt = (start, end)
                ext_rcode = ttl >> 24
                pos = end
                continue
            offsets.append(pos + 4)
            min_ttl = min(min_ttl, ttl)
            if section == 1:
                if rtype == _SOA and rdlen >= 22:
                    soa = True
                    soa_min = min(soa_min, ttl, _TTL.unpack_from(msg, end - 4)[0])
                elif rtype == _NS:
                    ns_count += 1
            pos = end
    rcode = flags & 0x0F
    opcode = (flags >> 11) & 0x0F
    counts = (an, ns, ar - (1 if opt else 0))
    if opt is not None and opt[1] != pos:
        raise BadMessage("OPT is not the last record")  # cannot cut it out safely
    if opcode == 5:
        kind = UPDATE_T
    elif opcode == 4 or qtype in (_AXFR, _IXFR):
        kind = META_T
    elif ext_rcode:
        kind = OTHER_T
    elif an > 0 and rcode == 0:
        kind = NOERROR_T
    elif soa and rcode == 0:
        kind = NODATA_T
    elif soa and rcode == 3:
        kind = NXDOMAIN_T
    elif rcode in (2, 4):
        kind = SERVERERROR_T
    elif ns_count and rcode == 0:
        kind = DELEGATION_T
    elif rcode == 0:
        kind = NOERROR_T
    else:
        kind = OTHER_T
    if kind not in (NOERROR_T, NXDOMAIN_T, NODATA_T) or not (an or ns or counts[2]):
        min_ttl = MIN_DEFAULT_TTL
    elif kind in (NXDOMAIN_T, NODATA_T) and soa:
        min_ttl = min(min_ttl, soa_min)  # RFC 2308: the SOA MINIMUM bounds a denial
    return Parsed(kind, rcode, flags, qend, tuple(offsets), min_ttl, opt, counts)


def _clamp(ttl: int, low: int | float, high: int | float) -> int:
    if ttl < low:
        ttl = int(low)
    if ttl > high:
        ttl = int(high)
    return ttl


def in_zones(name: str, zones: tuple[str, ...]) -> bool:
    return any(z == "." or name == z or name.endswith("." + z) for z in zones)


class _Store:
    """An LRU map that counts capacity evictions, in C-implemented operations only.

    Expired entries stay until evicted or looked up (CoreDNS keeps them too, which is
    what lets serve_stale work); the capacity bounds memory either way.
    """

    __slots__ = ("_counts", "_data", "_kind", "data", "maxsize")

    def __init__(self, maxsize: int, counts: Counts, kind: str) -> None:
        self._data: OrderedDict[Key, _Entry] = OrderedDict()
        self.data = self._data  # for the inlined hit path
        self.maxsize = maxsize
        self._counts = counts
        self._kind = kind

    def get(self, key: Key) -> _Entry | None:
        entry = self._data.get(key)
        if entry is not None:
            self._data.move_to_end(key)
        return entry

    def __setitem__(self, key: Key, entry: _Entry) -> None:
        data = self._data
        old = data.get(key)
        if old is not None:
            old.current = False
        data[key] = entry
        data.move_to_end(key)
        while len(data) > self.maxsize:
            data.popitem(last=False)[1].current = False
            self._counts.evictions[self._kind] += 1

    def __delitem__(self, key: Key) -> None:
        self._data.pop(key).current = False

    def pop(self, key: Key, default: _Entry | None = None) -> _Entry | None:
        entry = self._data.pop(key, default)
        if entry is not None:
            entry.current = False
        return entry

    def clear(self) -> None:
        for entry in self._data.values():
            entry.current = False
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class Counts:
    """One cache's counters as plain integers: counting a hit must cost next to nothing.

    The registry reads them at scrape time through :class:`_Collector`.
    """

    __slots__ = ("drops", "evictions", "hits", "misses", "prefetch", "requests", "served_stale")

    def __init__(self) -> None:
        self.requests = 0
        self.misses = 0
        self.prefetch = 0
        self.drops = 0
        self.served_stale = 0
        self.hits = {SUCCESS: 0, DENIAL: 0}
        self.evictions = {SUCCESS: 0, DENIAL: 0}


_PLAIN = (
    ("requests", "coredns_cache_requests_total", "The count of cache requests."),
    (
        "misses",
        "coredns_cache_misses_total",
        "The count of cache misses. Deprecated, derive misses from cache hits/requests counters.",
    ),
    (
        "prefetch",
        "coredns_cache_prefetch_total",
        "The number of times the cache has prefetched a cached item.",
    ),
    (
        "drops",
        "coredns_cache_drops_total",
        "The number responses that are not cached, because the reply is malformed.",
    ),
    (
        "served_stale",
        "coredns_cache_served_stale_total",
        "The number of requests served from stale cache entries.",
    ),
)


class _Collector(Collector):
    """CoreDNS's ``coredns_cache_*`` metrics for every cache of one registry.

    Counters live here per label set (server, zones, view) and outlive the caches that
    count into them, so a reload that builds new caches does not reset them; CoreDNS's
    global vectors behave the same. The entries gauge sums the live caches.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], Counts] = {}
        self.caches: weakref.WeakSet[ResponseCache] = weakref.WeakSet()

    def counts_for(self, labels: tuple[str, str, str]) -> Counts:
        found = self.counts.get(labels)
        if found is None:
            found = self.counts[labels] = Counts()
        return found

    def describe(self) -> Iterable[Metric]:
        return list(self._families(False))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(True))

    def _families(self, with_samples: bool) -> Iterator[Metric]:
        szv = ["server", "zones", "view"]
        stzv = ["server", "type", "zones", "view"]
        entries = GaugeMetricFamily(
            "coredns_cache_entries", "The number of elements in the cache.", labels=stzv
        )
        hits = CounterMetricFamily("coredns_cache_hits", "The count of cache hits.", labels=stzv)
        evictions = CounterMetricFamily(
            "coredns_cache_evictions", "The count of cache evictions.", labels=stzv
        )
        plain = {
            attr: CounterMetricFamily(name.removesuffix("_total"), text, labels=szv)
            for attr, name, text in _PLAIN
        }
        if with_samples:
            sizes: dict[tuple[str, str, str, str], int] = {}
            for cache in list(self.caches):
                server, zones, view = cache.labels
                for kind in (SUCCESS, DENIAL):
                    key = (server, kind, zones, view)
                    sizes[key] = sizes.get(key, 0) + cache.size(kind)
            for (server, zones, view), counts in self.counts.items():
                for kind in (SUCCESS, DENIAL):
                    labels = [server, kind, zones, view]
                    entries.add_metric(labels, sizes.get((server, kind, zones, view), 0))
                    hits.add_metric(labels, counts.hits[kind])
                    evictions.add_metric(labels, counts.evictions[kind])
                for attr, family in plain.items():
                    family.add_metric([server, zones, view], getattr(counts, attr))
        yield entries
        yield from plain.values()
        yield hits
        yield evictions


_collectors: weakref.WeakKeyDictionary[CollectorRegistry, _Collector] = weakref.WeakKeyDictionary()


def _collector_for(registry: CollectorRegistry) -> _Collector:
    found = _collectors.get(registry)
    if found is None:
        found = _collectors[registry] = _Collector()
        registry.register(found)
    return found


class ResponseCache:
    """One ``cache`` directive: looks replies up, stores them, refreshes them."""

    def __init__(
        self,
        config: CacheConfig,
        registry: CollectorRegistry | None = None,
        *,
        downstream: Downstream | None = None,
        server: str = "dns://:53",
        view: str = "",
        max_udp: int = 1232,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.zones = tuple(z.lower() for z in config.zones) or (".",)
        # The same zones as wire names, for the fast path (names.wire_zone).
        self.zone_wires = frozenset(_wire(_norm(z)) for z in self.zones)
        self._no_success = frozenset(_wire(_norm(z)) for z in config.disable_success)
        self._no_denial = frozenset(_wire(_norm(z)) for z in config.disable_denial)
        # Whether the fast path may serve this cache: a stale entry in verify mode must
        # wait for its refresh, which only the chain (resolve) does.
        self.fast = not (config.serve_stale and config.serve_stale_verify)
        self.downstream = downstream
        self.max_udp = max_udp
        self._clock = clock
        self._stale = config.serve_stale
        self.labels = (server, ",".join(config.zones), view)
        if registry is None:
            self.counts = Counts()
        else:
            collector = _collector_for(registry)
            self.counts = collector.counts_for(self.labels)
            collector.caches.add(self)
        self._success = _Store(max(config.success_capacity, 1), self.counts, SUCCESS)
        self._denial = _Store(max(config.denial_capacity, 1), self.counts, DENIAL)
        self._success_data = self._success.data
        self._denial_data = self._denial.data
        self._plain = not config.prefetch and not config.keepttl  # hits need no bookkeeping
        self._enabled = {SUCCESS: config.success_capacity > 0, DENIAL: config.denial_capacity > 0}
        self._opt = b"\x00" + struct.pack("!HHBBHH", _OPT, max_udp, 0, 0, 0, 0)
        self._opt_do = b"\x00" + struct.pack("!HHBBHH", _OPT, max_udp, 0, 0, 0x8000, 0)
        self._refreshing: set[Key] = set()
        self._tasks = Tasks()
        self._stopped = False
        self.served: tuple[_Entry, int] | None = None  # see hit() and again()

    # -- lifecycle --

    async def stop(self) -> None:
        """Cancel background refreshes."""
        self._stopped = True
        tasks = self._tasks.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def clear(self) -> None:
        self._success.clear()
        self._denial.clear()

    def __len__(self) -> int:
        return len(self._success) + len(self._denial)

    def size(self, kind: str) -> int:
        """Entries in the ``success`` or ``denial`` cache (expired ones included)."""
        return len(self._success if kind == SUCCESS else self._denial)

    # -- the query path --

    def matches(self, qname: str) -> bool:
        """The cache handles ``qname`` (its ZONES cover it)."""
        return in_zones(_norm(qname), self.zones)

    async def resolve(
        self, query: bytes, qname: str, qtype: int, do: bool, cd: bool, tcp: bool
    ) -> bytes | None:
        """The whole plugin: a hit, or the downstream's reply (stored when cacheable).

        Serves stale entries as configured; a refresh in ``verify`` mode happens before
        the stale entry is served.
        """
        assert self.downstream is not None, "resolve() needs a downstream"
        name = _norm(qname)
        if not in_zones(name, self.zones):
            return await self.downstream(query, tcp)
        k = _key_of(query, name, qtype, do, cd)
        now = self._clock()
        found = self._lookup(k, now)
        if found is not None:
            entry, ttl = found
            if ttl < 0 and self.config.serve_stale_verify:
                reply = await self.downstream(query, tcp)
                if reply is not None and len(reply) >= 12 and reply[3] & 0x0F in (0, 3):
                    return self.fill(reply, k, query)
            return self._render(entry, self._serve(entry, ttl, k, query, now), query, tcp, do)
        reply = await self.downstream(query, tcp)
        if reply is None:
            return None
        return self.fill(reply, k, query)

    async def miss(self, query: bytes, k: Key, tcp: bool) -> bytes | None:
        """After a :meth:`hit` returned None: the downstream's reply, stored when cacheable.

        For the fast path: ``query`` is plain (one question, class IN), ``k`` its key.
        """
        assert self.downstream is not None, "miss() needs a downstream"
        reply = await self.downstream(query, tcp)
        if reply is None:
            return None
        return self.fill(reply, k, query)

    def get(
        self, query: bytes, qname: str, qtype: int, do: bool, cd: bool, tcp: bool = False
    ) -> bytes | None:
        """A hit as the client should get it, or None: then ask downstream and ``put``.

        Synchronous, for the server's fast path. A stale entry in ``verify`` mode is
        None here (the caller should refresh); prefetch and immediate stale refreshes are
        started in the background when a downstream was given.
        """
        name = _norm(qname)
        if not in_zones(name, self.zones):
            return None
        k = _key_of(query, name, qtype, do, cd)
        now = self._clock()
        found = self._lookup(k, now)
        if found is None:
            return None
        entry, ttl = found
        if ttl < 0 and self.config.serve_stale_verify:
            return None
        return self._render(entry, self._serve(entry, ttl, k, query, now), query, tcp, do)

    def hit(
        self, k: Key, query: bytes, qend: int, edns: bool, limit: int, do: bool
    ) -> bytes | None:
        """:meth:`get` for the server's fast path, from what it read of the query already.

        ``k`` is the key, ``qend`` the offset past the question, ``edns`` whether an OPT
        record follows it, ``limit`` the largest reply the client takes. A fresh entry
        without prefetch or keepttl is served inline; anything else takes the general
        path (:meth:`_lookup`, :meth:`_serve`).
        """
        now = self._clock()
        entry = self._denial_data.get(k)
        if entry is None:
            entry = self._success_data.get(k)
            if entry is None:
                counts = self.counts
                counts.requests += 1
                counts.misses += 1
                self.served = None
                return None
        ttl = entry.orig_ttl - int(now - entry.stored)
        if ttl <= 0 or self._plain is False:
            self.served = None
            found = self._lookup(k, now)
            if found is None:
                return None
            entry, ttl = found
            if ttl < 0 and self.config.serve_stale_verify:
                return None
            ttl = self._serve(entry, ttl, k, query, now)
            opt = (self._opt_do if do else self._opt) if edns else b""
            return self._reply(entry, ttl, query, qend, opt, limit, do)
        (self._denial_data if entry.kind is DENIAL else self._success_data).move_to_end(k)
        counts = self.counts
        counts.requests += 1
        counts.hits[entry.kind] += 1
        self.served = (entry, ttl)
        # _reply, inlined: this is every cache hit.
        opt = (self._opt_do if do else self._opt) if edns else b""
        question = query[12:qend]
        if qend + entry.size + len(opt) > limit or entry.ad:
            return self._reply(entry, ttl, query, qend, opt, limit, do)
        return b"".join(
            (
                query[:2],
                bytes((0x84 | (query[2] & 0x79), entry.flags1 | (query[3] & 0x10))),
                entry.counts_opt if opt else entry.counts_plain,
                question,
                entry.body if entry.body_ttl == ttl else entry.render(ttl),
                opt,
            )
        )

    def again(self, served: Any, k: Key) -> bool:
        """``hit`` would serve ``served`` (what it set ``self.served`` to for ``k``) again,
        with the same TTL: then count the hit and keep the entry fresh in the LRU, as
        ``hit`` does, and the caller may serve the bytes it served then.

        Every remembered hit calls this, the C UDP loop's too: no ``cast`` call, one
        attribute read each (``served`` is the ``(_Entry, ttl)`` that hit() set)."""
        entry, ttl = served
        if entry.current and entry.orig_ttl - int(self._clock() - entry.stored) == ttl:
            kind = entry.kind
            (self._denial_data if kind is DENIAL else self._success_data).move_to_end(k)
            counts = self.counts
            counts.requests += 1
            counts.hits[kind] += 1
            return True
        return False

    def _lookup(self, k: Key, now: float) -> tuple[_Entry, int] | None:
        """The entry for ``k`` if fresh or still servable stale; counts the request.

        The denial cache first, as CoreDNS looks (a name can be in both for a while).
        """
        counts = self.counts
        counts.requests += 1
        store = self._denial
        entry = store.get(k)
        if entry is None:
            store = self._success
            entry = store.get(k)
        if entry is not None:
            ttl = entry.orig_ttl - int(now - entry.stored)
            if ttl > 0 or -ttl < self._stale:
                counts.hits[entry.kind] += 1
                return entry, ttl
            del store[k]  # beyond any use: make room now rather than at eviction
            if store is self._denial:
                return self._lookup_success(k, now)
        counts.misses += 1
        return None

    def _lookup_success(self, k: Key, now: float) -> tuple[_Entry, int] | None:
        """The rest of :meth:`_lookup` after an expired denial entry went."""
        counts = self.counts
        entry = self._success.get(k)
        if entry is not None:
            ttl = entry.orig_ttl - int(now - entry.stored)
            if ttl > 0 or -ttl < self._stale:
                counts.hits[entry.kind] += 1
                return entry, ttl
            del self._success[k]
        counts.misses += 1
        return None

    def _serve(self, entry: _Entry, ttl: int, k: Key, query: bytes, now: float) -> int:
        """A hit's bookkeeping (stale, prefetch); the TTL its records should carry."""
        config = self.config
        if ttl < 0:
            self.counts.served_stale += 1
            if not config.serve_stale_verify:
                self._refresh(k, query, entry, now)
            ttl = 0
        elif config.prefetch > 0 and self._should_prefetch(entry, ttl, now):
            self._refresh(k, query, entry, now)
        if config.keepttl:
            ttl = entry.orig_ttl
        return ttl

    def _should_prefetch(self, entry: _Entry, ttl: int, now: float) -> bool:
        config = self.config
        if entry.last < now - config.prefetch_duration:
            entry.hits = 1
        else:
            entry.hits += 1
        entry.last = now
        threshold = math.ceil(config.prefetch_percentage / 100 * entry.orig_ttl)
        return entry.hits >= config.prefetch and ttl <= threshold

    def _render(self, entry: _Entry, ttl: int, query: bytes, tcp: bool, do: bool) -> bytes:
        qend = query.find(0, 12) + 5
        opt = b""
        limit = 512
        if query[11] and query[qend : qend + 3] == _OPT_START and len(query) >= qend + 11:
            opt = self._opt_do if do else self._opt
            limit = (query[qend + 3] << 8) | query[qend + 4]
            if limit < 512:
                limit = 512
            elif limit > self.max_udp:
                limit = self.max_udp
        if tcp:
            limit = MAX_TCP
        return self._reply(entry, ttl, query, qend, opt, limit, do)

    def _reply(
        self, entry: _Entry, ttl: int, query: bytes, qend: int, opt: bytes, limit: int, do: bool
    ) -> bytes:
        """``entry`` behind the query's ID and question, with ``opt``, truncated to ``limit``."""
        question = query[12:qend]
        flags0 = 0x84 | (query[2] & 0x79)  # QR, AA, the query's opcode and RD
        flags1 = entry.flags1 | (query[3] & 0x10)  # RA, RCODE; the query's CD
        if entry.ad and (do or query[3] & 0x20):
            flags1 |= 0x20
        if 12 + len(question) + entry.size + len(opt) > limit:
            counts = _COUNTS.pack(1, 0, 0, 1 if opt else 0)
            return query[:2] + bytes((flags0 | 0x02, flags1)) + counts + question + opt
        return b"".join(
            (
                query[:2],
                bytes((flags0, flags1)),
                entry.counts_opt if opt else entry.counts_plain,
                question,
                entry.render(ttl),
                opt,
            )
        )

    # -- storing --

    def put(
        self,
        reply: bytes,
        qname: str,
        qtype: int,
        do: bool,
        cd: bool,
        query: bytes | None = None,
    ) -> bytes:
        """Store ``reply`` if CoreDNS would; returns it as the client should see it.

        The returned reply has every TTL set to the cached lifetime, and the AD bit
        cleared unless ``query`` (when given) asked with DO or AD. Unparsable replies are
        returned untouched.
        """
        name = _norm(qname)
        if query is None:
            return self.fill(reply, _wire(name) + qtype.to_bytes(2, "big") + BITS[do][cd], None)
        return self.fill(reply, _key_of(query, name, qtype, do, cd), query)

    def fill(self, reply: bytes, k: Key, query: bytes | None) -> bytes:
        """:meth:`put` by key: store ``reply`` if CoreDNS would, return it for the client."""
        try:
            parsed = parse(reply)
        except BadMessage:
            return reply
        duration = self._duration(parsed)
        self._store(reply, parsed, k, duration)
        out = bytearray(reply)
        packed = _TTL.pack(max(duration, 0))
        for offset in parsed.ttl_offsets:
            out[offset : offset + 4] = packed
        if query is not None and k[-1] < 2 and len(query) > 3 and not query[3] & 0x20:
            out[3] &= ~0x20 & 0xFF
        return bytes(out)

    def _duration(self, parsed: Parsed) -> int:
        config = self.config
        if parsed.kind in (NXDOMAIN_T, NODATA_T):
            return _clamp(parsed.min_ttl, config.denial_min_ttl, config.denial_ttl)
        if parsed.kind == SERVERERROR_T:
            return int(config.servfail_ttl)
        return _clamp(parsed.min_ttl, config.success_min_ttl, config.success_ttl)

    def _store(self, reply: bytes, parsed: Parsed, k: Key, duration: int) -> None:
        """Store if cacheable; the reply must answer the question ``k`` names."""
        kind = parsed.kind
        if parsed.flags & 0x0200 or kind in (OTHER_T, META_T, UPDATE_T) or duration <= 0:
            return
        qend = parsed.qend
        qwire = k[:-3]
        if reply[12 : qend - 4].lower() != qwire or reply[qend - 4 : qend - 2] != k[-3:-1]:
            self.counts.drops += 1  # the reply is not for this question
            return
        if kind in (NOERROR_T, DELEGATION_T):
            cache_kind = SUCCESS
            if self._no_success and names.wire_zone(qwire, self._no_success) is not None:
                return
        else:
            cache_kind = DENIAL
            if self._no_denial and names.wire_zone(qwire, self._no_denial) is not None:
                return
        if not self._enabled[cache_kind]:
            return
        end = parsed.opt[0] if parsed.opt else len(reply)
        cuts = [qend]
        for offset in parsed.ttl_offsets:
            cuts += (offset, offset + 4)
        cuts.append(end)
        segments = tuple(reply[cuts[i] : cuts[i + 1]] for i in range(0, len(cuts), 2))
        entry = _Entry(
            segments,
            parsed.counts,
            parsed.rcode,
            bool(parsed.flags & 0x0020),
            bool(parsed.flags & 0x0080),
            duration,
            self._clock(),
            cache_kind,
        )
        if cache_kind == SUCCESS:
            self._success[k] = entry
        else:
            self._denial[k] = entry
            shadowed = self._success_data.get(k)
            if shadowed is not None:
                shadowed.current = False  # lookups find the denial first now

    # -- refreshing --

    def _refresh(self, k: Key, query: bytes, entry: _Entry, now: float) -> None:
        """Refresh ``k`` in the background: one at a time per key, a bounded number."""
        if (
            self.downstream is None
            or self._stopped
            or k in self._refreshing
            or len(self._refreshing) >= MAX_REFRESHES
        ):
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._refreshing.add(k)
        self.counts.prefetch += 1
        self._tasks.start(self._do_refresh(k, query, entry.hits, now))

    async def _do_refresh(self, k: Key, query: bytes, hits: int, now: float) -> None:
        try:
            assert self.downstream is not None
            # Over TCP, like CoreDNS's prefetch writer: nothing gets truncated.
            reply = await self.downstream(query, True)
            if reply is None:
                return
            try:
                parsed = parse(reply)
            except BadMessage:
                return
            if parsed.rcode not in (0, 3):
                # A failed refresh must not replace a good entry with an error: what
                # verify mode does, and what serve_stale is for (CoreDNS would store a
                # SERVFAIL here and serve it ahead of the stale entry).
                return
            self._store(reply, parsed, k, self._duration(parsed))
            if parsed.kind in (NOERROR_T, DELEGATION_T):
                self._denial.pop(k, None)
            # The new entry inherits the popularity the old one had gathered.
            for store in (self._success, self._denial):
                fresh = store.get(k)
                if fresh is not None:
                    fresh.hits = hits
                    fresh.last = now
        finally:
            self._refreshing.discard(k)


def key(name: bytes, qtype: int, do: bool, cd: bool) -> Key:
    """The cache key of a question: ``name`` is its lower-cased wire form."""
    return name + qtype.to_bytes(2, "big") + BITS[do][cd]


def _key_of(query: bytes, name: str, qtype: int, do: bool, cd: bool) -> Key:
    """The key of ``query``'s question (queries never compress it); from ``name`` if bad."""
    end = query.find(0, 12) + 1
    if end <= 12 and len(query) > 12:
        return _wire(name) + qtype.to_bytes(2, "big") + BITS[do][cd]
    return bytes(query[12:end].lower()) + qtype.to_bytes(2, "big") + BITS[do][cd]


def _norm(qname: str) -> str:
    name = qname.lower()
    return name if name.endswith(".") else name + "."


def _wire(name: str) -> bytes:
    if name == ".":
        return b"\x00"
    return b"".join(bytes((len(lab),)) + lab for lab in name.encode().split(b".")[:-1]) + b"\x00"
