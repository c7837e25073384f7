"""Raw Kubernetes objects (JSON dicts) -> the frozen objects of :mod:`kdns.objects`.

This is the informer boundary: both sources (the API server and the manifests folder)
pass every object through here, validation included, and drop the raw dict at once.
An object DNS could not serve correctly (a bad address, a missing name) raises
:class:`Invalid` with a message naming the field, so the source can report and skip it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from kdns import objects

Raw = Mapping[str, Any]

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_PROTOCOLS = ("TCP", "UDP", "SCTP")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class Invalid(ValueError):
    """The object cannot be served: the message says which field and why."""


def _meta(raw: Raw) -> Raw:
    meta = raw.get("metadata")
    if not isinstance(meta, Mapping):
        raise Invalid("metadata: missing")
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
    return ns


def _labels(meta: Raw) -> objects.Labels:
    labels = meta.get("labels") or {}
    if not isinstance(labels, Mapping):
        raise Invalid("metadata.labels: not a map")
    return objects.labels_of({str(k): str(v) for k, v in labels.items()})


def _ip(text: object, field: str) -> str:
    try:
        return str(ipaddress.ip_address(str(text)))
    except ValueError:
        raise Invalid(f"{field}: {text!r} is not an IP address") from None


def _port(value: object, field: str, allow_missing: bool = False) -> int:
    if value is None and allow_missing:
        return -1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise Invalid(f"{field}: {value!r} is not a port number")
    return value


def _protocol(value: object, field: str) -> str:
    proto = value or "TCP"
    if proto not in _PROTOCOLS:
        raise Invalid(f"{field}: {proto!r} is not one of TCP, UDP, SCTP")
    return str(proto)


def _family(ip: str) -> str:
    return "IPv6" if ":" in ip else "IPv4"


def service(raw: Raw) -> objects.Service:
    meta = _meta(raw)
    name = _name(meta, _DNS1035)
    ns = _namespace(meta)
    spec = raw.get("spec") or {}
    svc_type = spec.get("type") or "ClusterIP"
    if svc_type not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        raise Invalid(f"spec.type: {svc_type!r} is not a service type")
    cluster_ip = spec.get("clusterIP") or ""
    cluster_ips = [
        str(ip) for ip in (spec.get("clusterIPs") or ([cluster_ip] if cluster_ip else []))
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
        external = str(spec.get("externalName") or "").rstrip(".").lower()
        if not external or len(external) > 253 or not _DNS1123_SUBDOMAIN.match(external):
            raise Invalid(f"spec.externalName: {external!r} is not a valid DNS name")
        ips = ()
    ports = []
    for i, port in enumerate(spec.get("ports") or []):
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
                name=str(port.get("name") or ""),
                port=number,
                protocol=_protocol(port.get("protocol"), f"spec.ports[{i}].protocol"),
                target_port=target,
                node_port=int(port.get("nodePort") or 0),
            )
        )
    selector_raw = spec.get("selector")
    selector = (
        objects.labels_of({str(k): str(v) for k, v in selector_raw.items()})
        if isinstance(selector_raw, Mapping) and selector_raw
        else None
    )
    families = tuple(str(f) for f in spec.get("ipFamilies") or ())
    if not families and ips and ips != ("None",):
        families = tuple(_family(ip) for ip in ips)
    return objects.Service(
        namespace=ns,
        name=name,
        type=svc_type,
        cluster_ips=ips,
        external_name=external,
        ports=tuple(ports),
        selector=selector,
        publish_not_ready=bool(spec.get("publishNotReadyAddresses")),
        ip_families=families,
        ip_family_policy=str(spec.get("ipFamilyPolicy") or ""),
        labels=_labels(meta),
        written_cluster_ip=cluster_ips[0] if ips and cluster_ips[0] != ips[0] else "",
    )


def _endpoint_ports(raw_ports: object, field: str) -> tuple[objects.EndpointPort, ...]:
    if raw_ports is not None and not isinstance(raw_ports, list):
        raise Invalid(f"{field}: not a list")
    ports = []
    for i, port in enumerate(raw_ports or []):
        if not isinstance(port, Mapping):
            raise Invalid(f"{field}[{i}]: not a map")
        ports.append(
            objects.EndpointPort(
                name=str(port.get("name") or ""),
                port=_port(port.get("port"), f"{field}[{i}].port", allow_missing=True),
                protocol=_protocol(port.get("protocol"), f"{field}[{i}].protocol"),
            )
        )
    return tuple(ports)


def endpoint_slice(raw: Raw) -> objects.EndpointSlice:
    meta = _meta(raw)
    name = _name(meta, _DNS1123_SUBDOMAIN)
    ns = _namespace(meta)
    labels = dict(_labels(meta))
    address_type = raw.get("addressType")
    if address_type not in ("IPv4", "IPv6", "FQDN"):
        raise Invalid(f"addressType: {address_type!r} is not IPv4, IPv6 or FQDN")
    endpoints = []
    for i, ep in enumerate(raw.get("endpoints") or []):
        if not isinstance(ep, Mapping):
            raise Invalid(f"endpoints[{i}]: not a map")
        addresses = ep.get("addresses") or []
        if not addresses:
            raise Invalid(f"endpoints[{i}].addresses: missing")
        if address_type == "FQDN":
            addrs = tuple(str(a) for a in addresses)
        else:
            addrs = tuple(_ip(a, f"endpoints[{i}].addresses[{j}]") for j, a in enumerate(addresses))
            for j, addr in enumerate(addrs):
                if _family(addr) != address_type:
                    raise Invalid(f"endpoints[{i}].addresses[{j}]: {addr} is not {address_type}")
        conditions = ep.get("conditions") or {}
        ready = conditions.get("ready")
        hostname = str(ep.get("hostname") or "")
        if hostname and (len(hostname) > 63 or not _DNS1123_LABEL.match(hostname)):
            raise Invalid(f"endpoints[{i}].hostname: {hostname!r} is not a valid DNS label")
        target = ep.get("targetRef") or {}
        endpoints.append(
            objects.Endpoint(
                addresses=addrs,
                ready=ready is None or bool(ready),
                hostname=hostname,
                target_name=str(target.get("name") or "") if target.get("kind") == "Pod" else "",
                node_name=str(ep.get("nodeName") or ""),
            )
        )
    return objects.EndpointSlice(
        namespace=ns,
        name=name,
        service=labels.get(SERVICE_NAME_LABEL, ""),
        address_type=str(address_type),
        endpoints=tuple(endpoints),
        ports=_endpoint_ports(raw.get("ports"), "ports"),
    )


def endpoints_to_slices(raw: Raw) -> list[objects.EndpointSlice]:
    """A v1 Endpoints object as the EndpointSlice mirroring controller would mirror it.

    One slice per subset and address family, ports copied from the subset, ready
    addresses ready and notReadyAddresses not, hostnames and pod references kept.
    """
    meta = _meta(raw)
    name = _name(meta, _DNS1035)
    ns = _namespace(meta)
    slices = []
    for i, subset in enumerate(raw.get("subsets") or []):
        if not isinstance(subset, Mapping):
            raise Invalid(f"subsets[{i}]: not a map")
        ports = _endpoint_ports(subset.get("ports"), f"subsets[{i}].ports")
        by_family: dict[str, list[objects.Endpoint]] = {"IPv4": [], "IPv6": []}
        for key, ready in (("addresses", True), ("notReadyAddresses", False)):
            for j, addr in enumerate(subset.get(key) or []):
                field = f"subsets[{i}].{key}[{j}]"
                if not isinstance(addr, Mapping):
                    raise Invalid(f"{field}: not a map")
                ip = _ip(addr.get("ip"), f"{field}.ip")
                target = addr.get("targetRef") or {}
                hostname = str(addr.get("hostname") or "")
                if hostname and (len(hostname) > 63 or not _DNS1123_LABEL.match(hostname)):
                    raise Invalid(f"{field}.hostname: {hostname!r} is not a valid DNS label")
                by_family[_family(ip)].append(
                    objects.Endpoint(
                        addresses=(ip,),
                        ready=ready,
                        hostname=hostname,
                        target_name=str(target.get("name") or "")
                        if target.get("kind") == "Pod"
                        else "",
                        node_name=str(addr.get("nodeName") or ""),
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


def namespace(raw: Raw) -> objects.Namespace:
    meta = _meta(raw)
    return objects.Namespace(name=_name(meta), labels=_labels(meta))


def pod(raw: Raw) -> objects.Pod:
    meta = _meta(raw)
    name = _name(meta, _DNS1123_SUBDOMAIN)
    ns = _namespace(meta)
    spec = raw.get("spec") or {}
    status = raw.get("status") or {}
    ips_raw = [p.get("ip") for p in status.get("podIPs") or [] if isinstance(p, Mapping)]
    if not ips_raw and status.get("podIP"):
        ips_raw = [status["podIP"]]
    ips = tuple(_ip(ip, f"status.podIPs[{i}]") for i, ip in enumerate(ips_raw))
    ready = any(
        isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    ports = []
    for container in spec.get("containers") or []:
        for port in container.get("ports") or [] if isinstance(container, Mapping) else []:
            if isinstance(port, Mapping) and isinstance(port.get("containerPort"), int):
                ports.append(
                    objects.ContainerPort(
                        name=str(port.get("name") or ""),
                        port=int(port["containerPort"]),
                        protocol=str(port.get("protocol") or "TCP"),
                    )
                )
    return objects.Pod(
        namespace=ns,
        name=name,
        ips=ips,
        labels=_labels(meta),
        ready=ready,
        terminating=bool(meta.get("deletionTimestamp")),
        hostname=str(spec.get("hostname") or ""),
        subdomain=str(spec.get("subdomain") or ""),
        node_name=str(spec.get("nodeName") or ""),
        ports=tuple(ports),
        phase=str(status.get("phase") or ""),
    )
