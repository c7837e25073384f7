"""EndpointSlices derived from Pods, as the EndpointSlice controller derives them.

Used by the manifests source, where no controller runs: a developer writes a Service
with a selector and some Pods, and DNS follows as it would in a cluster. The rules are
the controller's (``pkg/controller/endpointslice`` and ``endpointslice/util``): pods of
the service's namespace whose labels match the selector, that have an IP and are not
finished; ready when the Ready condition holds and the pod is not terminating, or when
the service publishes not-ready addresses; the endpoint hostname when the pod's
``spec.hostname`` is set and its ``spec.subdomain`` names the service; named target
ports resolved per pod against its container ports, so pods that resolve them
differently land in different slices.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from kdns.cluster import objects
from kdns.dns.names import family


def _resolve_port(port: objects.ServicePort, pod: objects.Pod) -> int | None:
    if isinstance(port.target_port, int):
        return port.target_port
    for cport in pod.ports:
        if cport.name == port.target_port and cport.protocol == port.protocol:
            return cport.port
    return None


def slices_for(svc: objects.Service, pods: Iterable[objects.Pod]) -> list[objects.EndpointSlice]:
    """The slices the controller would publish for ``svc``; [] when it has no selector."""
    if svc.selector is None or svc.is_external_name:
        return []
    groups: dict[tuple[str, tuple[objects.EndpointPort, ...]], list[objects.Endpoint]] = {}
    for pod in sorted(pods, key=lambda p: p.name):
        if pod.namespace != svc.namespace or not pod.ips:
            continue
        if pod.phase in ("Succeeded", "Failed"):
            continue
        if not objects.labels_match(svc.selector, pod.labels):
            continue
        ports = []
        for sport in svc.ports:
            number = _resolve_port(sport, pod)
            if number is not None:
                ports.append(objects.EndpointPort(sport.name, number, sport.protocol))
        ready = (pod.ready and not pod.terminating) or svc.publish_not_ready
        hostname = pod.hostname if pod.hostname and pod.subdomain == svc.name else ""
        wanted = set(svc.ip_families) if svc.ip_families else {"IPv4", "IPv6"}
        for ip in pod.ips:
            fam = "IPv6" if family(ip) == 6 else "IPv4"
            if fam not in wanted:
                continue
            endpoint = objects.Endpoint(
                addresses=(ip,),
                ready=ready,
                hostname=hostname,
                target_name=pod.name,
                node_name=pod.node_name,
            )
            groups.setdefault((fam, tuple(ports)), []).append(endpoint)
    slices = []
    for (fam, slice_ports), endpoints in sorted(groups.items(), key=lambda kv: repr(kv[0])):
        digest = hashlib.sha256(repr((fam, slice_ports)).encode()).hexdigest()[:5]
        slices.append(
            objects.EndpointSlice(
                namespace=svc.namespace,
                name=f"{svc.name}-{fam.lower()}-{digest}",
                service=svc.name,
                address_type=fam,
                endpoints=tuple(endpoints),
                ports=slice_ports,
            )
        )
    return slices
