"""Compiled answers: (lower-cased wire name, type) -> prebuilt response sections.

The names a Service owns (its own name, its SRV port names, a headless service's host
names) are compiled when the Service or its EndpointSlices change, by asking the
resolver every question a client can ask about them; a headless service's names are
encoded instead in one pass over their endpoints (:mod:`kdns.cluster.headless`, the
resolver's bytes, in O(endpoints)). A compile is a sequence of small steps (one
question, a few hundred endpoints, or 64 KiB deflated each), so the compiler can stop
inside a large service and let queries through; a service's new names are swapped in
when its compile completes. A headless service whose endpoints changed recompiles its
own names and the host names whose endpoints changed (found from the slices that
changed), nothing else.

Every other name of a cluster zone is answered on first use and remembered in a bounded
cache, grouped by what its answer depends on (:meth:`Resolver.scope`): a write to a
service or a namespace drops only the names of that group, never the whole cache. Most
of these names are missing by their structure alone (the ndots:5 search path: an
unknown namespace, a service that does not exist, a first label that is neither ``svc``
nor ``pod``): they share a prebuilt NXDOMAIN/NODATA template per zone and position of
the zone in the name, whose SOA serial is patched in place when the store's changes.
Rarely asked names (endpoint names of ClusterIP services, PTR records of endpoint
addresses) come from the resolver's per-service index, also on first use.
Reads never block on writes: the event loop runs one or the other.
"""

from __future__ import annotations

import logging
import struct
import time
import zlib
from collections.abc import Generator, Iterable, Iterator

from kdns.cluster import headless, objects
from kdns.cluster.resolver import (
    FALLTHROUGH,
    Group,
    Resolver,
    ServiceIndex,
    _name_wire,
    endpoint_entries,
    parse_name,
    service_entries,
)
from kdns.cluster.store import Store, SvcKey
from kdns.dns import names, wire

log = logging.getLogger(__name__)

DEFAULT = -1
"""Node key of the answer to every type the node has no entry for."""

SPECIAL = frozenset({wire.ANY, wire.AXFR, wire.IXFR})
"""Types that never take a node's default answer."""

Node = dict[int, wire.Answer]

FOREIGN: Node = {}
"""Cache marker for names outside every zone: the caller forwards or refuses them."""


HOT = 4096
"""How many compiled names are kept unpacked, ready to serve (first in, first out)."""

# A compiled name packs its answers into one bytes object: per type (DEFAULT as -1) a
# head, then for a full answer its rcode, AA bit, counts, and the body, RR sizes and
# ExternalName chase target. NODATA and FALLTHROUGH are marks, not copies. A name whose
# answers are large (a headless service's A and SRV sets) is kept deflated: its records
# repeat the same owner, type and parent name, and it is inflated only when unpacked.
_HEAD = struct.Struct("!hB")
_FULL = struct.Struct("!BBHHHIIH")
_PACKED, _NODATA, _FALL = 0, 1, 2
_RAW, _DEFLATED = b"\x00", b"\x01"
DEFLATE_ABOVE = 256
"""Packed answers longer than this (bytes) are kept deflated."""
_SMALL: dict[bytes, bytes] = {}
"""One copy of each small header field (counts, a few RR sizes) the unpacked answers use."""


def _small(value: bytes) -> bytes:
    if len(value) > 8:
        return value
    found = _SMALL.get(value)
    if found is None:
        if len(_SMALL) >= 4096:
            return value
        found = _SMALL[value] = value
    return found


DEFLATE_STEP = 1 << 16
"""Bytes deflated between two chances for the compiler to stop (a headless service's
names pack to a megabyte at 10,000 endpoints: deflating them whole takes 15 ms)."""


def _deflating(blob: bytes) -> Generator[None, None, bytes]:
    """A packed name's stored form (see :data:`DEFLATE_ABOVE`), a step per
    :data:`DEFLATE_STEP` bytes deflated."""
    if len(blob) <= DEFLATE_ABOVE:
        return _RAW + blob
    deflate = zlib.compressobj()
    view = memoryview(blob)
    out = []
    for start in range(0, len(blob), DEFLATE_STEP):
        if start:
            yield
        out.append(deflate.compress(view[start : start + DEFLATE_STEP]))
    out.append(deflate.flush())
    deflated = b"".join(out)
    return _DEFLATED + deflated if len(deflated) < len(blob) else _RAW + blob


class _Compiled:
    """What a service's last compile produced, to tell what the next one may keep."""

    __slots__ = ("names", "service", "slices", "synced")

    def __init__(
        self,
        service: objects.Service,
        names_: tuple[bytes, ...],
        slices: tuple[objects.EndpointSlice, ...] | None,
        synced: bool,
    ) -> None:
        self.service = service
        self.names = names_
        # A headless service's slices as compiled, else None: a host name whose
        # endpoints are all in slices still present (the same objects) is unchanged.
        self.slices = slices
        self.synced = synced


class Table:
    """The answers the transports serve from; see the module docstring."""

    def __init__(self, store: Store, resolver: Resolver, cache_size: int = 100_000) -> None:
        self.store = store
        self.resolver = resolver
        self.packed: dict[bytes, bytes] = {}
        """Every compiled name: its answers packed in one bytes object."""
        self.nodes: dict[bytes, Node] = {}
        """The compiled names asked lately, unpacked (at most :data:`HOT`): the handler
        serves these without a call; any other compiled name is unpacked on first use."""
        self.lazy: dict[bytes, Node] = {}
        self.cache_size = cache_size
        self._group_of: dict[bytes, Group] = {}
        self._groups: dict[str, dict[str, set[bytes]]] = {}  # namespace -> service -> names
        self._templates: dict[tuple[str, int, bool], tuple[str, Node]] = {}
        self._nodata: dict[tuple[str, int], tuple[str, wire.Answer]] = {}
        self._zone_sizes: dict[str, int] = {}
        """The NODATA answer every compiled name at this zone offset shares."""
        self._serial = store.modified
        self._compiled: dict[SvcKey, _Compiled] = {}
        self._externals: set[SvcKey] = set()  # ExternalNames pointing inside a zone of ours
        self._pending: dict[SvcKey, bool] = {}  # key -> compile every name (not only changes)
        self._job: Iterator[None] | None = None
        self.compiles = 0
        self.steps = 0  # resolver questions asked by compiles
        self.last_compile_seconds = 0.0
        self._loadbalance = False
        store.watch(self._touched)

    @property
    def loadbalance(self) -> bool:
        """A block using this table has the loadbalance plugin: A/AAAA sets rotate."""
        return self._loadbalance

    @loadbalance.setter
    def loadbalance(self, value: bool) -> None:
        if value != self._loadbalance:
            self._loadbalance = value
            self.nodes = {}  # unpacked without (or with) rotations

    # -- reading -------------------------------------------------------------------

    def lookup(self, name: bytes, qtype: int) -> wire.Answer | None:
        """The answer for a lower-cased wire name; None when the name is in no zone of ours."""
        node = self.nodes.get(name)
        if node is None:
            blob = self.packed.get(name)
            if blob is not None:
                node = self._unpack(name, blob)
        if node is not None and qtype not in SPECIAL:
            answer = node.get(qtype)
            return answer if answer is not None else node[DEFAULT]
        cached = self.lazy.get(name)
        if cached is not None:
            if cached is FOREIGN:
                return None
            answer = cached.get(qtype)
            if answer is None:
                answer = cached.get(DEFAULT)
            if answer is not None:
                return answer
        return self._compute(name, qtype, cached)

    def _unpack(self, name: bytes, blob: bytes) -> Node:
        """A compiled name's answers, unpacked and kept among the :data:`HOT` ones."""
        nodes = self.nodes
        if len(nodes) >= HOT:
            for key in list(nodes)[: HOT // 8]:
                del nodes[key]
        node: Node = {}
        blob = zlib.decompress(blob[1:]) if blob[0] == _DEFLATED[0] else blob[1:]
        pos, end = 0, len(blob)
        rotate = self._loadbalance
        while pos < end:
            qtype, kind = _HEAD.unpack_from(blob, pos)
            pos += _HEAD.size
            if kind == _FALL:
                node[qtype] = FALLTHROUGH
                continue
            if kind == _NODATA:
                zone = self.resolver.zones[blob[pos]]
                pos += 1
                node[qtype] = self._shared_nodata(name, zone)
                continue
            rcode, aa, an, ns, ar, body, sizes, chase = _FULL.unpack_from(blob, pos)
            pos += _FULL.size
            answer = wire.Answer(
                rcode, (an, ns, ar), blob[pos : pos + body], blob[pos + body : pos + body + sizes],
                bool(aa),
            )  # fmt: skip
            pos += body + sizes
            if chase:
                answer.chase = blob[pos : pos + chase].decode()
                pos += chase
            answer.counts = _small(answer.counts)
            answer.counts_opt = _small(answer.counts_opt)
            answer.an_sizes = _small(answer.an_sizes)
            if rotate and (qtype == wire.A or qtype == wire.AAAA):
                answer.rotate()
            node[qtype] = answer
        nodes[name] = node
        return node

    def _pack(self, name: bytes, zone: str, node: Node) -> bytes:
        """The inverse of :meth:`_unpack`."""
        packing = _deflating(self._pack_raw(name, zone, node))
        while True:
            try:
                next(packing)
            except StopIteration as done:
                blob: bytes = done.value
                return blob

    def _pack_raw(self, name: bytes, zone: str, node: Node) -> bytes:
        """:meth:`_pack`'s blob before deflating."""
        parts: list[bytes] = []
        shared = self._shared_nodata(name, zone)
        for qtype, answer in node.items():
            if answer is FALLTHROUGH:
                parts.append(_HEAD.pack(qtype, _FALL))
                continue
            if (
                answer.rcode == shared.rcode
                and answer.counts == shared.counts
                and answer.body == shared.body
                and not answer.chase
            ):
                parts.append(_HEAD.pack(qtype, _NODATA))
                parts.append(bytes((self.resolver.zones.index(zone),)))
                continue
            chase = answer.chase.encode() if answer.chase else b""
            an, ns, ar = struct.unpack_from("!HHH", answer.counts, 2)
            aa = answer.flags is wire.FLAGS_AA[answer.rcode]
            parts.append(_HEAD.pack(qtype, _PACKED))
            parts.append(
                _FULL.pack(
                    answer.rcode, aa, an, ns, ar, len(answer.body), len(answer.an_sizes),
                    len(chase),
                )
            )  # fmt: skip
            parts += (answer.body, answer.an_sizes, chase)
        return b"".join(parts)

    def _shared_nodata(self, name: bytes, zone: str) -> wire.Answer:
        """NODATA (the SOA in authority) for a name of this size in ``zone``: all such
        names share it, and a new SOA serial patches it in place."""
        key = (zone, len(name) - self._zone_size(zone))
        found = self._nodata.get(key)
        if found is None:
            text = names.wire_to_text(name)
            found = self._nodata[key] = (text, self._nodata_answer(text, zone))
        return found[1]

    def _zone_size(self, zone: str) -> int:
        """The wire length of a zone name, encoded once per zone."""
        size = self._zone_sizes.get(zone)
        if size is None:
            size = self._zone_sizes[zone] = len(names.to_wire(zone))
        return size

    def _nodata_answer(self, text: str, zone: str) -> wire.Answer:
        return wire.build(text, wire.NOERROR, authority=[self.resolver.soa(zone)])

    def _compute(self, name: bytes, qtype: int, cached: Node | None) -> wire.Answer | None:
        try:
            text = names.wire_to_text(name)
        except names.BadName:
            return None
        resolver = self.resolver
        zone = resolver.zone_of(text)
        if cached is None and len(self.lazy) >= self.cache_size:
            self._evict()
        if zone is None:
            self.lazy[name] = FOREIGN
            return None
        missing, group = resolver.scope(text, zone)
        if missing:
            node = self._template(text, len(name), zone)
            self._remember(name, node, group)
            answer = node.get(qtype)
            return answer if answer is not None else node[DEFAULT]
        answer = resolver.answer(text, zone, qtype)
        if self.loadbalance and qtype in (wire.A, wire.AAAA):
            answer.rotate()
        if cached is None:
            cached = {}
            self._remember(name, cached, group)
        cached[qtype] = answer
        return answer

    def _remember(self, name: bytes, node: Node, group: Group | None) -> None:
        self.lazy[name] = node
        if group is not None:
            self._group_of[name] = group
            self._groups.setdefault(group[0], {}).setdefault(group[1], set()).add(name)

    def _evict(self) -> None:
        """Cheap FIFO eviction: the oldest tenth goes."""
        lazy, group_of, groups = self.lazy, self._group_of, self._groups
        for key in list(lazy)[: max(1, self.cache_size // 10)]:
            del lazy[key]
            group = group_of.pop(key, None)
            if group is not None:
                members = groups.get(group[0], {}).get(group[1])
                if members is not None:
                    members.discard(key)

    def _template(self, text: str, size: int, zone: str) -> Node:
        """The shared answers of a missing name: they differ only by where the zone starts."""
        fallthrough = self.resolver.settings.fallthrough
        fall = bool(fallthrough) and any(names.is_subdomain(text, z) for z in fallthrough)
        key = (zone, size - self._zone_size(zone), fall)
        found = self._templates.get(key)
        if found is not None:
            return found[1]
        nx, nodata, refused = self._template_answers(text, zone)
        node: Node = {
            DEFAULT: FALLTHROUGH if fall else nx,
            wire.SOA: nodata,
            wire.AXFR: refused,
            wire.IXFR: refused,
        }
        self._templates[key] = (text, node)
        return node

    def _template_answers(self, text: str, zone: str) -> tuple[wire.Answer, ...]:
        soa = [self.resolver.soa(zone)]
        rcode = wire.NXDOMAIN if self.store.synced else wire.SERVFAIL
        return (
            wire.build(text, rcode, authority=soa),
            wire.build(text, wire.NOERROR, authority=soa),
            wire.build(text, wire.REFUSED, authoritative=False),
        )

    def is_zone_name(self, name: bytes) -> bool:
        return name in self.packed or (name in self.lazy and self.lazy[name] is not FOREIGN)

    # -- targeted invalidation -------------------------------------------------------

    def _touched(self, namespace: str, service: str) -> None:
        """The store wrote this service (or namespace, or everything): drop what it affects."""
        if not namespace:
            self.lazy, self._group_of, self._groups, self._templates = {}, {}, {}, {}
            if self.store.modified != self._serial:
                self._serial = self.store.modified
                self._refresh_templates()
            return
        groups = self._groups
        self._drop(groups.get("", {}).pop("", ()))
        if service:
            self._drop(groups.get(namespace, {}).pop(service, ()))
        else:
            for members in groups.pop(namespace, {}).values():
                self._drop(members)
        if self.store.modified != self._serial:
            self._serial = self.store.modified
            self._refresh_templates()

    def _drop(self, members: Iterable[bytes]) -> None:
        lazy, group_of = self.lazy, self._group_of
        for name in members:
            lazy.pop(name, None)
            group_of.pop(name, None)

    def _refresh_templates(self) -> None:
        """A new SOA serial: patch the shared negative answers in place."""
        for (zone, _, _), (text, node) in self._templates.items():
            nx, nodata, _ = self._template_answers(text, zone)
            if node[DEFAULT] is not FALLTHROUGH:
                node[DEFAULT].body = nx.body
            node[wire.SOA].body = nodata.body
        for (zone, _), (text, shared) in self._nodata.items():
            shared.body = self._nodata_answer(text, zone).body

    # -- compiling -----------------------------------------------------------------

    def rebuild(self) -> None:
        """Compile every service from scratch, at once."""
        started = time.perf_counter()
        self.store.take_dirty()
        self.packed, self.nodes, self._compiled, self._externals = {}, {}, {}, set()
        self._pending = dict.fromkeys(sorted(self.store.services), True)
        self._job = None
        self._touched("", "")
        self._run(None, started)
        self._finish(started)

    def update(self, budget: float | None = None) -> bool:
        """Recompile what changed since the last call; False when more is left to do.

        With a ``budget`` (seconds) it stops once that much time is spent, inside a
        service's compile if need be, and hands the rest back to the next call, so the
        caller can let queries through in between.
        """
        started = time.perf_counter()
        services, namespaces = self.store.take_dirty()
        if services or namespaces:
            full: set[SvcKey] = set()
            for ns in namespaces:
                # A namespace appearing or going away changes every name inside it.
                full.update(svc.key for svc in self.store.services_in(ns))
                full.update(key for key in self._compiled if key[0] == ns)
            # An ExternalName's CNAME chain inside our zones reads other services.
            services.update(self._externals)
            for key in sorted(services | full):
                self._pending[key] = self._pending.get(key, False) or key in full
        if self._job is None and not self._pending:
            return True
        done = self._run(budget, started)
        self._finish(started)
        return done

    def _run(self, budget: float | None, started: float) -> bool:
        clock = time.perf_counter
        while True:
            if self._job is None:
                if not self._pending:
                    return True
                key = next(iter(self._pending))
                full = self._pending.pop(key)
                self._job = self._compile_service(key, full)
            for _ in self._job:
                if budget is not None and clock() - started > budget:
                    return False
            self._job = None

    def _finish(self, started: float) -> None:
        self.compiles += 1
        self.last_compile_seconds = time.perf_counter() - started

    def _compile_service(self, key: SvcKey, full: bool) -> Iterator[None]:
        """One service's names, a question (or a slice of a large answer) per step;
        swapped in when all are done."""
        old = self._compiled.pop(key, None)
        packed, nodes = self.packed, self.nodes
        svc = self.store.services.get(key)
        if svc is None:
            self._externals.discard(key)
            for name in old.names if old is not None else ():
                packed.pop(name, None)
                nodes.pop(name, None)
            return
        external = svc.is_external_name
        target = names.fqdn(svc.external_name) if external and svc.external_name else ""
        if target and self.resolver.zone_of(target) is not None:
            self._externals.add(key)
        else:
            self._externals.discard(key)
        index: ServiceIndex | None = None
        if svc.headless and not external:
            for built in self.resolver.indexing(svc.namespace, svc.name, svc.publish_not_ready):
                index = built
                yield  # a slice of endpoints per step
        synced = self.store.synced
        changed: set[str] | None = None  # the host labels whose endpoints may have changed
        if (
            not full
            and old is not None
            and old.slices is not None
            and index is not None
            and old.service == svc
            and old.synced == synced
        ):
            changed = yield from self._hosts_changed(old.slices, index)
        fast = index is not None and self._fast(svc)
        old_names = set(old.names) if old is not None else set()
        owned: list[bytes] = []
        seen: set[bytes] = set()
        fresh: dict[bytes, bytes] = {}  # names compiled anew -> their packed answers
        tails: dict[str, bytes] = {}
        shared: dict[str, dict[int, wire.Answer]] = {}  # a service name's answers, by name
        last: tuple[bytes, bytes] = (b"", b"")  # the last blob packed, raw and stored
        kept = 0
        for zone in self.resolver.zones:
            if zone.endswith("in-addr.arpa.") or zone.endswith("ip6.arpa."):
                continue
            if zone in self.resolver.multicluster:
                continue  # ServiceImports' names, answered on first use
            for text, host in self._names_of(svc, zone, index):
                wire_name = _name_wire(text, tails)
                if wire_name in seen or (wire_name in packed and wire_name not in old_names):
                    continue  # another service's name (or this one's in another zone)
                seen.add(wire_name)
                owned.append(wire_name)
                if (
                    changed is not None
                    and host is not None
                    and host not in changed
                    and wire_name in old_names
                ):
                    kept += 1
                    if kept % 256 == 0:
                        yield  # unchanged host names of a large service: no work, but many
                    continue  # its endpoints did not change
                node: Node | None = None
                if fast and index is not None:
                    node = yield from self._compile_headless(text, zone, index, shared)
                    yield  # a name per step at least
                if node is None:
                    node = {}
                    yield from self._compile_name(text, zone, external, node)
                raw = self._pack_raw(wire_name, zone, node)
                if raw != last[0]:
                    # A service's own name and its port names often answer alike.
                    last = (raw, (yield from _deflating(raw)))
                fresh[wire_name] = last[1]
        for name in old_names.difference(seen):
            packed.pop(name, None)
            nodes.pop(name, None)
        for name, blob in fresh.items():
            packed[name] = blob
            nodes.pop(name, None)
        slices = index.slices if index is not None else None
        self._compiled[key] = _Compiled(svc, tuple(owned), slices, synced)

    def _fast(self, svc: objects.Service) -> bool:
        """Whether a headless service's names are answered by :mod:`headless`'s encoder
        (or, when it declines a name, the resolver): the names exist only through its
        endpoints, which the resolver would list (not ``noendpoints``, an exposed
        namespace)."""
        resolver = self.resolver
        return not resolver.settings.noendpoints and resolver._exposed(svc.namespace)

    def _compile_headless(
        self, text: str, zone: str, index: ServiceIndex, shared: dict[str, dict[int, wire.Answer]]
    ) -> Generator[None, None, Node | None]:
        """A headless service's name in one pass over its endpoints (:mod:`headless`),
        or None: the resolver answers it instead. A port name takes the records of its
        service name (in ``shared``) when they are the same."""
        resolver = self.resolver
        settings = resolver.settings
        name = parse_name(text, zone, settings.zonal, zone in resolver.multicluster)
        if name.kind == "service":
            base = text
        elif name.kind == "srv":
            base = text.split(".", 2)[2]
        elif name.kind == "endpoint" and not name.cluster:
            base = text.split(".", 1)[1]
        else:
            return None
        soa = resolver.soa(zone)
        answers: dict[int, wire.Answer] | None = None
        if name.kind == "srv" and base in shared:
            answers = headless.port_name_answers(
                shared[base], text, index, name.port, name.protocol, soa
            )
        if answers is None:
            entries: Iterable[headless.Entry]
            if name.kind == "endpoint":
                entries = endpoint_entries(index, name.endpoint, text)
            else:
                entries = service_entries(index, base, name.port, name.protocol)
            answers = yield from headless.encode(text, entries, settings.ttl, soa)
        self.steps += 1
        if answers is None:
            return None
        if name.kind == "service":
            shared[text] = answers
        default = answers[0]
        node: Node = {DEFAULT: default}
        for qtype in (wire.A, wire.AAAA, wire.SRV):
            compiled = answers[qtype]
            if compiled.rcode != default.rcode or compiled.body != default.body:
                node[qtype] = compiled
        return node

    def _hosts_changed(
        self, old: tuple[objects.EndpointSlice, ...], index: ServiceIndex
    ) -> Generator[None, None, set[str]]:
        """The host labels whose endpoints may differ from the last compile's, a slice
        (or 256 hosts) per step: at start-up thousands of endpoints arrive between two
        compiles.

        Only slices that are not in both (as the same objects) can change a host, and
        slices keep their order (by name): a host whose endpoints all lie in those
        slices, now and before, changed only if its endpoints there differ; one that
        also has endpoints elsewhere is counted as changed.
        """
        before = {id(eps) for eps in old}
        after = {id(eps) for eps in index.slices}
        gone = [eps for eps in old if id(eps) not in after]
        came = [eps for eps in index.slices if id(eps) not in before]
        was = yield from self._index_of(gone, index.publish)
        now = yield from self._index_of(came, index.publish)
        changed: set[str] = set()
        for count, host in enumerate(was.labels | now.labels, 1):
            if count % 256 == 0:
                yield
            mine = now.host_entries(host)
            if len(index.host_entries(host)) != len(mine) or was.host_entries(host) != mine:
                changed.add(host)
        return changed

    def _index_of(
        self, slices: list[objects.EndpointSlice], publish: bool
    ) -> Generator[None, None, ServiceIndex]:
        """An index of some of a service's slices, a slice per step."""
        pod_names = self.resolver.settings.endpoint_pod_names
        for built in ServiceIndex.build(slices, publish, pod_names, 0):
            if built is None:
                yield
            else:
                return built
        raise AssertionError("ServiceIndex.build ends with the index")  # pragma: no cover

    def _names_of(
        self, svc: objects.Service, zone: str, index: ServiceIndex | None
    ) -> Iterator[tuple[str, str | None]]:
        """Every name below the service that a client may ask about, with its host label."""
        base = f"{svc.name}.{svc.namespace}.svc.{zone}"
        yield base, None
        if svc.is_external_name:
            return
        ports: set[tuple[str, str]] = set()
        if svc.headless:
            slices = self.store.slices_of(svc.namespace, svc.name)
            ports.update((p.name, p.protocol) for s in slices for p in s.ports if p.name)
        else:
            ports.update((p.name, p.protocol) for p in svc.ports if p.name)
        for port, proto in sorted(ports):
            yield f"_{port.lower()}._{proto.lower()}.{base}", None
        if index is None:
            # Endpoint names of ClusterIP services exist (CoreDNS answers them) but are
            # rarely asked: they are answered on first use instead of compiled up front.
            return
        for host in sorted(index.labels):
            yield f"{host}.{base}", host

    def _compile_name(self, text: str, zone: str, external: bool, node: Node) -> Iterator[None]:
        """Every type a client may ask, stored only where it differs from the default."""
        answer = self.resolver.answer
        default = answer(text, zone, 0)
        node[DEFAULT] = default
        self.steps += 1
        yield
        qtypes = [wire.A, wire.AAAA, wire.SRV]
        if external:
            qtypes.append(wire.CNAME)  # only an ExternalName has a CNAME
        if default.rcode != wire.NOERROR:
            qtypes.append(wire.SOA)  # below the apex SOA is NODATA even for missing names
        for qtype in qtypes:
            compiled = answer(text, zone, qtype)
            self.steps += 1
            if compiled.rcode != default.rcode or compiled.body != default.body:
                node[qtype] = compiled  # rotated when unpacked, with loadbalance
            yield
