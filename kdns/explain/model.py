"""The facts ``kdns explain`` reports: outcome and finding codes, and the frozen dataclasses.

Tests and scripts assert these (``finding.code``, counts, names), never wording.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdns import errors as kdns_errors
from kdns.cluster import resolver
from kdns.dns import wire

QTYPES = {
    "A": wire.A,
    "AAAA": wire.AAAA,
    "SRV": wire.SRV,
    "CNAME": wire.CNAME,
    "PTR": wire.PTR,
    "TXT": wire.TXT,
    "SOA": wire.SOA,
    "NS": wire.NS,
    "ANY": wire.ANY,
}


# Outcomes of one query.
ANSWER = "answer"  # NOERROR with records: the stub resolver stops here


NODATA = "nodata"  # the name exists, no records of this type


NXDOMAIN = "nxdomain"


SERVFAIL = "servfail"


REFUSED = "refused"


FORWARDED = "forwarded"  # outside the cluster zones (or fallthrough): upstream decides


# Finding codes: stable identifiers scripts and tests match on.
NOT_SYNCED = "not-synced"


OUTSIDE_ZONE = "outside-zone"


WRONG_ZONE = "wrong-zone"


NEEDS_SEARCH_PATH = "needs-search-path"


BAD_TYPE_LABEL = resolver.BAD_TYPE_LABEL


TOO_MANY_LABELS = resolver.TOO_MANY_LABELS


SVC_POD_MIXUP = "svc-pod-mixup"


NAMESPACE_LEVEL = "namespace-level-name"


NAMESPACE_MISSING = "namespace-missing"


NAMESPACE_NOT_EXPOSED = "namespace-not-exposed"


SERVICE_MISSING = "service-missing"


SIMILAR_SERVICES = "similar-services"


SAME_NAME_ELSEWHERE = "same-name-elsewhere"


EXTERNAL_NAME = "external-name"


NO_CLUSTER_IP = "no-cluster-ip"


NO_ENDPOINTS = "no-endpoints"


NO_READY_ENDPOINTS = "no-ready-endpoints"


HEADLESS_READY_ONLY = "headless-ready-only"


PUBLISH_NOT_READY = "publish-not-ready"


NO_SELECTOR = "no-selector"


SELECTOR_MATCHES_NO_PODS = "selector-matches-no-pods"


LABEL_DIFFERS = "label-differs"


MATCHES_IN_OTHER_NAMESPACE = "matches-in-other-namespace"


NAMED_PORT_MISSING = "named-port-missing"


ENDPOINT_MISSING = "endpoint-missing"


PORT_MISSING = "port-missing"


NO_DATA_OF_TYPE = "nodata"


PODS_DISABLED = "pods-disabled"


POD_NAME_NOT_AN_IP = "pod-name-not-an-ip"


POD_NOT_FOUND = "pod-not-found"


NDOTS_AMPLIFICATION = "ndots-amplification"


class ExplainError(kdns_errors.KdnsError, ValueError):
    """The question cannot be asked: a malformed name or an unknown type."""


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded resource record; ``text`` is its zone-file line."""

    name: str
    type: str
    ttl: int
    data: str

    @property
    def text(self) -> str:
        return f"{self.name} {self.ttl} IN {self.type} {self.data}"


@dataclass(frozen=True, slots=True)
class Query:
    """One question and what kdns answers it (``rcode`` None when it goes upstream)."""

    qname: str
    qtype: str
    zone: str | None
    rcode: str | None
    outcome: str
    answers: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()


@dataclass(frozen=True, slots=True)
class SearchPath:
    """What glibc's stub resolver in a pod sends for the name, in order, until one answers."""

    namespace: str
    ndots: int
    search: tuple[str, ...]
    dots: int
    absolute: bool
    queries: tuple[Query, ...]  # only those sent: the list stops at the winner
    winner: int | None  # index into queries; None when every query failed
    wasted: int  # queries sent before the winner (or all of them when none won)


@dataclass(frozen=True, slots=True)
class PortInfo:
    name: str
    port: int
    protocol: str
    target_port: int | str


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """An endpoint, whether it takes traffic (``ready``) and whether DNS lists it."""

    addresses: tuple[str, ...]
    ready: bool
    in_dns: bool  # headless answers list it (ready, or publishNotReadyAddresses)
    dns_label: str  # the <label>.<svc>.<ns>.svc.<zone> it is known by
    pod: str
    node: str
    reason: str  # why it is not ready, when known ("" when ready)


@dataclass(frozen=True, slots=True)
class SliceInfo:
    name: str
    address_type: str
    ports: tuple[PortInfo, ...]
    endpoints: tuple[EndpointInfo, ...]


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    namespace: str
    name: str
    type: str
    headless: bool
    cluster_ips: tuple[str, ...]
    external_name: str
    ports: tuple[PortInfo, ...]
    selector: dict[str, str] | None
    publish_not_ready: bool
    slices: tuple[SliceInfo, ...]
    ready_endpoints: int
    not_ready_endpoints: int


@dataclass(frozen=True, slots=True)
class LabelDiff:
    key: str
    wanted: str
    actual: str | None  # None: the pod lacks the label


@dataclass(frozen=True, slots=True)
class NearMiss:
    """A pod that matches every selector key but one."""

    pod: str
    ready: bool
    differs: LabelDiff


@dataclass(frozen=True, slots=True)
class MissingPort:
    """A named targetPort that some selected pods' containers do not declare."""

    service_port: str
    target_port: str
    protocol: str
    pods: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SelectorReport:
    """How the Service's selector meets the pods the cache knows."""

    selector: dict[str, str]
    pods_known: bool  # False: the source does not hold pods, the counts mean nothing
    pods_in_namespace: int
    matching: tuple[str, ...]
    matching_ready: tuple[str, ...]
    near_misses: tuple[NearMiss, ...]
    missing_named_ports: tuple[MissingPort, ...]
    matching_elsewhere: tuple[str, ...]  # "namespace/pod": selectors never cross namespaces


@dataclass(frozen=True, slots=True)
class NameParts:
    """The name read as CoreDNS's parse.go reads it, with the reason when it cannot exist."""

    zone: str | None
    kind: str  # service endpoint srv pod namespace apex reverse outside invalid
    namespace: str = ""
    service: str = ""  # for pods: the dashed-IP label
    endpoint: str = ""
    port: str = ""
    protocol: str = ""
    problem: str = ""  # invalid names: BAD_TYPE_LABEL or TOO_MANY_LABELS


@dataclass(frozen=True, slots=True)
class Finding:
    """One fact of the diagnosis; ``problem`` False for plain information."""

    code: str
    problem: bool
    message: str


@dataclass(frozen=True, slots=True)
class Explanation:
    """Everything ``kdns explain`` found out about one name."""

    name: str  # as given
    qtype: str
    zones: tuple[str, ...]
    subject: str  # the fully qualified name the diagnosis is about
    parts: NameParts
    result: Query  # what the client finally gets (the winner of the search path, if any)
    resolves: bool
    search: SearchPath | None
    namespace_exists: bool | None
    service: ServiceInfo | None
    selector: SelectorReport | None
    similar_services: tuple[str, ...]
    same_name_in: tuple[str, ...]  # namespaces holding a Service of the same name
    similar_namespaces: tuple[str, ...]
    suggestions: tuple[str, ...]  # names that do resolve and were probably meant
    findings: tuple[Finding, ...]

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]
