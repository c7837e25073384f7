"""The acl walk (first matching policy of the first rule that decides) and ``isolate``.

CoreDNS's semantics: a rule applies when one of its zones contains the query name (the
longest such zone is the metrics label); its policies are tried in order and the first
whose types and networks match decides: ``block`` is REFUSED, ``filter`` an empty
NOERROR, ``drop`` no answer at all, ``allow`` ends the walk. With no decision the query
is allowed. acl acts after ``rewrite``, on the rewritten name (CVE-2026-26017).

``isolate`` (kdns): when the client's address is a running pod's, a cluster name whose
namespace (the label before ``svc`` or ``pod``) is not the pod's own, listed, or
labelled as shared, answers NXDOMAIN with the zone's SOA, the bytes a missing namespace
gets. PTR answers naming such a Service are hidden the same way. Clients that are not
known pods (nodes, host-network pods whose address several namespaces share are seen
through all of them) are not restricted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Protocol

import dnslib

from kdns.cluster.store import Store
from kdns.cluster.table import Table
from kdns.dns import names, wire
from kdns.plugins.acl import metrics
from kdns.plugins.acl.setup import ALL_TYPES, AclConfig, Isolation, Policy, Rule
from kdns.query.chain import Next
from kdns.query.handler import Query


class Cluster(Protocol):
    """What isolate reads of the block's kubernetes plugin."""

    store: Store
    zones: tuple[str, ...]

    def soa(self, zone: str) -> wire.RR: ...


def _zone(zones: tuple[str, ...], qname: str) -> str | None:
    best: str | None = None
    for zone in zones:
        if names.is_subdomain(qname, zone) and (best is None or len(zone) > len(best)):
            best = zone
    return best


def _decide(policies: tuple[Policy, ...], qtype: int, client: str) -> str | None:
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for policy in policies:
        if ALL_TYPES not in policy.qtypes and qtype not in policy.qtypes:
            continue
        if any(ip.version == net.version and ip in net for net in policy.nets):
            return policy.action
    return None


def namespace_of(qname: str, zone: str) -> str | None:
    """The namespace label of a cluster name (``<...>.<ns>.svc|pod.<zone>``), if any."""
    base = qname[: -len(zone)].rstrip(".") if zone != "." else qname.rstrip(".")
    labels = base.split(".")
    if len(labels) >= 2 and labels[-1] in ("svc", "pod"):
        return labels[-2]
    return None


class _TableCluster:
    def __init__(self, table: Table, zones: tuple[str, ...]) -> None:
        self.store = table.resolver.store
        self.zones = zones
        self._resolver = table.resolver

    def soa(self, zone: str) -> wire.RR:
        return self._resolver.soa(zone)


class Acl:
    """A block's acl rules; ``serve`` is its place in the chain."""

    def __init__(self, config: AclConfig) -> None:
        self.rules: tuple[Rule, ...] = config.rules
        self.cluster: Cluster | None = None

    def bind(self, table: Table, zones: tuple[str, ...]) -> None:
        """The block's kubernetes plugin, whose pods and namespaces ``isolate`` reads."""
        self.cluster = _TableCluster(table, zones)

    @property
    def isolates(self) -> bool:
        return any(rule.isolation is not None for rule in self.rules)

    async def serve(self, q: Query, server: str, next_plugin: Next) -> tuple[bytes | None, str]:
        client = q.remote[0]
        isolation: Isolation | None = None
        for rule in self.rules:
            zone = _zone(rule.zones, q.qname)
            if zone is None:
                continue
            if rule.isolation is not None and isolation is None:
                isolation = rule.isolation
            action = _decide(rule.policies, q.qtype, client)
            if action == "block":
                metrics.BLOCKED.labels(server, zone, "").inc()
                return q.reply(wire.build(q.qname, wire.REFUSED, authoritative=False)), "acl"
            if action == "filter":
                metrics.FILTERED.labels(server, zone, "").inc()
                return q.reply(wire.build(q.qname, wire.NOERROR, authoritative=False)), "acl"
            if action == "drop":
                metrics.DROPPED.labels(server, zone, "").inc()
                return None, "acl"
            if action == "allow":
                break
        metrics.ALLOWED.labels(server, "").inc()
        if isolation is None or self.cluster is None:
            return await next_plugin(q)
        visible = self._visible(isolation, client)
        if visible is None:
            return await next_plugin(q)
        cluster = self.cluster
        zone = _zone(cluster.zones, q.qname)
        if zone is not None:
            namespace = namespace_of(q.qname, zone)
            if namespace is not None and not visible(namespace):
                return q.reply(self._missing(q.qname, zone)), "acl"
        response, plugin = await next_plugin(q)
        hides = zone is not None and q.qtype == wire.PTR
        if response is not None and hides and self._names_hidden_target(response, visible):
            assert zone is not None
            return q.reply(self._missing(q.qname, zone)), "acl"
        return response, plugin

    def _visible(self, isolation: Isolation, client: str) -> Callable[[str], bool] | None:
        """Which namespaces the client may see; None when it is not a known pod."""
        assert self.cluster is not None
        store = self.cluster.store
        if client.startswith("::ffff:"):
            client = client[7:]
        own = set(store.pod_namespaces(client))
        if not own:
            return None
        listed = isolation.namespaces
        selector = isolation.selector

        def visible(namespace: str) -> bool:
            if namespace in own or namespace in listed:
                return True
            if selector is None:
                return False
            found = store.namespaces.get(namespace)
            return found is not None and selector.matches(found.labels)

        return visible

    def _missing(self, qname: str, zone: str) -> wire.Answer:
        """What the kubernetes plugin answers for a name that does not exist."""
        assert self.cluster is not None
        rcode = wire.NXDOMAIN if self.cluster.store.synced else wire.SERVFAIL
        return wire.build(qname, rcode, authority=[self.cluster.soa(zone)])

    def _names_hidden_target(self, response: bytes, visible: Callable[[str], bool]) -> bool:
        assert self.cluster is not None
        try:
            msg = dnslib.DNSRecord.parse(response)
        except Exception:
            return False
        for rr in msg.rr:
            if rr.rtype != wire.PTR:
                continue
            target = names.fqdn(str(rr.rdata.label)).lower()
            zone = _zone(self.cluster.zones, target)
            if zone is None:
                continue
            namespace = namespace_of(target, zone)
            if namespace is not None and not visible(namespace):
                return True
        return False
