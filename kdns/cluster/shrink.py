"""Raw Kubernetes objects (JSON dicts) -> the frozen objects of :mod:`kdns.cluster.objects`.

This is the informer boundary: both sources (the API server and the manifests folder)
pass every object through here, validation included, and drop the raw dict at once.
An object DNS could not serve correctly (a bad address, a missing name, a field of the
wrong JSON type) raises :class:`Invalid` with a message naming the field, so the source
can report and skip it. :class:`Invalid` is the only exception a shrinker raises for
any JSON value whatsoever (``tests/test_shrink_fuzz.py`` holds it to that): one
malformed object must never take the process down.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kdns import errors as kdns_errors
from kdns.cluster import objects

Raw = Mapping[str, Any]
T = TypeVar("T")

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_PROTOCOLS = ("TCP", "UDP", "SCTP")
_SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MC_SERVICE_NAME_LABEL = "multicluster.kubernetes.io/service-name"
MC_SOURCE_CLUSTER_LABEL = "multicluster.kubernetes.io/source-cluster"


class Invalid(kdns_errors.SourceError, ValueError):
    """The object cannot be served: the message says which field and why."""


_DATA_ERRORS = (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError,
                RecursionError)  # fmt: skip


def _boundary(fn: Callable[[Raw], T]) -> Callable[[Raw], T]:
    """Map any error a field of an unforeseen type still causes to :class:`Invalid`.

    The checks below name the field for every shape the fuzz test found; this is
    the backstop for the ones it has not, so that the contract holds regardless.
    """

    @functools.wraps(fn)
    def shrink(raw: Raw) -> T:
        try:
            return fn(raw)
        except Invalid:
            raise
        except _DATA_ERRORS as exc:
            raise Invalid(f"malformed object: {type(exc).__name__}: {exc}") from None

    return shrink


def _map(value: object, field: str) -> Raw:
    """A JSON object field; absent or null reads as empty."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Invalid(f"{field}: not a map")
    return value


def _seq(value: object, field: str) -> list[Any]:
    """A JSON array field; absent or null reads as empty."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise Invalid(f"{field}: not a list")
    return value


def _text(value: object, field: str) -> str:
    """A JSON string field; absent or null reads as empty."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Invalid(f"{field}: not a string")
    return value


def _meta(raw: Raw) -> Raw:
    if not isinstance(raw, Mapping):
        raise Invalid("not a JSON object")
    meta = raw.get("metadata")
    if not isinstance(meta, Mapping):
        raise Invalid("metadata: missing" if meta is None else "metadata: not a map")
    return meta


def _name(meta: Raw, pattern: re.Pattern[str] = _DNS1123_LABEL, what: str = "name") -> str:
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise Invalid(f"metadata.{what}: missing")
    if len(name) > 63 or not pattern.match(name):
        raise Invalid(f"metadata.{what}: {name!r} is not a valid DNS label")
    return name


def _namespace(meta: Raw) -> str:
    ns = meta.get("namespace") or "default"
    if not isinstance(ns, str) or len(ns) > 63 or not _DNS1123_LABEL.match(ns):
        raise Invalid(f"metadata.namespace: {ns!r} is not a valid DNS label")
    return sys.intern(ns)  # one string per namespace, however many objects it holds


def _labels(meta: Raw) -> objects.Labels:
    return _string_map(meta.get("labels"), "metadata.labels")


def _string_map(value: object, field: str) -> objects.Labels:
    """Labels (or a selector) as sorted pairs of interned strings, each pair shared
    (:func:`share`): label keys and most values repeat across a cluster's objects
    ("app.kubernetes.io/part-of": "team-3", a selector's value that is the service's
    own name), and decoded strings would be one copy per object, ~55 bytes each."""
    intern = sys.intern
    pairs = {intern(str(k)): intern(str(v)) for k, v in _map(value, field).items()}
    return tuple(share(pair) for pair in sorted(pairs.items()))


SHARED_MAX = 4096
"""How many distinct values :func:`share` remembers before it starts over."""
_SHARED: dict[Any, Any] = {}


def share(value: T) -> T:
    """One copy of an immutable value that many objects hold (a service's ports, a
    label pair, ``("IPv4",)``): at 10,000 Services and as many EndpointSlices, the
    identical port tuples alone were ~4 MiB of copies. Bounded: past
    :data:`SHARED_MAX` distinct values it forgets them all and starts over, so a
    cluster of unique values costs a bounded dictionary, never a growing one. Sharing
    changes no value, only how many copies of it exist."""
    found: T | None = _SHARED.get(value)
    if found is None:
        if len(_SHARED) >= SHARED_MAX:
            _SHARED.clear()
        _SHARED[value] = found = value
    return found


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_V4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}").fullmatch
"""Dotted-quad text already in the form ``str(ipaddress.ip_address(...))`` gives (no
leading zeros): returned as is, without ipaddress's parse and format (~3 µs, which
150,000 endpoints and as many pods pay at every list)."""


def _ip(text: object, field: str) -> str:
    if isinstance(text, str) and _CANONICAL_V4(text):
        return text
    try:
        return str(ipaddress.ip_address(str(text)))
    except ValueError:
        raise Invalid(f"{field}: {text!r} is not an IP address") from None


def _node_port(value: object, field: str) -> int:
    if value is None or value == 0:
        return 0
    return _port(value, field)


def _port(value: object, field: str, allow_missing: bool = False) -> int:
    if value is None and allow_missing:
        return -1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise Invalid(f"{field}: {value!r} is not a port number")
    return value


def _protocol(value: object, field: str) -> str:
    proto = value or "TCP"
    if not isinstance(proto, str) or proto not in _PROTOCOLS:
        raise Invalid(f"{field}: {proto!r} is not one of TCP, UDP, SCTP")
    return _PROTOCOLS[_PROTOCOLS.index(proto)]  # the constant, not a decoded copy


def _family(ip: str) -> str:
    return "IPv6" if ":" in ip else "IPv4"


@_boundary
def service(raw: Raw) -> objects.Service:
    meta = _meta(raw)
    name = _name(meta, _DNS1035)
    ns = _namespace(meta)
    spec = _map(raw.get("spec"), "spec")
    svc_type = _text(spec.get("type"), "spec.type") or "ClusterIP"
    if svc_type not in _SERVICE_TYPES:
        raise Invalid(f"spec.type: {svc_type!r} is not a service type")
    svc_type = _SERVICE_TYPES[_SERVICE_TYPES.index(svc_type)]
    cluster_ip = _text(spec.get("clusterIP"), "spec.clusterIP")
    cluster_ips = [
        _text(ip, f"spec.clusterIPs[{i}]")
        for i, ip in enumerate(
            _seq(spec.get("clusterIPs"), "spec.clusterIPs") or ([cluster_ip] if cluster_ip else [])
        )
    ]
    if cluster_ip and cluster_ips and cluster_ips[0] != cluster_ip:
        raise Invalid("spec.clusterIPs[0]: must match spec.clusterIP")
    if "None" in cluster_ips:
        if cluster_ips != ["None"]:
            raise Invalid("spec.clusterIPs: 'None' must be the only entry")
        ips: tuple[str, ...] = ("None",)
    else:
        ips = tuple(_ip(ip, f"spec.clusterIPs[{i}]") for i, ip in enumerate(cluster_ips))
        if len(ips) > 2 or (len(ips) == 2 and _family(ips[0]) == _family(ips[1])):
            raise Invalid("spec.clusterIPs: at most one address per IP family")
    external = ""
    if svc_type == "ExternalName":
        external = _text(spec.get("externalName"), "spec.externalName").rstrip(".").lower()
        if not external or len(external) > 253 or not _DNS1123_SUBDOMAIN.match(external):
            raise Invalid(f"spec.externalName: {external!r} is not a valid DNS name")
        ips = ()
    ports = []
    for i, port in enumerate(_seq(spec.get("ports"), "spec.ports")):
        if not isinstance(port, Mapping):
            raise Invalid(f"spec.ports[{i}]: not a map")
        number = _port(port.get("port"), f"spec.ports[{i}].port")
        target = port.get("targetPort")
        if target is None or target == 0:
            target = number
        elif not isinstance(target, int | str) or isinstance(target, bool):
            raise Invalid(f"spec.ports[{i}].targetPort: {target!r} is not a port")
        if isinstance(target, str) and target.isdigit():
            target = int(target)
        ports.append(
            objects.ServicePort(
                name=sys.intern(_text(port.get("name"), f"spec.ports[{i}].name")),
                port=number,
                protocol=_protocol(port.get("protocol"), f"spec.ports[{i}].protocol"),
                target_port=target,
                node_port=_node_port(port.get("nodePort"), f"spec.ports[{i}].nodePort"),
            )
        )
    selector = _string_map(spec.get("selector"), "spec.selector") or None
    families = tuple(
        sys.intern(_text(f, f"spec.ipFamilies[{i}]"))
        for i, f in enumerate(_seq(spec.get("ipFamilies"), "spec.ipFamilies"))
    )
    if not families and ips and ips != ("None",):
        families = tuple(_family(ip) for ip in ips)
    return objects.Service(
        namespace=ns,
        # Interned: the service's EndpointSlices name it (interned there too) and so,
        # often, do its labels and selector.
        name=sys.intern(name),
        type=svc_type,
        cluster_ips=ips,
        external_name=external,
        ports=share(tuple(share(p) for p in ports)),
        selector=selector,
        publish_not_ready=bool(spec.get("publishNotReadyAddresses")),
        ip_families=share(families),
        ip_family_policy=sys.intern(_text(spec.get("ipFamilyPolicy"), "spec.ipFamilyPolicy")),
        labels=_labels(meta),
        written_cluster_ip=cluster_ips[0] if ips and cluster_ips[0] != ips[0] else "",
    )


def _endpoint_ports(raw_ports: object, field: str) -> tuple[objects.EndpointPort, ...]:
    ports = []
    for i, port in enumerate(_seq(raw_ports, field)):
        if not isinstance(port, Mapping):
            raise Invalid(f"{field}[{i}]: not a map")
        ports.append(
            objects.EndpointPort(
                name=sys.intern(_text(port.get("name"), f"{field}[{i}].name")),
                port=_port(port.get("port"), f"{field}[{i}].port", allow_missing=True),
                protocol=_protocol(port.get("protocol"), f"{field}[{i}].protocol"),
            )
        )
    return share(tuple(share(p) for p in ports))


POD_NAMES = "pod_names"
NODE_NAMES = "node_names"
ZONES = "zones"
ALL_ENDPOINT_FIELDS = frozenset({POD_NAMES, NODE_NAMES, ZONES})
"""The optional fields of an endpoint: ``targetRef.name`` (read by ``endpoint_pod_names``
and ``kdns explain``), ``nodeName`` (read by ``kdns explain``) and ``zone`` (read by
``zonal``). DNS itself reads the addresses, readiness and hostnames, always kept."""


def endpoint_slice_keeping(fields: frozenset[str]) -> Callable[[Raw], objects.EndpointSlice]:
    """The EndpointSlice shrinker that keeps only these optional fields (of
    :data:`ALL_ENDPOINT_FIELDS`): a server without ``endpoint_pod_names`` does not pay
    for 150,000 pod names."""
    if fields >= ALL_ENDPOINT_FIELDS:
        return endpoint_slice

    @_boundary
    def shrink_slice(raw: Raw) -> objects.EndpointSlice:
        return _endpoint_slice(raw, fields)

    return shrink_slice


@_boundary
def endpoint_slice(raw: Raw) -> objects.EndpointSlice:
    """An EndpointSlice with every field kdns reads (see :func:`endpoint_slice_keeping`)."""
    return _endpoint_slice(raw, ALL_ENDPOINT_FIELDS)


def _endpoint_slice(raw: Raw, fields: frozenset[str]) -> objects.EndpointSlice:
    pod_names, node_names, zones = POD_NAMES in fields, NODE_NAMES in fields, ZONES in fields
    meta = _meta(raw)
    name = _name(meta, _DNS1123_SUBDOMAIN)
    ns = _namespace(meta)
    # Read for three keys, kept for none: not through _string_map's interning and
    # shared pairs, which would fill share()'s table with a pair per slice.
    labels = {str(k): str(v) for k, v in _map(meta.get("labels"), "metadata.labels").items()}
    address_type = raw.get("addressType")
    if address_type not in ("IPv4", "IPv6", "FQDN"):
        raise Invalid(f"addressType: {address_type!r} is not IPv4, IPv6 or FQDN")
    endpoints = []
    for i, ep in enumerate(_seq(raw.get("endpoints"), "endpoints")):
        if not isinstance(ep, Mapping):
            raise Invalid(f"endpoints[{i}]: not a map")
        addresses = _seq(ep.get("addresses"), f"endpoints[{i}].addresses")
        if not addresses:
            raise Invalid(f"endpoints[{i}].addresses: missing")
        if address_type == "FQDN":
            addrs = tuple(_text(a, f"endpoints[{i}].addresses[{j}]")
                          for j, a in enumerate(addresses))  # fmt: skip
        else:
            addrs = tuple(_ip(a, f"endpoints[{i}].addresses[{j}]") for j, a in enumerate(addresses))
            for j, addr in enumerate(addrs):
                if _family(addr) != address_type:
                    raise Invalid(f"endpoints[{i}].addresses[{j}]: {addr} is not {address_type}")
        ready = _map(ep.get("conditions"), f"endpoints[{i}].conditions").get("ready")
        hostname = _hostname(ep.get("hostname"), f"endpoints[{i}].hostname")
        # Checked whether kept or not, so the same objects are skipped either way.
        target = _pod_name(ep.get("targetRef"), f"endpoints[{i}].targetRef")
        node = _text(ep.get("nodeName"), f"endpoints[{i}].nodeName")
        zone = _text(ep.get("zone"), f"endpoints[{i}].zone")
        endpoints.append(
            objects.Endpoint(
                addresses=addrs,
                ready=ready is None or bool(ready),
                hostname=hostname,
                target_name=target if pod_names else "",
                node_name=node if node_names else "",
                zone=zone.lower() if zones else "",
            )
        )
    imported = labels.get(MC_SERVICE_NAME_LABEL, "")
    return objects.EndpointSlice(
        namespace=ns,
        name=name,
        service=labels.get(SERVICE_NAME_LABEL, ""),
        address_type=str(address_type),
        endpoints=tuple(endpoints),
        ports=_endpoint_ports(raw.get("ports"), "ports"),
        imported=imported,
        cluster=labels.get(MC_SOURCE_CLUSTER_LABEL, "") if imported else "",
    )


def _hostname(value: object, field: str) -> str:
    hostname = _text(value, field)
    if hostname and (len(hostname) > 63 or not _DNS1123_LABEL.match(hostname)):
        raise Invalid(f"{field}: {hostname!r} is not a valid DNS label")
    return hostname


def _pod_name(value: object, field: str) -> str:
    """The pod a targetRef names; "" when it refers to something else."""
    target = _map(value, field)
    return _text(target.get("name"), f"{field}.name") if target.get("kind") == "Pod" else ""


@_boundary
def endpoints_to_slices(raw: Raw) -> list[objects.EndpointSlice]:
    """A v1 Endpoints object as the EndpointSlice mirroring controller would mirror it.

    One slice per subset and address family, ports copied from the subset, ready
    addresses ready and notReadyAddresses not, hostnames and pod references kept.
    """
    meta = _meta(raw)
    name = _name(meta, _DNS1035)
    ns = _namespace(meta)
    slices = []
    for i, subset in enumerate(_seq(raw.get("subsets"), "subsets")):
        if not isinstance(subset, Mapping):
            raise Invalid(f"subsets[{i}]: not a map")
        ports = _endpoint_ports(subset.get("ports"), f"subsets[{i}].ports")
        by_family: dict[str, list[objects.Endpoint]] = {"IPv4": [], "IPv6": []}
        for key, ready in (("addresses", True), ("notReadyAddresses", False)):
            for j, addr in enumerate(_seq(subset.get(key), f"subsets[{i}].{key}")):
                field = f"subsets[{i}].{key}[{j}]"
                if not isinstance(addr, Mapping):
                    raise Invalid(f"{field}: not a map")
                ip = _ip(addr.get("ip"), f"{field}.ip")
                by_family[_family(ip)].append(
                    objects.Endpoint(
                        addresses=(ip,),
                        ready=ready,
                        hostname=_hostname(addr.get("hostname"), f"{field}.hostname"),
                        target_name=_pod_name(addr.get("targetRef"), f"{field}.targetRef"),
                        node_name=_text(addr.get("nodeName"), f"{field}.nodeName"),
                    )
                )
        for fam, endpoints in by_family.items():
            if endpoints:
                slices.append(
                    objects.EndpointSlice(
                        namespace=ns,
                        name=f"{name}-mirror-{i}-{fam.lower()}",
                        service=name,
                        address_type=fam,
                        endpoints=tuple(endpoints),
                        ports=ports,
                    )
                )
    return slices


@_boundary
def service_import(raw: Raw) -> objects.ServiceImport:
    """A ServiceImport (multicluster.x-k8s.io/v1alpha1), for ``multicluster`` zones."""
    meta = _meta(raw)
    name = _name(meta, _DNS1035)
    ns = _namespace(meta)
    spec = _map(raw.get("spec"), "spec")
    kind = _text(spec.get("type"), "spec.type") or "ClusterSetIP"
    if kind not in ("ClusterSetIP", "Headless"):
        raise Invalid(f"spec.type: {kind!r} is not ClusterSetIP or Headless")
    ips = tuple(_ip(ip, f"spec.ips[{i}]") for i, ip in enumerate(_seq(spec.get("ips"), "spec.ips")))
    return objects.ServiceImport(
        namespace=ns,
        name=name,
        type=kind,
        ips=() if kind == "Headless" else ips,
        ports=_endpoint_ports(spec.get("ports"), "spec.ports"),
    )


@_boundary
def namespace(raw: Raw) -> objects.Namespace:
    meta = _meta(raw)
    return objects.Namespace(name=_name(meta), labels=_labels(meta))


@_boundary
def pod(raw: Raw) -> objects.Pod:
    meta = _meta(raw)
    name = _name(meta, _DNS1123_SUBDOMAIN)
    ns = _namespace(meta)
    spec = _map(raw.get("spec"), "spec")
    status = _map(raw.get("status"), "status")
    pod_ips = _seq(status.get("podIPs"), "status.podIPs")
    ips_raw = [p.get("ip") for p in pod_ips if isinstance(p, Mapping)]
    if not ips_raw and status.get("podIP"):
        ips_raw = [status["podIP"]]
    ips = tuple(_ip(ip, f"status.podIPs[{i}]") for i, ip in enumerate(ips_raw))
    ready = any(
        isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in _seq(status.get("conditions"), "status.conditions")
    )
    return objects.Pod(
        namespace=ns,
        name=name,
        ips=ips,
        labels=_labels(meta),
        ready=ready,
        terminating=bool(meta.get("deletionTimestamp")),
        hostname=_text(spec.get("hostname"), "spec.hostname"),
        subdomain=_text(spec.get("subdomain"), "spec.subdomain"),
        node_name=_text(spec.get("nodeName"), "spec.nodeName"),
        ports=_container_ports(spec.get("containers")),
        phase=_text(status.get("phase"), "status.phase"),
    )


@_boundary
def pod_address(raw: Raw) -> objects.PodAddress:
    """What ``pods verified`` needs of a pod: its namespace, name and addresses.

    The same checks as :func:`pod` for those fields, so the same pods are served.
    """
    meta = _meta(raw)
    name = _name(meta, _DNS1123_SUBDOMAIN)
    ns = _namespace(meta)
    status = _map(raw.get("status"), "status")
    pod_ips = _seq(status.get("podIPs"), "status.podIPs")
    ips_raw = [p.get("ip") for p in pod_ips if isinstance(p, Mapping)]
    if not ips_raw and status.get("podIP"):
        ips_raw = [status["podIP"]]
    ips = tuple(_ip(ip, f"status.podIPs[{i}]") for i, ip in enumerate(ips_raw))
    return objects.PodAddress(namespace=ns, name=name, ips=ips)


def _container_ports(containers: object) -> tuple[objects.ContainerPort, ...]:
    """The named ports that SRV and the webhook read; anything unusable is left out,
    as a pod's ports are informational (a pod never loses its address over them)."""
    ports = []
    for container in _seq(containers, "spec.containers"):
        found = container.get("ports") if isinstance(container, Mapping) else None
        for port in found if isinstance(found, list) else []:
            number = port.get("containerPort") if isinstance(port, Mapping) else None
            if isinstance(number, int) and not isinstance(number, bool):
                ports.append(
                    objects.ContainerPort(
                        name=str(port.get("name") or ""),
                        port=number,
                        protocol=str(port.get("protocol") or "TCP"),
                    )
                )
    return tuple(ports)
