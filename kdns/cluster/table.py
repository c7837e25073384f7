"""Compiled answers: (lower-cased wire name, type) -> prebuilt response sections.

The names a Service owns (its own name, its SRV port names, its endpoints' names) are
compiled when the Service or its EndpointSlices change, by asking the resolver every
question a client can ask about them. Everything else (negative answers, PTR, pods,
the apex) is computed on first use and kept in a bounded cache that is dropped on any
change, so it can never be stale. Reads never block on writes: the event loop runs
one or the other, and a compile touches only the names of what changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from kdns.cluster.resolver import Resolver
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


class Table:
    """The answers the transports serve from; see the module docstring."""

    def __init__(self, store: Store, resolver: Resolver, cache_size: int = 100_000) -> None:
        self.store = store
        self.resolver = resolver
        self.nodes: dict[bytes, Node] = {}
        self.lazy: dict[bytes, Node] = {}
        self.cache_size = cache_size
        self._owned: dict[SvcKey, tuple[bytes, ...]] = {}
        self.compiles = 0
        self.last_compile_seconds = 0.0
        self.loadbalance = False  # a block using this table has the loadbalance plugin

    # -- reading -------------------------------------------------------------------

    def lookup(self, name: bytes, qtype: int) -> wire.Answer | None:
        """The answer for a lower-cased wire name; None when the name is in no zone of ours."""
        node = self.nodes.get(name)
        if node is not None and qtype not in SPECIAL:
            answer = node.get(qtype)
            return answer if answer is not None else node[DEFAULT]
        cached = self.lazy.get(name)
        if cached is not None:
            if cached is FOREIGN:
                return None
            answer = cached.get(qtype)
            if answer is not None:
                return answer
        return self._compute(name, qtype, cached)

    def _compute(self, name: bytes, qtype: int, cached: Node | None) -> wire.Answer | None:
        try:
            text = names.wire_to_text(name)
        except names.BadName:
            return None
        zone = self.resolver.zone_of(text)
        if len(self.lazy) >= self.cache_size:
            # Cheap FIFO eviction: the oldest entries go first.
            for key in list(self.lazy)[: self.cache_size // 10]:
                del self.lazy[key]
        if zone is None:
            self.lazy[name] = FOREIGN
            return None
        answer = self.resolver.answer(text, zone, qtype)
        if self.loadbalance and qtype in (wire.A, wire.AAAA):
            answer.rotate()
        if cached is None:
            cached = self.lazy[name] = {}
        cached[qtype] = answer
        return answer

    def is_zone_name(self, name: bytes) -> bool:
        return name in self.nodes or (name in self.lazy and self.lazy[name] is not FOREIGN)

    # -- compiling -----------------------------------------------------------------

    def invalidate(self) -> None:
        """Drop everything computed lazily; called synchronously on every store change."""
        if self.lazy:
            self.lazy = {}

    def rebuild(self) -> None:
        """Compile every service from scratch and swap the result in at once."""
        started = time.perf_counter()
        self.store.take_dirty()
        nodes: dict[bytes, Node] = {}
        owned: dict[SvcKey, tuple[bytes, ...]] = {}
        for key in list(self.store.services):
            owned[key] = self._compile_service(key, nodes)
        self.nodes, self._owned = nodes, owned
        self.lazy = {}
        self._finish(started)

    def update(self, budget: float | None = None) -> bool:
        """Recompile what changed since the last call; False when more is left to do.

        With a ``budget`` (seconds) it stops once that much time is spent and hands the
        rest back, so the caller can let queries through in between.
        """
        started = time.perf_counter()
        services, namespaces = self.store.take_dirty()
        if not services and not namespaces:
            return True
        for ns in namespaces:
            # A namespace appearing or going away changes every name inside it.
            services.update(svc.key for svc in self.store.services_in(ns))
            services.update(key for key in self._owned if key[0] == ns)
        pending = sorted(services)
        done = 0
        for key in pending:
            for name in self._owned.pop(key, ()):
                self.nodes.pop(name, None)
            if key in self.store.services:
                self._owned[key] = self._compile_service(key, self.nodes)
            done += 1
            if budget is not None and time.perf_counter() - started > budget:
                break
        if done < len(pending):
            self.store.requeue(pending[done:])
        self.lazy = {}
        self._finish(started)
        return done == len(pending)

    def _finish(self, started: float) -> None:
        self.compiles += 1
        self.last_compile_seconds = time.perf_counter() - started

    def _compile_service(self, key: SvcKey, nodes: dict[bytes, Node]) -> tuple[bytes, ...]:
        owned: list[bytes] = []
        for zone in self.resolver.zones:
            if zone.endswith("in-addr.arpa.") or zone.endswith("ip6.arpa."):
                continue
            external = self.store.services[key].is_external_name
            for text in self._names_of(key, zone):
                wire_name = names.to_wire(text)
                if wire_name in nodes:
                    continue
                nodes[wire_name] = self._compile_name(text, zone, external)
                owned.append(wire_name)
        return tuple(owned)

    def _names_of(self, key: SvcKey, zone: str) -> Iterable[str]:
        """Every name below the service that a client may ask about."""
        ns, name = key
        svc = self.store.services[key]
        base = f"{name}.{ns}.svc.{zone}"
        yield base
        if svc.is_external_name:
            return
        slices = self.store.slices_of(ns, name)
        ports: set[tuple[str, str]] = set()
        if svc.headless:
            ports.update((p.name, p.protocol) for s in slices for p in s.ports if p.name)
        else:
            ports.update((p.name, p.protocol) for p in svc.ports if p.name)
        for port, proto in sorted(ports):
            yield f"_{port.lower()}._{proto.lower()}.{base}"
        if not svc.headless:
            # Endpoint names of ClusterIP services exist (CoreDNS answers them) but are
            # rarely asked: they are answered on first use instead of compiled up front.
            return
        hosts: set[str] = set()
        pod_names = self.resolver.settings.endpoint_pod_names
        for eps in slices:
            for endpoint in eps.endpoints:
                if endpoint.ready or svc.publish_not_ready:
                    for ip in endpoint.addresses:
                        hosts.add(_label(endpoint.hostname, endpoint.target_name, ip, pod_names))
        for host in sorted(hosts):
            yield f"{host}.{base}"

    def _compile_name(self, text: str, zone: str, external: bool) -> Node:
        """Every type a client may ask, stored only where it differs from the default."""
        answer = self.resolver.answer
        default = answer(text, zone, 0)
        node: Node = {DEFAULT: default}
        qtypes = [wire.A, wire.AAAA, wire.SRV]
        if external:
            qtypes.append(wire.CNAME)  # only an ExternalName has a CNAME
        if default.rcode != wire.NOERROR:
            qtypes.append(wire.SOA)  # below the apex SOA is NODATA even for missing names
        for qtype in qtypes:
            compiled = answer(text, zone, qtype)
            if compiled.rcode != default.rcode or compiled.body != default.body:
                if self.loadbalance and qtype in (wire.A, wire.AAAA):
                    compiled.rotate()
                node[qtype] = compiled
        return node


def _label(hostname: str, target: str, ip: str, pod_names: bool) -> str:
    if hostname:
        return hostname.lower()
    if pod_names and target:
        return target.lower()
    return names.dashed(ip)
