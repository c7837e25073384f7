"""The seam for the cluster-mode webhook: a Service from an AdmissionReview in, fields out.

The webhook (HTTP, TLS, Lease election, JSONPatch) lives elsewhere; this function is
the whole decision, pure and synchronous, so it is tested without a server. It only
fills what the user left unset: never ``None`` (headless), never ExternalName, never
a Service that already names its addresses (the API server checks those itself).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kdns.ipam import dualstack


def request_of(service: Mapping[str, Any]) -> dualstack.Request:
    """Read the fields the rules need from a raw Service object (``request.object``)."""
    meta = service.get("metadata") or {}
    spec = service.get("spec") or {}
    cluster_ip = spec.get("clusterIP")
    cluster_ips = tuple(spec.get("clusterIPs") or ())
    if not cluster_ips and cluster_ip:
        cluster_ips = (cluster_ip,)  # the API server's defaulting: clusterIPs from clusterIP
    return dualstack.Request(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or meta.get("generateName") or ""),
        type=str(spec.get("type") or "ClusterIP"),
        cluster_ips=cluster_ips,
        ip_families=tuple(spec.get("ipFamilies") or ()),
        ip_family_policy=str(spec.get("ipFamilyPolicy") or ""),
        has_selector=bool(spec.get("selector")),
        cluster_ip=str(cluster_ip) if cluster_ip else None,
    )


def fields_to_set(
    pool: dualstack.Pool, service: Mapping[str, Any], preferred: Sequence[str] = ()
) -> dict[str, Any] | None:
    """The ``spec`` fields to add, or None when there is nothing to do.

    Raises :class:`errors.InvalidService` / :class:`errors.InternalError` with the API
    server's texts; the webhook decides whether to deny or to allow with a warning.
    """
    request = request_of(service)
    if request.type == "ExternalName" or request.cluster_ips:
        return None
    assignment = dualstack.allocate_preferring(pool, request, preferred)
    return {
        "clusterIP": assignment.cluster_ip,
        "clusterIPs": list(assignment.cluster_ips),
        "ipFamilies": list(assignment.ip_families),
        "ipFamilyPolicy": assignment.ip_family_policy,
    }
