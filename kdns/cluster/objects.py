"""The shrunk Kubernetes objects the cache holds.

Raw API objects are large (managedFields, annotations, status) and kdns keeps tens of
thousands of them, so every object is cut down at the informer boundary
(:mod:`kdns.cluster.shrink`) to the handful of fields DNS, the env injector and the ClusterIP
allocator read. The classes are frozen and slotted: cheap to keep, safe to share
between the cache, compiled answers and the webhooks, and comparable, so an update
that changes nothing DNS reads can be recognised and ignored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import socket
import struct
import sys
from dataclasses import dataclass
from typing import Any

Labels = tuple[tuple[str, str], ...]
"""Labels as a sorted tuple of pairs: hashable and comparable, unlike a dict."""


def labels_of(raw: dict[str, str] | None) -> Labels:
    return tuple(sorted((raw or {}).items()))


def labels_match(selector: Labels, labels: Labels) -> bool:
    """Equality-based selector semantics: every selector pair is present in labels."""
    have = dict(labels)
    return all(have.get(key) == value for key, value in selector)


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str
    port: int
    protocol: str  # "TCP", "UDP" or "SCTP", upper-case as the API stores it
    target_port: int | str  # a number, or a container port name to resolve on pods
    node_port: int = 0


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    type: str  # ClusterIP, NodePort, LoadBalancer, ExternalName
    cluster_ips: tuple[str, ...]  # spec.clusterIPs (or [spec.clusterIP]); () when unset
    external_name: str  # ExternalName target, without trailing dot; "" otherwise
    ports: tuple[ServicePort, ...]
    selector: Labels | None  # None: no selector (endpoints are managed by hand)
    publish_not_ready: bool
    ip_families: tuple[str, ...]  # "IPv4"/"IPv6", in spec order
    ip_family_policy: str  # SingleStack, PreferDualStack, RequireDualStack or ""
    labels: Labels = ()
    # spec.clusterIP as written, only when that differs from its canonical form in
    # cluster_ips ("FD00::A"): kubelet copies it verbatim into the service variables.
    written_cluster_ip: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def headless(self) -> bool:
        return self.cluster_ips == ("None",)

    @property
    def cluster_ip(self) -> str:
        """spec.clusterIP: the primary address, "None" for headless, "" when unset."""
        return self.cluster_ips[0] if self.cluster_ips else ""

    @property
    def is_external_name(self) -> bool:
        return self.type == "ExternalName"

    @property
    def cluster_ip_as_written(self) -> str:
        """spec.clusterIP in the API object's own spelling, for the webhook's variables."""
        return self.written_cluster_ip or self.cluster_ip


@dataclass(frozen=True, slots=True)
class EndpointPort:
    name: str
    port: int  # -1 when the slice lists no ports (a headless service without ports)
    protocol: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    addresses: tuple[str, ...]
    ready: bool  # conditions.ready, with "unknown" read as ready as the API documents
    hostname: str  # "" when unset
    target_name: str  # targetRef.name when it refers to a Pod, else ""
    node_name: str = ""
    zone: str = ""  # the topology zone (``zonal`` reads it), "" when unset or not kept


class EndpointSlice:
    """An EndpointSlice, its endpoints packed: no Python object per endpoint.

    At Kubernetes' limits a cluster has 150,000 endpoints; one frozen object per
    endpoint, with a tuple and a string per address, cost about 330 bytes each. Here a
    slice keeps its addresses as one ``bytes`` (4 or 16 bytes per address), readiness as
    a bit mask, and hostnames, pod names and node names as tuples of interned strings
    only when some endpoint has one (the shrinker leaves out the fields no feature
    reads). :attr:`endpoints` unpacks them into :class:`Endpoint` values on demand: the
    compiler and the slow path read them, never the hot path. Immutable, comparable and
    hashable on the packed form, so an update that changes nothing is recognised cheaply.
    """

    __slots__ = (
        "_counts",
        "_hostnames",
        "_nodes",
        "_not_ready",
        "_packed",
        "_targets",
        "_zones",
        "address_type",
        "cluster",
        "imported",
        "name",
        "namespace",
        "ports",
        "service",
    )  # fmt: skip

    namespace: str
    name: str
    service: str  # the kubernetes.io/service-name label; "" when missing
    # Multi-Cluster Services: the multicluster.kubernetes.io/service-name label (the
    # ServiceImport the slice serves) and source-cluster label; "" for a local slice.
    imported: str
    cluster: str
    address_type: str  # IPv4, IPv6 or FQDN
    ports: tuple[EndpointPort, ...]
    _packed: bytes | tuple[str, ...]  # packed addresses; FQDN slices keep the names
    # Addresses per endpoint: b"" when every endpoint has exactly one, bytes while each
    # count fits one (the API allows 100), a tuple for the odd manifest beyond that.
    _counts: bytes | tuple[int, ...]
    _not_ready: int  # bit i set: endpoint i is not ready
    _hostnames: tuple[str, ...]  # one per endpoint, () when none has one
    _targets: tuple[str, ...]  # pod names, () when none kept
    _nodes: tuple[str, ...]  # node names, () when none kept
    _zones: tuple[str, ...]  # topology zones, () when none kept

    def __init__(
        self,
        namespace: str,
        name: str,
        service: str,
        address_type: str,
        endpoints: tuple[Endpoint, ...] | list[Endpoint],
        ports: tuple[EndpointPort, ...],
        imported: str = "",
        cluster: str = "",
    ) -> None:
        intern = sys.intern
        put = object.__setattr__
        put(self, "namespace", intern(namespace))
        put(self, "name", name)
        put(self, "service", intern(service))
        put(self, "address_type", intern(address_type))
        put(self, "ports", ports)
        put(self, "imported", intern(imported))
        put(self, "cluster", intern(cluster))
        addresses = [a for e in endpoints for a in e.addresses]
        packed: bytes | tuple[str, ...] = tuple(addresses)
        if address_type != "FQDN":
            # A scoped IPv6 address ("fe80::1%eth0") does not pack: kept as text.
            with contextlib.suppress(OSError, ValueError):
                packed = b"".join(pack(a) for a in addresses)
        put(self, "_packed", packed)
        sizes = [len(e.addresses) for e in endpoints]
        counts: bytes | tuple[int, ...] = b""
        if any(size != 1 for size in sizes):
            counts = bytes(sizes) if max(sizes) < 256 else tuple(sizes)
        put(self, "_counts", counts)
        put(self, "_not_ready", sum(1 << i for i, e in enumerate(endpoints) if not e.ready))
        put(self, "_hostnames", _column([e.hostname for e in endpoints]))
        put(self, "_targets", _column([e.target_name for e in endpoints], intern=False))
        put(self, "_nodes", _column([e.node_name for e in endpoints]))
        put(self, "_zones", _column([e.zone for e in endpoints]))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"EndpointSlice is immutable: cannot set {name}")

    def _state(self) -> tuple[object, ...]:
        return (self.namespace, self.name, self.service, self.address_type, self.ports,
                self._packed, self._counts, self._not_ready, self._hostnames, self._targets,
                self._nodes, self._zones, self.imported, self.cluster)  # fmt: skip

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EndpointSlice):
            return NotImplemented
        return self._state() == other._state()

    def __hash__(self) -> int:
        return hash(self._state())

    def __repr__(self) -> str:
        return (f"EndpointSlice(namespace={self.namespace!r}, name={self.name!r}, "
                f"service={self.service!r}, address_type={self.address_type!r}, "
                f"endpoints={self.endpoints!r}, ports={self.ports!r})")  # fmt: skip

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def __len__(self) -> int:
        """How many endpoints."""
        if self._counts:
            return len(self._counts)
        if isinstance(self._packed, tuple):
            return len(self._packed)
        return len(self._packed) // (16 if self.address_type == "IPv6" else 4)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The endpoints, unpacked (a new tuple each time: keep it while you need it)."""
        n = len(self)
        if isinstance(self._packed, tuple):
            texts: tuple[str, ...] | list[str] = self._packed
        else:
            texts = unpack_all(self._packed, 16 if self.address_type == "IPv6" else 4)
        counts = self._counts or b"\x01" * n
        hostnames = self._hostnames or ("",) * n
        targets = self._targets or ("",) * n
        nodes = self._nodes or ("",) * n
        zones = self._zones or ("",) * n
        not_ready = self._not_ready
        out = []
        at = 0
        for i in range(n):
            count = counts[i]
            out.append(
                Endpoint(
                    tuple(texts[at : at + count]),
                    not (not_ready >> i) & 1,
                    hostnames[i],
                    targets[i],
                    nodes[i],
                    zones[i],
                )
            )
            at += count
        return tuple(out)

    def addresses(self) -> list[str]:
        """Every endpoint's addresses, in order, ready or not."""
        if isinstance(self._packed, tuple):
            return list(self._packed)
        return unpack_all(self._packed, 16 if self.address_type == "IPv6" else 4)

    def address_numbers(self) -> list[int | bytes]:
        """Every address as :func:`address_number` gives it; [] for an FQDN slice."""
        if self.address_type == "FQDN":
            return []
        data = self._packed
        if isinstance(data, tuple):
            return [address_number(a) for a in data]
        if self.address_type != "IPv6":
            return list(struct.unpack(f"!{len(data) // 4}I", data))
        return [_V6 | int.from_bytes(data[i : i + 16]) for i in range(0, len(data), 16)]

    def as_dict(self) -> dict[str, Any]:
        """The fields as :func:`dataclasses.asdict` gave them before the packing."""
        return {
            "namespace": self.namespace,
            "name": self.name,
            "service": self.service,
            "address_type": self.address_type,
            "endpoints": [dataclasses.asdict(e) for e in self.endpoints],
            "ports": [dataclasses.asdict(p) for p in self.ports],
            **({"imported": self.imported, "cluster": self.cluster} if self.imported else {}),
        }


def _column(values: list[str], intern: bool = True) -> tuple[str, ...]:
    if not any(values):
        return ()
    return tuple(sys.intern(v) for v in values) if intern else tuple(values)


def pack(ip: str) -> bytes:
    """An address in its packed form: 4 bytes for IPv4, 16 for IPv6."""
    return socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)


def address_key(ip: str) -> bytes:
    """What the store's address indexes are keyed by: the packed address, or the
    text itself for what does not pack (a scoped IPv6 address)."""
    try:
        return pack(ip)
    except (OSError, ValueError):
        return ip.encode()


_V6 = 1 << 128
"""Set in an IPv6 address's number, so ``::a.b.c.d`` never equals ``a.b.c.d``."""


def address_number(ip: str) -> int | bytes:
    """What the store's service and endpoint address indexes are keyed by: the packed
    address as a number (IPv6 with :data:`_V6` set), or the text's bytes for what does
    not pack (a scoped IPv6 address). A number is 28-32 bytes where the 4 packed
    bytes are 37: at 150,000 endpoint addresses, 1.2 MiB less for the same keys."""
    try:
        packed = pack(ip)
    except (OSError, ValueError):
        return ip.encode()
    return int.from_bytes(packed) | (_V6 if len(packed) == 16 else 0)


def unpack(packed: bytes) -> str:
    """The canonical text of a packed address, as ``str(ipaddress.ip_address(...))``."""
    if len(packed) == 4:
        return socket.inet_ntop(socket.AF_INET, packed)
    return str(ipaddress.IPv6Address(packed))


def unpack_all(data: bytes, size: int) -> list[str]:
    if size == 4:
        ntop = socket.inet_ntop
        return [ntop(socket.AF_INET, data[i : i + 4]) for i in range(0, len(data), 4)]
    v6 = ipaddress.IPv6Address
    return [str(v6(data[i : i + 16])) for i in range(0, len(data), 16)]


@dataclass(frozen=True, slots=True)
class ServiceImport:
    """A ServiceImport (multicluster.x-k8s.io/v1alpha1): a service of the ClusterSet,
    answered under a ``multicluster`` zone (``clusterset.local``)."""

    namespace: str
    name: str
    type: str  # ClusterSetIP or Headless
    ips: tuple[str, ...]  # spec.ips: the ClusterSet IPs, () for Headless
    ports: tuple[EndpointPort, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def headless(self) -> bool:
        return self.type == "Headless"


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Labels = ()


@dataclass(frozen=True, slots=True)
class PodAddress:
    """What ``pods verified`` keeps of a pod: the store indexes its addresses under its
    namespace and drops this at once (the name only tells updates and deletes apart)."""

    namespace: str
    name: str
    ips: tuple[str, ...]  # status.podIPs (or status.podIP)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class ContainerPort:
    name: str
    port: int
    protocol: str


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    ips: tuple[str, ...]  # status.podIPs (or status.podIP)
    labels: Labels
    ready: bool  # the Ready condition is True
    terminating: bool  # metadata.deletionTimestamp is set
    hostname: str  # spec.hostname
    subdomain: str  # spec.subdomain
    node_name: str
    ports: tuple[ContainerPort, ...]  # every container's ports, for named targetPorts
    phase: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)
