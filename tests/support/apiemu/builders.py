"""Minimal valid API objects for tests: valid enough for the Python client's models.

The generated models of the ``kubernetes`` client reject objects missing required
fields (an EndpointSlice without ``addressType``, a port without ``port``), so tests
that hand-write dicts fail for the wrong reason. These builders cover the common
shapes; anything else is a plain dict away.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Obj = dict[str, Any]
Port = tuple[str, int, str]
"""(name, port, protocol)."""


def _meta(name: str, namespace: str | None, labels: Mapping[str, str] | None) -> Obj:
    meta: Obj = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    return meta


def namespace(name: str, labels: Mapping[str, str] | None = None) -> Obj:
    all_labels = {"kubernetes.io/metadata.name": name} | dict(labels or {})
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(name, None, all_labels),
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}  # fmt: skip


def service(
    name: str,
    namespace: str = "default",
    cluster_ip: str | None = "10.96.0.10",
    ports: Iterable[Port] = (("http", 80, "TCP"),),
    selector: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    type_: str = "ClusterIP",
    external_name: str | None = None,
) -> Obj:
    """``cluster_ip="None"`` makes a headless Service; ``type_="ExternalName"`` needs
    ``external_name``."""
    spec: Obj = {"type": type_}
    if type_ == "ExternalName":
        spec["externalName"] = external_name
    else:
        spec["ports"] = [{"name": n, "port": p, "protocol": proto, "targetPort": p}
                         for n, p, proto in ports]  # fmt: skip
        if cluster_ip is not None:
            spec["clusterIP"] = cluster_ip
            spec["clusterIPs"] = [cluster_ip]
            spec["ipFamilies"] = ["IPv6" if ":" in cluster_ip else "IPv4"]
    if selector:
        spec["selector"] = dict(selector)
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, namespace, labels),
            "spec": spec}  # fmt: skip


def endpoint_slice(
    service_name: str,
    namespace: str = "default",
    addresses: Iterable[str] = ("10.244.0.10",),
    ports: Iterable[Port] = (("http", 80, "TCP"),),
    ready: bool = True,
    name: str | None = None,
    hostname: str | None = None,
    address_type: str = "IPv4",
) -> Obj:
    endpoints = []
    for address in addresses:
        endpoint: Obj = {"addresses": [address], "conditions": {"ready": ready}}
        if hostname is not None:
            endpoint["hostname"] = hostname
        endpoints.append(endpoint)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": _meta(name or f"{service_name}-abcde", namespace,
                          {"kubernetes.io/service-name": service_name,
                           "endpointslice.kubernetes.io/managed-by":
                               "endpointslice-controller.k8s.io"}),
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
    }  # fmt: skip


def pod(
    name: str,
    namespace: str = "default",
    ip: str | None = "10.244.0.10",
    labels: Mapping[str, str] | None = None,
    phase: str = "Running",
) -> Obj:
    status: Obj = {"phase": phase}
    if ip is not None:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _meta(name, namespace, labels),
            "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
            "status": status}  # fmt: skip


def service_import(
    name: str,
    namespace: str = "default",
    ips: Iterable[str] = (),
    ports: Iterable[Port] = (("http", 80, "TCP"),),
    type_: str = "ClusterSetIP",
    clusters: Iterable[str] = (),
) -> Obj:
    """A ServiceImport (multicluster.x-k8s.io/v1alpha1), as an MCS controller writes it."""
    spec: Obj = {
        "type": type_,
        "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
    }
    if list(ips):
        spec["ips"] = list(ips)
    return {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
            "metadata": _meta(name, namespace, None), "spec": spec,
            "status": {"clusters": [{"cluster": c} for c in clusters]}}  # fmt: skip


def imported_slice(
    service_name: str,
    cluster: str,
    namespace: str = "default",
    addresses: Iterable[str] = ("10.245.0.10",),
    ports: Iterable[Port] = (("http", 80, "TCP"),),
    hostname: str | None = None,
    name: str | None = None,
) -> Obj:
    """An EndpointSlice an MCS controller imports from ``cluster`` for a ServiceImport."""
    obj = endpoint_slice(service_name, namespace, addresses, ports, hostname=hostname,
                         name=name or f"{service_name}-{cluster}")  # fmt: skip
    obj["metadata"]["labels"] = {
        "multicluster.kubernetes.io/service-name": service_name,
        "multicluster.kubernetes.io/source-cluster": cluster,
        "endpointslice.kubernetes.io/managed-by": "mcs-controller.example",
    }
    return obj
