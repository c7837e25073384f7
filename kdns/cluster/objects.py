"""The shrunk Kubernetes objects the cache holds.

Raw API objects are large (managedFields, annotations, status) and kdns keeps tens of
thousands of them, so every object is cut down at the informer boundary
(:mod:`kdns.cluster.shrink`) to the handful of fields DNS, the env injector and the ClusterIP
allocator read. The classes are frozen and slotted: cheap to keep, safe to share
between the cache, compiled answers and the webhooks, and comparable, so an update
that changes nothing DNS reads can be recognised and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    namespace: str
    name: str
    service: str  # the kubernetes.io/service-name label; "" when missing
    address_type: str  # IPv4, IPv6 or FQDN
    endpoints: tuple[Endpoint, ...]
    ports: tuple[EndpointPort, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Labels = ()


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
