"""The authoritative answer to one question about the cluster zone.

This module is the single place that decides what a name means and which response
code it gets, following the Kubernetes DNS specification 1.1.0 and, where the
specification is silent, CoreDNS's kubernetes plugin (``parse.go``, ``kubernetes.go``,
``handler.go`` and ``plugin/backend_lookup.go``): which names exist (NODATA) and which
do not (NXDOMAIN), SRV weights, endpoint hostnames, the SOA in negative answers,
SERVFAIL before the cache has synced. It is deliberately straightforward and slowish;
speed comes from :mod:`kdns.cluster.table`, which calls it once per name and type when the
cache changes and serves the prebuilt bytes.
"""

from __future__ import annotations

import ipaddress
import math
import socket
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

from kdns import errors as kdns_errors
from kdns.cluster import objects
from kdns.cluster.store import IMPORTED, Store
from kdns.dns import names, wire

DNS_SCHEMA_VERSION = "1.1.0"

FALLTHROUGH = wire.build(".", wire.REFUSED, authoritative=False)
"""Marker answer: the name does not exist here and the next plugin should be asked."""
DNS_VERSION_TTL = 28800


class NameError_(kdns_errors.KdnsError):
    """The name does not exist (CoreDNS's errNoItems / errNsNotExposed / errInvalidRequest)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What the ``kubernetes`` directive configures for the DNS side."""

    zones: tuple[str, ...] = ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")
    ttl: int = 5
    pods: str = "insecure"  # disabled | insecure | verified
    endpoint_pod_names: bool = False
    ignore_empty_service: bool = False
    namespaces: frozenset[str] = frozenset()  # exposed namespaces; empty means all
    nameservers: tuple[str, ...] = ()  # addresses answered for ns.dns.<zone>
    fallthrough: tuple[str, ...] = ()  # zones whose NXDOMAIN goes to the next plugin; "." all
    noendpoints: bool = False  # no endpoint records: headless and endpoint names are NXDOMAIN
    zonal: bool = False  # <zone>.pin|prefer._zone.<svc>.<ns>.svc.<zone> names (CoreDNS 1.14.7)
    multicluster: tuple[str, ...] = ()  # zones answered from ServiceImports (clusterset.local.)

    @property
    def primary_zone(self) -> str:
        """The zone PTR targets live in: the first one that is not a reverse zone."""
        for zone in self.zones:
            if not _is_reverse(zone):
                return zone
        return self.zones[0]


@dataclass(frozen=True, slots=True)
class _Entry:
    """One of CoreDNS's msg.Service values: an address or name, a port, the SRV target."""

    host: str
    port: int
    target: str  # the domain an SRV record points at (msg.Domain of the key)
    text: str = ""


@dataclass(slots=True)
class _Request:
    """CoreDNS's recordRequest: the parsed labels of a name below a zone."""

    pod_or_svc: str = ""
    namespace: str = ""
    service: str = ""
    endpoint: str = ""
    port: str = ""
    protocol: str = ""
    cluster: str = ""  # multicluster: the cluster id of <host>.<cluster>.<svc>.<ns>.svc
    topology_zone: str = ""  # zonal: the zone of <zone>.pin|prefer._zone.<svc>.<ns>.svc
    prefer: bool = False  # zonal: prefer (fall back to every endpoint) rather than pin


def _is_reverse(name: str) -> bool:
    return name.endswith("in-addr.arpa.") or name.endswith("ip6.arpa.")


def _host_type(host: str) -> int:
    # inet_pton first: a large headless service asks this thousands of times per answer.
    try:
        socket.inet_pton(socket.AF_INET, host)
        return wire.A
    except OSError:
        pass
    try:
        return wire.AAAA if ipaddress.ip_address(host).version == 6 else wire.A
    except ValueError:
        return wire.CNAME


_SRV_FIXED = struct.Struct("!HHH")


def _name_wire(name: str, tails: dict[str, bytes]) -> bytes:
    """:func:`names.to_wire` of ``name``, its parent's encoding kept in ``tails``: SRV sets
    of thousands of targets under one service name encode that name once."""
    head, _, rest = name.partition(".")
    raw = head.encode("ascii", "replace")
    if not rest or not head.isascii() or not 0 < len(raw) <= 63:
        return names.to_wire(name)
    tail = tails.get(rest)
    if tail is None:
        tail = tails[rest] = names.to_wire(rest)
    if len(raw) + 1 + len(tail) > 255:
        return names.to_wire(name)  # raises, as it would have
    return bytes((len(raw),)) + raw + tail


def _address_rdata(host: str) -> bytes:
    """:func:`wire.rdata_address`'s rdata, without ``ipaddress`` for plain IPv4."""
    try:
        return socket.inet_pton(socket.AF_INET, host)
    except OSError:
        return wire.rdata_address(host)[1]


def _strip_underscore(label: str) -> str:
    return label[1:] if label.startswith("_") else label


# Why a name below a cluster zone cannot exist (CoreDNS: errInvalidRequest).
BAD_TYPE_LABEL = "bad-type-label"  # the label before the zone is neither svc nor pod
TOO_MANY_LABELS = "too-many-labels"  # more labels than <port>.<proto>.<svc>.<ns>.svc


@dataclass(frozen=True, slots=True)
class Name:
    """A name below a cluster zone, read right to left as CoreDNS's parse.go reads it.

    The one name grammar: the resolver answers from it and ``kdns explain`` explains
    from it, so the two cannot drift. ``kind`` is ``apex``, ``namespace``, ``service``,
    ``pod``, ``endpoint``, ``srv``, ``zonal`` or ``invalid`` (then ``reason`` says why).
    """

    kind: str
    pod_or_svc: str = ""  # the type label as written (the offending one when invalid)
    namespace: str = ""
    service: str = ""  # the service, or the pod's dashed address
    endpoint: str = ""
    port: str = ""
    protocol: str = ""
    reason: str = ""
    cluster: str = ""  # multicluster: <host>.<cluster>.<svc>.<ns>.svc
    topology_zone: str = ""  # zonal: <zone>.pin|prefer._zone.<svc>.<ns>.svc
    prefer: bool = False  # zonal: the prefer directive (pin otherwise)


_KINDS = ("namespace", "service", "endpoint", "srv")
ZONE_LABEL = "_zone"
"""Anchors a zone-scoped name three labels left of the service, where no other name
fits: ``<zone>.pin._zone.<svc>.<ns>.svc.<zone>`` (CoreDNS's parse.go)."""
PIN, PREFER = "pin", "prefer"


def parse_name(qname: str, zone: str, zonal: bool = False, multicluster: bool = False) -> Name:
    """The labels of ``qname`` below ``zone``; never raises.

    ``zonal`` reads zone-scoped names (in a zone that is not ``multicluster``), and
    ``multicluster`` reads ``<host>.<cluster>.<svc>.<ns>.svc`` where, elsewhere, two labels
    left of the service are a port and a protocol: as CoreDNS's parseRequest, the two
    options only add names that were NXDOMAIN without them.
    """
    return Name(*_split(qname, zone, zonal, multicluster))


_Fields = tuple[str, str, str, str, str, str, str, str, str, str, bool]
"""A :class:`Name`'s fields in its order (kind, pod_or_svc, namespace, service, endpoint,
port, protocol, reason, cluster, topology_zone, prefer)."""


def _split(qname: str, zone: str, zonal: bool, multicluster: bool) -> _Fields:
    """:func:`parse_name`'s reading as a plain tuple: a frozen :class:`Name` costs more to
    build than the parse itself, and :meth:`Resolver.scope` (every first-time miss) needs
    only three of its fields."""
    base = qname[: -len(zone)].rstrip(".") if zone != "." else qname.rstrip(".")
    if base in ("", "svc", "pod"):
        return ("apex", base, "", "", "", "", "", "", "", "", False)
    segs = base.split(".")
    kind_label = segs[-1]
    if kind_label not in ("svc", "pod"):
        return ("invalid", kind_label, "", "", "", "", "", BAD_TYPE_LABEL, "", "", False)
    rest = segs[:-1]
    if len(rest) > 4:
        # A zone value may span labels (topology values may hold dots): all of them.
        if (
            zonal
            and not multicluster
            and kind_label == "svc"
            and rest[-3] == ZONE_LABEL
            and rest[-4] in (PIN, PREFER)
            and all(rest[:-4])
        ):
            return (
                "zonal", kind_label, rest[-1], rest[-2], "", "", "", "", "",
                ".".join(rest[:-4]), rest[-4] == PREFER,
            )  # fmt: skip
        return ("invalid", kind_label, "", "", "", "", "", TOO_MANY_LABELS, "", "", False)
    if multicluster and len(rest) == 4 and not (rest[0][:1] == "_" or rest[1][:1] == "_"):
        return ("endpoint", kind_label, rest[3], rest[2], rest[0], "", "", "", rest[1], "", False)
    kind = _KINDS[len(rest) - 1]
    if kind == "service" and kind_label == "pod":
        kind = "pod"
    rest = [""] * (4 - len(rest)) + rest
    return (
        kind,
        kind_label,
        rest[3],
        rest[2],
        rest[1] if len(segs) == 4 else "",
        _strip_underscore(rest[0]) if len(segs) == 5 else "",
        _strip_underscore(rest[1]) if len(segs) == 5 else "",
        "",
        "",
        "",
        False,
    )


def _parse(qname: str, zone: str, zonal: bool = False, multicluster: bool = False) -> _Request:
    """The resolver's view of :func:`parse_name`: NameError_ for a name that cannot exist."""
    name = parse_name(qname, zone, zonal, multicluster)
    if name.kind == "invalid":
        raise NameError_
    r = _Request()
    if name.kind == "apex":
        return r
    r.pod_or_svc = name.pod_or_svc
    r.namespace = name.namespace
    r.service = name.service
    r.endpoint = name.endpoint
    r.port = name.port
    r.protocol = name.protocol
    r.cluster = name.cluster
    r.topology_zone = name.topology_zone
    r.prefer = name.prefer
    return r


def _match_port(want_port: str, port: str, want_proto: str, proto: str) -> bool:
    return (want_port == "" or want_port == port.lower()) and (
        want_proto == "" or want_proto == proto.lower()
    )


def service_entries(
    index: ServiceIndex, base: str, want_port: str, want_proto: str
) -> Iterator[tuple[str, int, str]]:
    """A headless service's own name ``base`` (or a port name of it): every ready
    endpoint address and port, in the order of the slices, each pointing at its host's
    name. One walk for the resolver and the compiled table's encoder."""
    targets: dict[str, str] = {}
    for ip, ports, host in index.entries():
        target = targets.get(host)
        if target is None:
            target = targets[host] = f"{host}.{base}"
        for port in ports:
            if _match_port(want_port, port.name, want_proto, port.protocol):
                yield ip, port.port, target


def endpoint_entries(
    index: ServiceIndex, host: str, target: str, want_port: str = "", want_proto: str = ""
) -> Iterator[tuple[str, int, str]]:
    """One endpoint name ``target`` (``<host>.<service>``), from the service's index."""
    for ip, ports, _ in index.host_entries(host):
        for port in ports:
            if _match_port(want_port, port.name, want_proto, port.protocol):
                yield ip, port.port, target


def endpoint_hostname(endpoint: objects.Endpoint, ip: str, pod_names: bool) -> str:
    """The label an endpoint is known by: its hostname, its pod's name, or its dashed IP."""
    if endpoint.hostname:
        return endpoint.hostname
    if pod_names and endpoint.target_name:
        return endpoint.target_name
    return names.dashed(ip)


Group = tuple[str, str]
"""What an answer depends on, for targeted invalidation: ``(namespace, service)`` for a
service (its slices included), ``(namespace, "")`` for a namespace's existence, and
:data:`ANY_CHANGE` for whatever any write may change."""
ANY_CHANGE: Group = ("", "")
KUBE_DNS: Group = ("kube-system", "kube-dns")
"""The Service whose addresses ``ns.dns.<zone>`` and the apex NS answer."""


IndexEntry = tuple[str, tuple[objects.EndpointPort, ...], str]
"""An endpoint address of a service index: (address, its slice's ports, host label)."""


class ServiceIndex:
    """One service's ready endpoints arranged for questions by name and by address.

    Built in one pass over the service's slices (O(its endpoints)), on first use, so an
    endpoint name or a PTR costs a dictionary lookup instead of a scan of every endpoint,
    and compiling a headless service is linear. Entries keep the scan order of the
    slices, so answers are exactly those of the scan.

    The entries are three parallel lists, a host's entries their positions (one int,
    or a tuple when it has several), an address's host labels one string (or a tuple):
    no container per endpoint for the garbage collector to walk (a 10,000-endpoint index
    of tuples and lists made every full collection, while it lived, slower by about ten
    milliseconds, each a stall of every query). A rebuild after some slices changed
    copies the entries of the slices that did not (the same objects) from the index it
    replaces, rather than unpacking every endpoint again.
    """

    __slots__ = (
        "_multi_address", "_multi_host", "_pod_names", "addresses", "bounds", "generation",
        "hosts", "ips", "labels", "owners", "ports", "publish", "slices",
    )  # fmt: skip

    def __init__(
        self,
        slices: Sequence[objects.EndpointSlice],
        publish: bool,
        pod_names: bool,
        generation: int,
    ) -> None:
        self.slices = tuple(slices)
        self.publish = publish
        self.generation = generation
        # Every (address, ports, host) of non-FQDN slices in scan order, the service's own
        # name's records (:meth:`entries`), as three lists.
        self.ips: list[str] = []
        self.ports: list[tuple[objects.EndpointPort, ...]] = []
        self.owners: list[str] = []
        self.bounds = [0]  # where each slice's entries start, then where the last ends
        # lower-cased host label -> the position(s) of its entries, FQDN slices left out
        # (findServices skips them): :meth:`host_entries`.
        self.hosts: dict[str, int | tuple[int, ...]] = {}
        # address -> lower-cased host label(s), FQDN slices included (as
        # serviceRecordForIP): :meth:`hosts_of`.
        self.addresses: dict[str, str | tuple[str, ...]] = {}
        # Every ready host label, FQDN slices included: the names the table compiles.
        self.labels: set[str] = set()
        self._pod_names = pod_names
        # While building: the hosts and addresses seen more than once, as lists.
        self._multi_host: dict[str, list[int]] = {}
        self._multi_address: dict[str, list[str]] = {}

    @classmethod
    def build(
        cls,
        slices: Sequence[objects.EndpointSlice],
        publish: bool,
        pod_names: bool,
        generation: int,
        previous: ServiceIndex | None = None,
    ) -> Iterator[ServiceIndex | None]:
        """Build it a slice per step (None), then hand it over: compiling a service of
        thousands of endpoints never holds the event loop for the whole pass. The
        entries of slices that ``previous`` (an older index of the service) holds as
        the same objects are copied from it."""
        index = cls(slices, publish, pod_names, generation)
        reuse: dict[int, int] = {}
        if previous is not None and (previous.publish, previous._pod_names) == (
            publish,
            pod_names,
        ):
            reuse = {id(eps): at for at, eps in enumerate(previous.slices)}
        for eps in index.slices:
            at = reuse.get(id(eps))
            if at is not None and previous is not None and eps.address_type != "FQDN":
                index._copy(previous, previous.bounds[at], previous.bounds[at + 1])
            else:
                index._add(eps)
            index.bounds.append(len(index.ips))
            yield None
        for host, positions in index._multi_host.items():
            index.hosts[host] = tuple(positions)
        for ip, hosts in index._multi_address.items():
            index.addresses[ip] = tuple(hosts)
        index._multi_host, index._multi_address = {}, {}
        yield index

    def entries(self) -> Iterator[IndexEntry]:
        """Every (address, ports, host) in scan order: the service's own name."""
        return zip(self.ips, self.ports, self.owners, strict=True)

    def host_entries(self, host: str) -> list[IndexEntry]:
        """The entries of one host label, in scan order."""
        found = self.hosts.get(host)
        if found is None:
            return []
        ips, ports, owners = self.ips, self.ports, self.owners
        if isinstance(found, int):
            return [(ips[found], ports[found], owners[found])]
        return [(ips[i], ports[i], owners[i]) for i in found]

    def hosts_of(self, ip: str) -> tuple[str, ...]:
        """The host labels of an address, in scan order."""
        found = self.addresses.get(ip)
        if found is None:
            return ()
        return (found,) if isinstance(found, str) else found

    def _note(self, ip: str, host: str, position: int) -> None:
        """Index one ready address of ``host``; a position of -1: an FQDN slice's."""
        self.labels.add(host)
        addresses = self.addresses
        if ip not in addresses:
            addresses[ip] = host
        else:
            more = self._multi_address.get(ip)
            if more is None:
                self._multi_address[ip] = [cast(str, addresses[ip]), host]
            else:
                more.append(host)
        if position < 0:
            return
        hosts = self.hosts
        if host not in hosts:
            hosts[host] = position
        else:
            again = self._multi_host.get(host)
            if again is None:
                self._multi_host[host] = [cast(int, hosts[host]), position]
            else:
                again.append(position)

    def _add(self, eps: objects.EndpointSlice) -> None:
        fqdn = eps.address_type == "FQDN"
        ports = eps.ports or _NO_PORTS
        publish, pod_names, note = self.publish, self._pod_names, self._note
        ips, all_ports, owners = self.ips, self.ports, self.owners
        for endpoint in eps.endpoints:
            if not (endpoint.ready or publish):
                continue
            for ip in endpoint.addresses:
                host = endpoint_hostname(endpoint, ip, pod_names).lower()
                if fqdn:
                    note(ip, host, -1)
                    continue
                note(ip, host, len(ips))
                ips.append(ip)
                all_ports.append(ports)
                owners.append(host)

    def _copy(self, previous: ServiceIndex, start: int, end: int) -> None:
        """The entries ``previous`` holds from ``start`` to ``end`` (one slice's)."""
        ips, owners, note = self.ips, self.owners, self._note
        base = len(ips)
        ips += previous.ips[start:end]
        self.ports += previous.ports[start:end]
        owners += previous.owners[start:end]
        for position in range(base, len(ips)):
            note(ips[position], owners[position], position)

    def current(self, slices: Sequence[objects.EndpointSlice], publish: bool, gen: int) -> bool:
        """Whether this index still describes these slices (unchanged objects)."""
        if publish != self.publish:
            return False
        if gen == self.generation:
            return True
        mine = self.slices
        return len(mine) == len(slices) and all(a is b for a, b in zip(mine, slices, strict=True))


_NO_PORTS = (objects.EndpointPort("", -1, ""),)
INDEXES = 1024
"""How many endpoint addresses the kept service indexes may hold between them.

An index costs about half a KiB per address. The compile builds one per headless service,
and first-use answers (a ClusterIP service's endpoint names, endpoint PTRs) one per service
asked; apart from a few of the same service asked in a row, the next use of an index is
after its slices changed, when it is rebuilt anyway. So the last ones built or used are kept
while their addresses add up to this many (about 70 services of 15 endpoints, 0.5 MiB), and
always the newest, however large: 512 whole indexes were 2.5-4 MiB of RSS at 10,000 Services
that only ever served the compile.
"""


class Resolver:
    """Answers one (name, type) from the store; see the module docstring."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        # Longest zone first, so a name matches its most specific zone.
        self.zones = sorted(settings.zones, key=len, reverse=True)
        self.multicluster = frozenset(settings.multicluster)
        """Zones answered from ServiceImports: the table compiles none of their names."""
        self._indexes: dict[tuple[str, str], ServiceIndex] = {}  # least recently used first
        self._kept = 0  # addresses in the kept indexes
        self.indexed = 0  # indexes built: one pass over a service's endpoints each

    def index(self, namespace: str, name: str, publish: bool) -> ServiceIndex:
        """The endpoint index of a service, rebuilt only when its slices changed."""
        for built in self.indexing(namespace, name, publish):
            if built is not None:
                return built
        raise AssertionError("indexing ends with the index")  # pragma: no cover

    def indexing(self, namespace: str, name: str, publish: bool) -> Iterator[ServiceIndex | None]:
        """:meth:`index` a slice per step: None until the last step, which gives the index."""
        slices = self.store.slices_of(namespace, name)
        key = (namespace, name)
        gen = self.store.generation
        found = self._indexes.get(key)
        if found is not None and found.current(slices, publish, gen):
            found.generation = gen
            self._keep(key, found)
            yield found
            return
        pod_names = self.settings.endpoint_pod_names
        for built in ServiceIndex.build(slices, publish, pod_names, gen, found):
            if built is None:
                yield None
                continue
            self._keep(key, built)
            self.indexed += 1
            yield built

    def _keep(self, key: tuple[str, str], index: ServiceIndex) -> None:
        """Make ``index`` the newest kept; drop the oldest beyond :data:`INDEXES` addresses."""
        kept = self._indexes
        old = kept.pop(key, None)
        if old is not None:
            self._kept -= len(old.addresses)
        kept[key] = index
        self._kept += len(index.addresses)
        while self._kept > INDEXES and len(kept) > 1:
            self._kept -= len(kept.pop(next(iter(kept))).addresses)

    def scope(self, qname: str, zone: str) -> tuple[bool, Group | None]:
        """Whether a name is missing by its structure alone, and what its answers depend on.

        ``(True, group)``: the name does not exist, whatever the type (NXDOMAIN, except
        NODATA for SOA and REFUSED for AXFR/IXFR, as :meth:`answer` says), as long as
        ``group`` does not change. ``(False, group)``: ask :meth:`answer`. A group of None
        depends on nothing in the store. These are parse.go's and findServices' rules in
        the order :meth:`_records` applies them; names the rules leave open (the apex,
        ``ns.dns``, ``dns-version``, reverse names) go to :meth:`answer`.
        """
        if _is_reverse(zone) or qname == zone or qname.endswith(".arpa."):
            return False, ANY_CHANGE
        if qname == "ns.dns." + zone:
            return False, KUBE_DNS
        multicluster = zone in self.multicluster
        # parse_name's fields without building a Name (a first-time miss pays for it).
        kind, pod_or_svc, namespace, service = _split(
            qname, zone, self.settings.zonal, multicluster
        )[:4]
        if kind == "invalid":
            if qname == "dns-version." + zone:
                return False, None
            return True, None
        if kind == "apex":
            return False, None  # svc.<zone>, pod.<zone>: NODATA
        if not self._exposed(namespace):
            return True, (namespace, "")
        if multicluster:
            # Only services are imported: pod names are NXDOMAIN here.
            if pod_or_svc == "pod":
                return True, None
            if not service:
                return False, (namespace, "")
            group = (namespace, IMPORTED + service)
            return self.store.get_import(namespace, service) is None, group
        if pod_or_svc == "pod":
            if self.settings.pods == "disabled":
                return True, None
            return False, ANY_CHANGE if self.settings.pods == "verified" else (namespace, "")
        if not service:
            return False, (namespace, "")
        if self.store.get_service(namespace, service) is None:
            return True, (namespace, service)
        return False, (namespace, service)

    # -- entry point ---------------------------------------------------------------

    def zone_of(self, qname: str) -> str | None:
        for zone in self.zones:
            if names.is_subdomain(qname, zone):
                return zone
        return None

    def answer(self, qname: str, zone: str, qtype: int) -> wire.Answer:
        """The full answer for ``qname`` (absolute, lower-case) inside ``zone``."""
        ttl = self.settings.ttl
        extra: list[wire.RR] = []
        try:
            if qtype == wire.A or qtype == wire.AAAA:
                records = self._address(qname, zone, qtype, [])
            elif qtype == wire.TXT:
                records = self._txt(qname, zone)
            elif qtype == wire.CNAME:
                records = self._cname(qname, zone)
            elif qtype == wire.PTR:
                records = self._ptr(qname, zone)
            elif qtype == wire.SRV:
                records, extra = self._srv(qname, zone)
            elif qtype == wire.SOA:
                # CoreDNS answers SOA at the apex only, and NODATA for any other name.
                records = [self.soa(zone)] if qname == zone else []
            elif qtype == wire.NS and qname == zone:
                records, extra = self._ns(zone)
            elif qtype == wire.ANY:
                # RFC 8482: a minimal answer; the name's existence decides the rcode.
                self._address(qname, zone, wire.A, [])
                records = [wire.RR(qname, wire.HINFO, ttl, wire.rdata_hinfo("RFC8482", ""))]
            elif qtype in (wire.AXFR, wire.IXFR):
                return wire.build(qname, wire.REFUSED, authoritative=False)
            else:
                # A fake A lookup tells NODATA from NXDOMAIN, as CoreDNS does.
                self._address(qname, zone, wire.A, [])
                records = []
        except NameError_:
            if any(names.is_subdomain(qname, z) for z in self.settings.fallthrough):
                return FALLTHROUGH
            rcode = wire.NXDOMAIN if self.store.synced else wire.SERVFAIL
            return wire.build(qname, rcode, authority=[self.soa(zone)])
        if not records:
            return wire.build(qname, wire.NOERROR, authority=[self.soa(zone)])
        answer = wire.build(qname, wire.NOERROR, records, additional=extra)
        if qtype in (wire.A, wire.AAAA) and records[-1].type == wire.CNAME:
            target = names.wire_to_text(records[-1].rdata)
            if not any(names.is_subdomain(target, z) for z in self.zones):
                answer.chase = target
        return answer

    def soa(self, zone: str) -> wire.RR:
        ttl = self.settings.ttl
        rdata = wire.rdata_soa(
            "ns.dns." + zone, "hostmaster." + zone, self.store.modified, 7200, 1800, 86400, ttl
        )
        return wire.RR(zone, wire.SOA, min(ttl, 300), rdata)

    # -- CoreDNS's Services / Records / findServices / findPods ----------------------

    def _exposed(self, namespace: str) -> bool:
        allowed = self.settings.namespaces
        return (not allowed or namespace in allowed) and self.store.has_namespace(namespace)

    def _services(self, qname: str, zone: str, qtype: int) -> list[_Entry]:
        if qname == "ns.dns." + zone:
            return [_Entry(ip, 0, "ns.dns." + zone) for ip in self._nameservers()]
        entries = self._records(qname, zone)
        if qtype == wire.SRV:
            entries = [e for e in entries if _host_type(e.host) != wire.CNAME]
        return entries

    def _nameservers(self) -> tuple[str, ...]:
        if self.settings.nameservers:
            return self.settings.nameservers
        dns_svc = self.store.get_service("kube-system", "kube-dns")
        if dns_svc is not None and not dns_svc.headless:
            return dns_svc.cluster_ips
        return ("127.0.0.1",)

    def _records(self, qname: str, zone: str) -> list[_Entry]:
        multicluster = zone in self.multicluster
        r = _parse(qname, zone, self.settings.zonal, multicluster)
        if not r.pod_or_svc:
            return []
        if _is_reverse(qname):
            raise NameError_
        if not self._exposed(r.namespace):
            raise NameError_
        if multicluster:
            if r.pod_or_svc == "pod":
                raise NameError_
            return self._find_imports(r, zone)
        if r.pod_or_svc == "pod":
            return self._pods(r, zone)
        return self._find_services(r, zone)

    def _pods(self, r: _Request, zone: str) -> list[_Entry]:
        if self.settings.pods == "disabled":
            raise NameError_
        if not r.service:
            return []
        ip = names.undashed(r.service)
        if ip is None:
            raise NameError_
        target = f"{r.service}.{r.namespace}.pod.{zone}"
        if self.settings.pods == "insecure":
            return [_Entry(ip, 0, target)]
        if not self.store.pod_has_ip(r.namespace, ip):
            raise NameError_
        return [_Entry(ip, 0, target)]

    def _find_services(self, r: _Request, zone: str) -> list[_Entry]:
        if not r.service:
            return []
        svc = self.store.get_service(r.namespace, r.service)
        if svc is None:
            raise NameError_
        base = f"{svc.name}.{svc.namespace}.svc.{zone}"
        slices = self.store.slices_of(svc.namespace, svc.name)
        if (
            self.settings.ignore_empty_service
            and not svc.is_external_name
            and not svc.headless
            and not any(self._ready(e, svc) for s in slices for e in s.endpoints)
        ):
            raise NameError_
        if r.topology_zone:
            # Zone-scoped names exist below headless services only.
            if not svc.headless or svc.is_external_name:
                raise NameError_
            return self._zonal(svc, base, r)
        if svc.is_external_name:
            # No endpoint, port or protocol labels exist below an ExternalName: a name
            # with any of them is NXDOMAIN, as CoreDNS's findServices skips the service.
            if r.endpoint or r.port or r.protocol or not svc.external_name:
                raise NameError_
            if _host_type(svc.external_name) != wire.CNAME:
                raise NameError_
            return [_Entry(svc.external_name, 0, base)]
        found: list[_Entry] = []
        if (svc.headless or r.endpoint) and self.settings.noendpoints:
            raise NameError_
        if r.endpoint:
            # One host label: from the service's index, in the order of the full scan.
            index = self.index(svc.namespace, svc.name, svc.publish_not_ready)
            target = f"{r.endpoint}.{base}"
            found = [
                _Entry(*e) for e in endpoint_entries(index, r.endpoint, target, r.port, r.protocol)
            ]
            if not found:
                raise NameError_
            return found
        if svc.headless:
            # Every ready endpoint, in the order of the slices (the index keeps it).
            index = self.index(svc.namespace, svc.name, svc.publish_not_ready)
            found = [_Entry(*e) for e in service_entries(index, base, r.port, r.protocol)]
            if not found:
                raise NameError_
            return found
        for sport in svc.ports:
            if not _match_port(r.port, sport.name, r.protocol, sport.protocol):
                continue
            for ip in svc.cluster_ips:
                found.append(_Entry(ip, sport.port, base))
        if not found:
            raise NameError_
        return found

    def _zonal(self, svc: objects.Service, base: str, r: _Request) -> list[_Entry]:
        """A headless service's endpoints in one topology zone (``zonal``).

        ``pin``: those endpoints, NODATA when the zone has none; ``prefer``: those, or
        every endpoint when the zone has none. SRV targets are the endpoints' own names.
        """
        pod_names = self.settings.endpoint_pod_names
        publish = svc.publish_not_ready
        local: list[_Entry] = []
        every: list[_Entry] = []
        for eps in self.store.slices_of(svc.namespace, svc.name):
            if eps.address_type == "FQDN":
                continue
            ports = eps.ports or _NO_PORTS
            for endpoint in eps.endpoints:
                if not (endpoint.ready or publish):
                    continue
                inside = endpoint.zone == r.topology_zone
                for ip in endpoint.addresses:
                    target = f"{endpoint_hostname(endpoint, ip, pod_names).lower()}.{base}"
                    for port in ports:
                        entry = _Entry(ip, port.port, target)
                        every.append(entry)
                        if inside:
                            local.append(entry)
        if local or not r.prefer:
            return local
        if not every:
            raise NameError_  # as the service's own name: no endpoint at all
        return every

    def _find_imports(self, r: _Request, zone: str) -> list[_Entry]:
        """CoreDNS's findMultiClusterServices: a ServiceImport's names in a multicluster zone.

        ClusterSetIP: the import's ``spec.ips``; Headless (or an endpoint name): the
        ready endpoints of the EndpointSlices labelled with the import's name, each
        known as ``<host>.<cluster>.<svc>.<ns>.svc.<zone>`` (Multi-Cluster Services DNS
        specification 1.0.0).
        """
        if not r.service:
            return []
        imp = self.store.get_import(r.namespace, r.service)
        if imp is None:
            raise NameError_
        base = f"{imp.name}.{imp.namespace}.svc.{zone}"
        slices = self.store.imported_slices_of(imp.namespace, imp.name)
        if (
            self.settings.ignore_empty_service
            and not imp.headless
            and not any(e.ready for s in slices for e in s.endpoints)
        ):
            raise NameError_
        found: list[_Entry] = []
        if imp.headless or r.endpoint:
            if self.settings.noendpoints:
                raise NameError_
            pod_names = self.settings.endpoint_pod_names
            for eps in slices:
                if eps.address_type == "FQDN":
                    continue
                cluster = eps.cluster.lower()
                if r.cluster and r.cluster != cluster:
                    continue
                ports = eps.ports or _NO_PORTS
                for endpoint in eps.endpoints:
                    if not endpoint.ready:
                        continue
                    for ip in endpoint.addresses:
                        host = endpoint_hostname(endpoint, ip, pod_names).lower()
                        if r.endpoint and r.endpoint != host:
                            continue
                        target = f"{host}.{cluster}.{base}" if cluster else f"{host}.{base}"
                        for port in ports:
                            if _match_port(r.port, port.name, r.protocol, port.protocol):
                                found.append(_Entry(ip, port.port, target))
            if not found:
                raise NameError_
            return found
        matched = False
        for port in imp.ports:
            if _match_port(r.port, port.name, r.protocol, port.protocol):
                matched = True
                found.extend(_Entry(ip, port.port, base) for ip in imp.ips)
        if not matched:
            raise NameError_
        return found

    @staticmethod
    def _ready(endpoint: objects.Endpoint, svc: objects.Service) -> bool:
        return endpoint.ready or svc.publish_not_ready

    # -- per-type lookups (plugin/backend_lookup.go) -----------------------------------

    def _apex_services(self, qname: str, zone: str, qtype: int) -> list[_Entry]:
        # checkForApex: "apex.dns.<zone>" never exists for kubernetes, so the apex reads as itself.
        return self._services(qname, zone, qtype)

    def _address(self, qname: str, zone: str, qtype: int, seen: list[str]) -> list[wire.RR]:
        ttl = self.settings.ttl
        records: list[wire.RR] = []
        dup: set[str] = set()
        for entry in self._apex_services(qname, zone, qtype):
            kind = _host_type(entry.host)
            if kind == wire.CNAME:
                target = names.fqdn(entry.host)
                if target == qname or len(seen) > 7 or target in seen:
                    continue
                cname = wire.RR(qname, wire.CNAME, ttl, wire.rdata_name(target))
                if names.is_subdomain(target, zone):
                    try:
                        chased = self._address(target, zone, qtype, [*seen, qname])
                    except NameError_:
                        continue
                    if chased:
                        records.append(cname)
                        records.extend(chased)
                    continue
                records.append(cname)
                continue
            if kind == qtype and entry.host not in dup:
                dup.add(entry.host)
                rdata = _address_rdata(entry.host)
                records.append(wire.RR(qname, qtype, ttl, rdata))
        return records

    def _txt(self, qname: str, zone: str) -> list[wire.RR]:
        base = qname[: -len(zone)].rstrip(".")
        if base == "dns-version":
            rdata = wire.rdata_txt(DNS_SCHEMA_VERSION)
            return [wire.RR(qname, wire.TXT, DNS_VERSION_TTL, rdata)]
        # No other TXT exists. CoreDNS answers NXDOMAIN here whenever Records() finds no
        # entries, even for svc.<zone> or a namespace, which exist; an RFC 8020 resolver
        # would then deny everything below them. Existence decides instead, as for A.
        self._address(qname, zone, wire.A, [])
        return []

    def _cname(self, qname: str, zone: str) -> list[wire.RR]:
        entries = self._services(qname, zone, wire.CNAME)
        if entries and _host_type(entries[0].host) == wire.CNAME:
            target = names.fqdn(entries[0].host)
            return [wire.RR(qname, wire.CNAME, self.settings.ttl, wire.rdata_name(target))]
        return []

    def _ptr(self, qname: str, zone: str) -> list[wire.RR]:
        ip = names.address_of_reverse(qname)
        if ip is None:
            self._records(qname, zone)
            return []
        targets = self._reverse(ip)
        if not targets:
            raise NameError_
        ttl = self.settings.ttl
        return [wire.RR(qname, wire.PTR, ttl, wire.rdata_name(t)) for t in targets]

    def _reverse(self, ip: str) -> list[str]:
        """serviceRecordForIP: the first service with this cluster IP, else every endpoint."""
        zone = self.settings.primary_zone
        limit = self.settings.namespaces
        for ns, name in self.store.services_with_ip(ip):
            if limit and not self._exposed(ns):
                continue
            return [f"{name}.{ns}.svc.{zone}"]
        targets: list[str] = []
        for ns, name in self.store.services_with_endpoint_ip(ip):
            if limit and not self._exposed(ns):
                continue
            svc = self.store.get_service(ns, name)
            publish = svc is not None and svc.publish_not_ready
            # The same endpoints the A records list: ready, or all when published.
            for host in self.index(ns, name, publish).hosts_of(ip):
                target = f"{host}.{name}.{ns}.svc.{zone}"
                if target not in targets:
                    targets.append(target)
        return targets

    def _srv(self, qname: str, zone: str) -> tuple[list[wire.RR], list[wire.RR]]:
        entries = self._services(qname, zone, wire.SRV)
        ttl = self.settings.ttl
        total = 100 * len(entries)
        records: list[wire.RR] = []
        extra: list[wire.RR] = []
        seen_srv: set[tuple[str, int]] = set()
        seen_addr: set[tuple[str, str]] = set()
        tails: dict[str, bytes] = {}
        for entry in entries:
            if entry.port == -1:
                continue
            weight = max(1, math.floor(100.0 / total * 100)) if total else 1
            kind = _host_type(entry.host)
            if (entry.target, entry.port) not in seen_srv:
                seen_srv.add((entry.target, entry.port))
                rdata = _SRV_FIXED.pack(0, weight, entry.port) + _name_wire(entry.target, tails)
                records.append(wire.RR(qname, wire.SRV, ttl, rdata))
            if (entry.target, entry.host) not in seen_addr:
                seen_addr.add((entry.target, entry.host))
                rdata = _address_rdata(entry.host)
                extra.append(wire.RR(entry.target, kind, ttl, rdata))
        return records, extra

    def _ns(self, zone: str) -> tuple[list[wire.RR], list[wire.RR]]:
        ttl = self.settings.ttl
        target = "ns.dns." + zone
        extra = []
        for ip in self._nameservers():
            kind, rdata = wire.rdata_address(ip)
            extra.append(wire.RR(target, kind, ttl, rdata))
        return [wire.RR(zone, wire.NS, ttl, wire.rdata_name(target))], extra
