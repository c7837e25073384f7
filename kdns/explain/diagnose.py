"""Why a name answers what it answers: ``kdns explain`` as pure functions over a Store.

Every ClusterIP troubleshooting guide walks the same chapter by hand: does the name
resolve, to which Service, is anything behind it, does the selector match the pods,
is the namespace right, what does a pod's ``ndots:5`` search path turn the name into.
This module walks it from the same cache the server answers from. The answer itself
is never re-derived: each query goes through the real :meth:`Resolver.answer` and its
wire bytes are decoded, so what ``explain`` reports is what a client would receive.
The diagnosis around it (selectors, near misses, similar names) reads the Store.

The result is a tree of frozen dataclasses (:class:`Explanation`) so tests and scripts
assert facts (``finding.code``, counts, names), never wording; :func:`render` is the
short text for people and :func:`to_json` the same facts for scripts.

A running kdns is explained through :func:`snapshot` / :func:`from_snapshot`: the
server serializes its Store and Settings on its health port (:data:`SNAPSHOT_PATH`),
and the command rebuilds an identical Store locally, so both sides share one logic.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dnslib

from kdns.cluster import objects, resolver
from kdns.cluster.store import Store
from kdns.dns import names, rdatatype, wire
from kdns.dns import rcode as rcodes
from kdns.explain import render
from kdns.explain.model import (
    ANSWER,
    BAD_TYPE_LABEL,
    ENDPOINT_MISSING,
    EXTERNAL_NAME,
    FORWARDED,
    HEADLESS_READY_ONLY,
    LABEL_DIFFERS,
    MATCHES_IN_OTHER_NAMESPACE,
    NAMED_PORT_MISSING,
    NAMESPACE_LEVEL,
    NAMESPACE_MISSING,
    NAMESPACE_NOT_EXPOSED,
    NDOTS_AMPLIFICATION,
    NEEDS_SEARCH_PATH,
    NO_CLUSTER_IP,
    NO_DATA_OF_TYPE,
    NO_ENDPOINTS,
    NO_READY_ENDPOINTS,
    NO_SELECTOR,
    NODATA,
    NOT_SYNCED,
    NXDOMAIN,
    OUTSIDE_ZONE,
    POD_NAME_NOT_AN_IP,
    POD_NOT_FOUND,
    PODS_DISABLED,
    PORT_MISSING,
    PUBLISH_NOT_READY,
    QTYPES,
    REFUSED,
    SAME_NAME_ELSEWHERE,
    SELECTOR_MATCHES_NO_PODS,
    SERVFAIL,
    SERVICE_MISSING,
    SVC_POD_MIXUP,
    TOO_MANY_LABELS,
    WRONG_ZONE,
    EndpointInfo,
    ExplainError,
    Explanation,
    Finding,
    LabelDiff,
    MissingPort,
    NameParts,
    NearMiss,
    PortInfo,
    Query,
    Record,
    SearchPath,
    SelectorReport,
    ServiceInfo,
    SliceInfo,
)


def parse_type(text: str) -> int:
    """A record type by name (A, AAAA, SRV...) or number."""
    if text.isdigit():
        return int(text)
    try:
        return QTYPES[text.upper()]
    except KeyError:
        raise ExplainError(f"unknown record type {text!r}") from None


def default_type(name: str) -> int:
    """PTR for an address (its reverse name is asked), A for everything else."""
    try:
        ipaddress.ip_address(name.strip().rstrip("."))
    except ValueError:
        return wire.A
    return wire.PTR


type_name = rdatatype.to_text


def _records(rrs: Iterable[Any]) -> tuple[Record, ...]:
    out = []
    for rr in rrs:
        rtype = dnslib.QTYPE.get(rr.rtype, f"TYPE{rr.rtype}")
        out.append(Record(str(rr.rname).lower(), str(rtype), int(rr.ttl), str(rr.rdata)))
    return tuple(out)


def ask(res: resolver.Resolver, qname: str, qtype: int) -> Query:
    """One query through :meth:`Resolver.answer`, decoded from the bytes a client would get."""
    zone = res.zone_of(qname)
    tname = type_name(qtype)
    if zone is None:
        return Query(qname, tname, None, None, FORWARDED)
    ans = res.answer(qname, zone, qtype)
    if ans is resolver.FALLTHROUGH:
        return Query(qname, tname, zone, None, FORWARDED)
    message = (
        b"\x00\x00"
        + ans.flags[1][0]
        + ans.counts
        + names.to_wire(qname)
        + struct.pack("!HH", qtype, wire.CLASS_IN)
        + ans.body
    )
    parsed = dnslib.DNSRecord.parse(message)
    rcode = int(parsed.header.rcode)
    answers = _records(parsed.rr)
    if rcode == wire.NOERROR:
        outcome = ANSWER if answers else NODATA
    else:
        outcome = {wire.NXDOMAIN: NXDOMAIN, wire.SERVFAIL: SERVFAIL}.get(rcode, REFUSED)
    return Query(qname, tname, zone, rcodes.to_text(rcode), outcome, answers, _records(parsed.ar))


def search_list(namespace: str, zone: str) -> tuple[str, ...]:
    """The cluster part of the ``search`` line kubelet writes into a pod's resolv.conf."""
    zone = zone.rstrip(".")
    return (f"{namespace}.svc.{zone}", f"svc.{zone}", zone)


def candidates(name: str, search: Sequence[str], ndots: int) -> list[str]:
    """The names glibc's res_search tries, in order (``name`` as typed, not lower-cased).

    A trailing dot means absolute: asked once, as is. Fewer dots than ``ndots``: the
    search list first, the name as is last; otherwise as is first, then the list.
    """
    if name.endswith("."):
        return [name]
    expanded = [f"{name}.{domain}." for domain in search]
    if name.count(".") >= ndots:
        return [f"{name}.", *expanded]
    return [*expanded, f"{name}."]


def walk_search(
    res: resolver.Resolver, name: str, qtype: int, namespace: str, ndots: int
) -> SearchPath:
    """Send the candidates as glibc would: go on after NXDOMAIN, NODATA and SERVFAIL.

    A name that leaves the cluster zones is forwarded, and what upstream says is not in
    this cache. When a later candidate is a cluster name that answers (``web.default``
    asked as is first under a low ndots), upstream is taken to say NXDOMAIN and the walk
    goes on; otherwise the forwarded query is taken to answer, and glibc stops there.
    """
    search = search_list(namespace, res.settings.primary_zone)
    answers = [ask(res, names.fqdn(c), qtype) for c in candidates(name, search, ndots)]
    sent: list[Query] = []
    winner: int | None = None
    for i, query in enumerate(answers):
        sent.append(query)
        if query.outcome == ANSWER or (
            query.outcome == FORWARDED and not any(q.outcome == ANSWER for q in answers[i:])
        ):
            winner = i
            break
        if query.outcome == REFUSED:
            break  # any other error ends res_search
    return SearchPath(
        namespace=namespace,
        ndots=ndots,
        search=search,
        dots=name.rstrip(".").count("."),
        absolute=name.endswith("."),
        queries=tuple(sent),
        winner=winner,
        wasted=winner if winner is not None else len(sent),
    )


def parts_of(res: resolver.Resolver, qname: str) -> NameParts:
    """The resolver's own reading of the name (:func:`resolver.parse_name`), as a report."""
    zone = res.zone_of(qname)
    if zone is None:
        return NameParts(None, "outside")
    if zone.endswith("in-addr.arpa.") or zone.endswith("ip6.arpa."):
        return NameParts(zone, "reverse")
    name = resolver.parse_name(qname, zone)
    if name.kind == "invalid":
        if name.reason == BAD_TYPE_LABEL:
            return NameParts(zone, "invalid", problem=BAD_TYPE_LABEL, service=name.pod_or_svc)
        return NameParts(zone, "invalid", problem=name.reason)
    if name.kind == "apex":
        return NameParts(zone, "apex")
    if name.kind == "namespace":
        return NameParts(zone, "namespace", namespace=name.namespace)
    if name.kind in ("service", "pod"):
        return NameParts(zone, name.kind, namespace=name.namespace, service=name.service)
    if name.kind == "endpoint":
        return NameParts(
            zone, "endpoint", namespace=name.namespace, service=name.service, endpoint=name.endpoint
        )
    return NameParts(
        zone,
        "srv",
        namespace=name.namespace,
        service=name.service,
        port=name.port,
        protocol=name.protocol,
    )


def _pick_subject(res: resolver.Resolver, search: SearchPath) -> str:
    """Which of the queries the person most likely meant, to diagnose that one.

    The winner when the cluster answered it; else the first query shaped exactly like
    ``<service>.<namespace>.svc.<zone>`` whose namespace or service name the cache
    knows, or nearly knows (``web.prod``, not ``example.com``); else the name as typed
    when it left the zone (a wrong zone, an external name); else the first query.
    """
    queries = search.queries
    store = res.store
    if search.winner is not None and queries[search.winner].zone is not None:
        return queries[search.winner].qname
    for query in queries:
        if query.zone is None:
            continue
        parts = parts_of(res, query.qname)
        if parts.kind == "service" and (
            store.has_namespace(parts.namespace)
            or any(name == parts.service for _, name in store.services)
            or _similar(parts.namespace, store.namespaces)
        ):
            return query.qname
    for query in queries:
        if query.zone is None:
            return query.qname
    return queries[0].qname


def _ports(ports: Iterable[objects.ServicePort]) -> tuple[PortInfo, ...]:
    return tuple(PortInfo(p.name, p.port, p.protocol, p.target_port) for p in ports)


def _not_ready_reason(store: Store, namespace: str, endpoint: objects.Endpoint) -> str:
    if endpoint.ready:
        return ""
    pod = store.pods.get((namespace, endpoint.target_name)) if endpoint.target_name else None
    if pod is None:
        return "endpoint condition ready=false"
    if pod.terminating:
        return "pod is terminating"
    if pod.phase and pod.phase != "Running":
        return f"pod phase {pod.phase}"
    return "pod Ready condition is not True"


def service_info(store: Store, settings: resolver.Settings, svc: objects.Service) -> ServiceInfo:
    """The Service, its slices, and which endpoints take traffic and appear in DNS."""
    slices = []
    ready = not_ready = 0
    for eps in store.slices_of(svc.namespace, svc.name):
        endpoints = []
        for endpoint in eps.endpoints:
            if endpoint.ready:
                ready += 1
            else:
                not_ready += 1
            first = endpoint.addresses[0] if endpoint.addresses else ""
            label = resolver.endpoint_hostname(endpoint, first, settings.endpoint_pod_names)
            endpoints.append(
                EndpointInfo(
                    addresses=endpoint.addresses,
                    ready=endpoint.ready,
                    in_dns=svc.headless
                    and eps.address_type != "FQDN"
                    and (endpoint.ready or svc.publish_not_ready),
                    dns_label=label.lower(),
                    pod=endpoint.target_name,
                    node=endpoint.node_name,
                    reason=_not_ready_reason(store, svc.namespace, endpoint),
                )
            )
        ports = tuple(PortInfo(p.name, p.port, p.protocol, p.port) for p in eps.ports)
        slices.append(SliceInfo(eps.name, eps.address_type, ports, tuple(endpoints)))
    return ServiceInfo(
        namespace=svc.namespace,
        name=svc.name,
        type=svc.type,
        headless=svc.headless,
        cluster_ips=svc.cluster_ips,
        external_name=svc.external_name,
        ports=_ports(svc.ports),
        selector=dict(svc.selector) if svc.selector is not None else None,
        publish_not_ready=svc.publish_not_ready,
        slices=tuple(slices),
        ready_endpoints=ready,
        not_ready_endpoints=not_ready,
    )


def _pod_ready(pod: objects.Pod) -> bool:
    return pod.ready and not pod.terminating


def _near_miss(selector: objects.Labels, pod: objects.Pod) -> LabelDiff | None:
    """The one selector pair the pod gets wrong, when it gets exactly one wrong.

    A one-key selector "almost" matches every pod, so there only a value that looks
    like a typo of the wanted one counts (``frontnd`` for ``frontend``, not ``web``).
    """
    have = dict(pod.labels)
    wrong = [(k, v) for k, v in selector if have.get(k) != v]
    if len(wrong) != 1:
        return None
    key, wanted = wrong[0]
    actual = have.get(key)
    if len(selector) == 1 and (actual is None or not _similar(wanted, [actual])):
        return None
    return LabelDiff(key, wanted, actual)


def selector_report(store: Store, svc: objects.Service) -> SelectorReport | None:
    """How many pods the selector matches, how many are ready, and near misses."""
    if svc.selector is None or svc.is_external_name:
        return None
    in_ns = sorted(
        (p for p in store.pods.values() if p.namespace == svc.namespace), key=lambda p: p.name
    )
    matching = [p for p in in_ns if objects.labels_match(svc.selector, p.labels)]
    near = []
    for pod in in_ns:
        diff = _near_miss(svc.selector, pod)
        if diff is not None:
            near.append(NearMiss(pod.name, _pod_ready(pod), diff))
    missing = []
    for sport in svc.ports:
        if not isinstance(sport.target_port, str):
            continue
        lacking = tuple(
            p.name
            for p in matching
            if not any(
                c.name == sport.target_port and c.protocol == sport.protocol for c in p.ports
            )
        )
        if lacking:
            missing.append(MissingPort(sport.name, sport.target_port, sport.protocol, lacking))
    elsewhere = tuple(
        f"{p.namespace}/{p.name}"
        for p in sorted(store.pods.values(), key=lambda p: p.key)
        if p.namespace != svc.namespace and objects.labels_match(svc.selector, p.labels)
    )
    return SelectorReport(
        selector=dict(svc.selector),
        pods_known=bool(store.pods),
        pods_in_namespace=len(in_ns),
        matching=tuple(p.name for p in matching),
        matching_ready=tuple(p.name for p in matching if _pod_ready(p)),
        near_misses=tuple(near),
        missing_named_ports=tuple(missing),
        matching_elsewhere=elsewhere,
    )


@dataclass(slots=True)
class _Notes:
    """The diagnosis while it is being written; frozen into :class:`Explanation` at the end."""

    findings: list[Finding] = dataclasses.field(default_factory=list)
    suggestions: list[str] = dataclasses.field(default_factory=list)

    def add(self, code: str, message: str, problem: bool = True) -> None:
        self.findings.append(Finding(code, problem, message))

    def suggest(self, res: resolver.Resolver, name: str, qtype: int) -> bool:
        """Keep ``name`` as a suggestion only when it does answer."""
        name = names.fqdn(name)
        if name in self.suggestions or ask(res, name, qtype).outcome != ANSWER:
            return False
        self.suggestions.append(name)
        return True


def _similar(word: str, choices: Iterable[str]) -> tuple[str, ...]:
    return tuple(difflib.get_close_matches(word, sorted(set(choices)), n=3, cutoff=0.6))


def _diagnose_service(
    res: resolver.Resolver,
    svc: objects.Service,
    info: ServiceInfo,
    sel: SelectorReport | None,
    parts: NameParts,
    result: Query,
    notes: _Notes,
) -> None:
    """Why the Service answers as it does, and why traffic to it may still fail."""
    settings = res.settings
    if svc.is_external_name:
        notes.add(
            EXTERNAL_NAME,
            f"ExternalName service: a CNAME to {svc.external_name}; its addresses come"
            " from upstream DNS, not from the cluster",
            problem=False,
        )
        return
    if not svc.headless and not svc.cluster_ips:
        notes.add(NO_CLUSTER_IP, "the Service has no clusterIP yet: nothing to answer with")
    total = info.ready_endpoints + info.not_ready_endpoints
    if svc.headless:
        excluded = sum(1 for s in info.slices for e in s.endpoints if not e.ready and not e.in_dns)
        if svc.publish_not_ready:
            notes.add(
                PUBLISH_NOT_READY,
                "publishNotReadyAddresses: DNS lists every endpoint, ready or not",
                problem=False,
            )
        elif excluded:
            notes.add(
                HEADLESS_READY_ONLY,
                f"headless service: DNS lists ready endpoints only; {excluded} not-ready"
                " endpoint(s) left out (publishNotReadyAddresses is false)",
                problem=not info.ready_endpoints,
            )
    if total == 0:
        notes.add(
            NO_ENDPOINTS,
            "no endpoints: "
            + ("the headless name does not exist" if svc.headless else "connections will fail")
            + (
                " (ignore_empty_service makes the name NXDOMAIN)"
                if settings.ignore_empty_service and not svc.headless
                else ""
            ),
        )
    elif info.ready_endpoints == 0:
        notes.add(
            NO_READY_ENDPOINTS,
            f"none of the {total} endpoint(s) is ready: "
            + (
                "the headless name does not exist"
                if svc.headless and not svc.publish_not_ready
                else "connections will fail"
            ),
        )
    if svc.selector is None:
        if total == 0:
            notes.add(
                NO_SELECTOR,
                "no selector: endpoints are written by hand (an EndpointSlice labelled"
                f" kubernetes.io/service-name={svc.name}, or Endpoints named {svc.name});"
                " none exists",
            )
    elif sel is not None:
        _diagnose_selector(sel, info, notes)
    if parts.kind == "endpoint" and result.outcome != ANSWER:
        labels = sorted({e.dns_label for s in info.slices for e in s.endpoints if e.in_dns})
        notes.add(
            ENDPOINT_MISSING,
            f"no endpoint of {svc.name} is known by {parts.endpoint!r} in DNS; those that are:"
            f" {', '.join(labels) or 'none'}",
        )
    if parts.kind == "srv" and result.outcome != ANSWER:
        have = ", ".join(f"_{p.name}._{p.protocol.lower()}" for p in info.ports if p.name)
        notes.add(
            PORT_MISSING,
            f"no port named _{parts.port}._{parts.protocol}; the Service has: {have or 'none'}",
        )


def _diagnose_selector(sel: SelectorReport, info: ServiceInfo, notes: _Notes) -> None:
    if not sel.pods_known:
        return
    selector = render.format_selector(sel.selector)
    if not sel.matching:
        notes.add(
            SELECTOR_MATCHES_NO_PODS,
            f"selector {selector} matches none of the {sel.pods_in_namespace} pod(s)"
            f" in namespace {info.namespace}",
        )
    elif not sel.matching_ready:
        notes.add(
            NO_READY_ENDPOINTS,
            f"selector {selector} matches {len(sel.matching)} pod(s), none ready",
        )
    if not sel.matching_ready:
        for miss in sel.near_misses:
            actual = "missing" if miss.differs.actual is None else repr(miss.differs.actual)
            notes.add(
                LABEL_DIFFERS,
                f"pod {miss.pod} matches all but {miss.differs.key}:"
                f" wanted {miss.differs.wanted!r}, has {actual}",
            )
        if sel.matching_elsewhere:
            notes.add(
                MATCHES_IN_OTHER_NAMESPACE,
                f"matching pods in other namespaces (selectors never cross namespaces):"
                f" {', '.join(sel.matching_elsewhere)}",
            )
    for port in sel.missing_named_ports:
        notes.add(
            NAMED_PORT_MISSING,
            f"targetPort {port.target_port!r} (port {port.service_port or '-'}) is not a"
            f" {port.protocol} container port of: {', '.join(port.pods)}",
        )


def _diagnose_missing(
    res: resolver.Resolver, parts: NameParts, qtype: int, notes: _Notes
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """NXDOMAIN for a service name: the namespace, similar names, other namespaces."""
    store = res.store
    ns, name, zone = parts.namespace, parts.service, parts.zone or res.settings.primary_zone
    similar_ns: tuple[str, ...] = ()
    similar: tuple[str, ...] = ()
    elsewhere = tuple(sorted(k[0] for k in store.services if k[1] == name and k[0] != ns))
    if not store.has_namespace(ns):
        similar_ns = _similar(ns, store.namespaces)
        notes.add(
            NAMESPACE_MISSING,
            f"namespace {ns!r} does not exist"
            + (f"; similar: {', '.join(similar_ns)}" if similar_ns else ""),
        )
        for other in similar_ns:
            notes.suggest(res, f"{name}.{other}.svc.{zone}", qtype)
    elif res.settings.namespaces and ns not in res.settings.namespaces:
        notes.add(
            NAMESPACE_NOT_EXPOSED,
            f"namespace {ns!r} is not in the kubernetes plugin's `namespaces` list",
        )
    elif name and store.get_service(ns, name) is None:
        similar = _similar(name, (s.name for s in store.services_in(ns)))
        notes.add(
            SERVICE_MISSING,
            f"no Service {name!r} in namespace {ns}"
            + (f"; similar: {', '.join(similar)}" if similar else ""),
        )
        for other in similar:
            notes.suggest(res, f"{other}.{ns}.svc.{zone}", qtype)
    if name and elsewhere and store.get_service(ns, name) is None:
        notes.add(
            SAME_NAME_ELSEWHERE,
            f"a Service {name!r} exists in namespace(s): {', '.join(elsewhere)}",
        )
        for other in elsewhere:
            notes.suggest(res, f"{name}.{other}.svc.{zone}", qtype)
    ip = names.undashed(name) if name else None
    if ip is not None and store.pod_namespaces(ip):
        notes.add(SVC_POD_MIXUP, f"{name!r} is a pod address: pod names end in .pod.{zone}")
        notes.suggest(res, f"{name}.{ns}.pod.{zone}", qtype)
    return similar, elsewhere, similar_ns


def _diagnose_pod(res: resolver.Resolver, parts: NameParts, qtype: int, notes: _Notes) -> None:
    store, zone = res.store, parts.zone or res.settings.primary_zone
    if res.settings.pods == "disabled":
        notes.add(PODS_DISABLED, "pod names are disabled (kubernetes `pods disabled`)")
    elif names.undashed(parts.service) is None:
        notes.add(
            POD_NAME_NOT_AN_IP,
            f"pod names are dashed addresses (10-244-1-10.{parts.namespace}.pod.{zone});"
            f" {parts.service!r} is not one",
        )
    elif res.settings.pods == "verified":
        notes.add(
            POD_NOT_FOUND,
            f"`pods verified`: no pod in {parts.namespace} has address"
            f" {names.undashed(parts.service)}",
        )
    if store.get_service(parts.namespace, parts.service) is not None:
        notes.add(SVC_POD_MIXUP, f"{parts.service!r} is a Service: its name ends in .svc.{zone}")
        notes.suggest(res, f"{parts.service}.{parts.namespace}.svc.{zone}", qtype)


def _diagnose_outside(
    res: resolver.Resolver, subject: str, qtype: int, in_search: bool, notes: _Notes
) -> None:
    """A name outside every cluster zone: a wrong zone, a short name, or truly external."""
    zone = res.settings.primary_zone
    labels = subject.rstrip(".").split(".")
    for i, label in enumerate(labels):
        if label in ("svc", "pod") and i >= 2:
            used = ".".join(labels[i + 1 :])
            fixed = ".".join([*labels[: i + 1], zone.rstrip(".")]) + "."
            if used:
                notes.add(WRONG_ZONE, f"the name is under {used!r}, the cluster zone is {zone}")
            else:
                notes.add(WRONG_ZONE, f"the name stops before the cluster zone {zone}")
            notes.suggest(res, fixed, qtype)
            return
    notes.add(
        OUTSIDE_ZONE,
        f"outside the cluster zone {zone}: forwarded upstream, which this cache cannot answer",
        problem=False,
    )
    if in_search or len(labels) > 2:
        return
    store = res.store
    if len(labels) == 2 and store.get_service(labels[1], labels[0]) is not None:
        found = [labels[1]]
    else:
        found = sorted(k[0] for k in store.services if k[1] == labels[0])[:3]
    for ns in found:
        if notes.suggest(res, f"{labels[0]}.{ns}.svc.{zone}", qtype):
            notes.add(
                NEEDS_SEARCH_PATH,
                "a short name resolves only through a pod's search path"
                " (try --from-namespace NS) or written in full",
            )


def _diagnose_invalid(
    res: resolver.Resolver, subject: str, parts: NameParts, qtype: int, notes: _Notes
) -> None:
    zone = parts.zone or res.settings.primary_zone
    if parts.problem == BAD_TYPE_LABEL:
        notes.add(
            BAD_TYPE_LABEL,
            f"the label before {zone} must be 'svc' or 'pod', not {parts.service!r}",
        )
        base = subject[: -len(zone)].rstrip(".").split(".")
        for kind in difflib.get_close_matches(parts.service, ["svc", "pod"], n=2, cutoff=0.3):
            notes.suggest(res, ".".join([*base[:-1], kind]) + "." + zone, qtype)
    else:
        notes.add(
            TOO_MANY_LABELS,
            f"too many labels below {zone}: names are <service>.<namespace>.svc,"
            " <endpoint>.<service>.<namespace>.svc or _<port>._<proto>.<service>.<namespace>.svc",
        )


def explain(
    store: Store,
    settings: resolver.Settings,
    name: str,
    qtype: int = wire.A,
    from_namespace: str | None = None,
    ndots: int = 5,
) -> Explanation:
    """The whole explanation of ``name``; see the module docstring.

    Without ``from_namespace`` the name is asked as a fully qualified name; with it, as
    a pod in that namespace would ask it (search path, ``ndots``).
    """
    given = name.strip()
    if not given or given == ".":
        raise ExplainError("empty name")
    with contextlib.suppress(ValueError):  # an address stands for its reverse name
        given = names.reverse_name(str(ipaddress.ip_address(given.rstrip("."))))
    try:
        names.to_wire(given.lower())
    except (names.BadName, UnicodeError):
        raise ExplainError(f"{name!r} is not a valid domain name") from None
    res = resolver.Resolver(store, settings)
    notes = _Notes()
    search: SearchPath | None = None
    if from_namespace is not None:
        search = walk_search(res, given.lower(), qtype, from_namespace.lower(), ndots)
        subject = _pick_subject(res, search)
        result = search.queries[search.winner if search.winner is not None else -1]
        subject_query = next(q for q in search.queries if q.qname == subject)
    else:
        subject = names.fqdn(given)
        result = subject_query = ask(res, subject, qtype)
    if not store.synced:
        notes.add(NOT_SYNCED, "the cache has not synced yet: every cluster name is SERVFAIL")
    parts = parts_of(res, subject)
    if (
        from_namespace is not None
        and not store.has_namespace(from_namespace.lower())
        and parts.namespace != from_namespace.lower()
    ):
        notes.add(NAMESPACE_MISSING, f"the pod's namespace {from_namespace!r} does not exist")
    info: ServiceInfo | None = None
    sel: SelectorReport | None = None
    namespace_exists: bool | None = None
    similar: tuple[str, ...] = ()
    elsewhere: tuple[str, ...] = ()
    similar_ns: tuple[str, ...] = ()
    if parts.namespace:
        namespace_exists = store.has_namespace(parts.namespace)
    svc = None
    if parts.kind in ("service", "endpoint", "srv"):
        svc = store.get_service(parts.namespace, parts.service)
    elif parts.kind == "reverse":
        ip = names.address_of_reverse(subject)
        if ip is not None:
            owners = store.services_with_ip(ip) or store.services_with_endpoint_ip(ip)
            svc = store.get_service(*owners[0]) if owners else None
    if svc is not None:
        info = service_info(store, settings, svc)
        sel = selector_report(store, svc)
        _diagnose_service(res, svc, info, sel, parts, subject_query, notes)
    elif parts.kind in ("service", "endpoint", "srv", "namespace"):
        similar, elsewhere, similar_ns = _diagnose_missing(res, parts, qtype, notes)
    elif parts.kind == "pod":
        if subject_query.outcome != ANSWER:
            _diagnose_pod(res, parts, qtype, notes)
    elif parts.kind == "outside":
        _diagnose_outside(res, subject, qtype, search is not None, notes)
    elif parts.kind == "invalid":
        _diagnose_invalid(res, subject, parts, qtype, notes)
    if parts.kind in ("namespace", "apex") and subject_query.outcome == NODATA:
        notes.add(
            NAMESPACE_LEVEL,
            f"{subject} exists but holds no records; services are"
            f" <service>.<namespace>.svc.{parts.zone}",
            problem=False,
        )
    elif subject_query.outcome == NODATA:
        notes.add(
            NO_DATA_OF_TYPE,
            f"{subject} exists but has no {type_name(qtype)} records",
        )
    if (
        search is not None
        and search.wasted
        and search.winner is not None
        and (result.outcome == ANSWER or parts.kind == "outside")
    ):
        notes.add(
            NDOTS_AMPLIFICATION,
            f"{search.wasted} quer{'y' if search.wasted == 1 else 'ies'} before the one that"
            f" answers ({search.dots} dot(s) < ndots {search.ndots}); a trailing dot"
            f" ({result.qname}) asks it at once; getaddrinfo sends A and AAAA for each",
            problem=False,
        )
    return Explanation(
        name=name,
        qtype=type_name(qtype),
        zones=settings.zones,
        subject=subject,
        parts=parts,
        result=result,
        resolves=result.outcome == ANSWER,
        search=search,
        namespace_exists=namespace_exists,
        service=info,
        selector=sel,
        similar_services=similar,
        same_name_in=elsewhere,
        similar_namespaces=similar_ns,
        suggestions=tuple(notes.suggestions),
        findings=tuple(notes.findings),
    )
