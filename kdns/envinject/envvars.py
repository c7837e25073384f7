"""Kubelet's legacy service environment variables, reproduced rule for rule.

Applications written before cluster DNS read ``REDIS_MASTER_SERVICE_HOST`` and friends,
and they parse them exactly as kubelet writes them. So every rule here follows kubelet
(``pkg/kubelet/envvars`` for the variables of one service, ``getServiceEnvVarMap`` for
which services a pod sees) rather than what might look tidier; the only deliberate
difference is a fixed order where kubelet iterates a Go map (see :func:`for_pod`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from kdns.cluster import objects
from kdns.envinject import source

MASTER_NAMESPACE = "default"
"""kubelet's ``masterServiceNamespace``: where the API server's own Service lives."""

MASTER_SERVICES = frozenset({"kubernetes"})
"""Services of the master namespace every pod sees, even with service links off."""


SIZE_BUDGET = 128 * 1024
"""Bytes of injected environment per container above which the webhook warns.

What ``execve`` gets is bounded twice on Linux: each ``NAME=value`` string by
MAX_ARG_STRLEN (32 pages, 128 KiB), and argv plus envp together by a quarter of the
stack limit (2 MiB with the usual 8 MiB ``ulimit -s``), counting every string, its NUL
and an 8-byte pointer. Past that a container dies at start with E2BIG ("argument list
too long", kubernetes#84539), and the entrypoint's own arguments, the image's ENV and
the variables kubelet adds itself share the same room. 128 KiB, the historical ARG_MAX
(32 pages) that pre-2.6.23 kernels and many tools still assume, leaves most of the 2 MiB
to them and is reached at about 2,000 services' variables: a namespace that big should
name the services its pods need (``kdns.io/inject-services``), not inherit them all.
"""


@dataclass(frozen=True, slots=True)
class EnvVar:
    name: str
    value: str

    @property
    def exec_size(self) -> int:
        """What the variable costs ``execve``: ``NAME=value``, its NUL and its pointer."""
        return len(self.name.encode()) + len(self.value.encode()) + 2 + 8


def ip_is_set(service: objects.Service) -> bool:
    """kubelet's IsServiceIPSet: headless ("None") and unallocated ("") give nothing.

    Only ``spec.clusterIP`` counts, also for dual-stack services, because that is the
    one address kubelet writes; ExternalName services never have one.
    """
    ip = service.cluster_ip
    return ip not in ("", "None") and not service.is_external_name


def variable_name(name: str) -> str:
    """Service and port names become variable names: upper case, ``-`` to ``_``."""
    return name.replace("-", "_").upper()


def _host_port(ip: str, port: int) -> str:
    # Go's net.JoinHostPort: brackets only when the host contains a colon (IPv6).
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def from_service(service: objects.Service) -> list[EnvVar]:
    """The variables of one service, in kubelet's order (FromServices+makeLinkVariables)."""
    if not ip_is_set(service) or not service.ports:
        # A service with a cluster IP always has ports (API validation); kubelet would
        # index ports[0] without checking, we just give nothing.
        return []
    prefix = variable_name(service.name)
    ip = service.cluster_ip_as_written  # verbatim, as kubelet: "FD00::A" stays upper-case
    first = service.ports[0]
    out = [
        EnvVar(f"{prefix}_SERVICE_HOST", ip),
        EnvVar(f"{prefix}_SERVICE_PORT", str(first.port)),
    ]
    out.extend(
        EnvVar(f"{prefix}_SERVICE_PORT_{variable_name(p.name)}", str(p.port))
        for p in service.ports
        if p.name
    )
    for index, p in enumerate(service.ports):
        proto = p.protocol or "TCP"
        url = f"{proto.lower()}://{_host_port(ip, p.port)}"
        if index == 0:
            out.append(EnvVar(f"{prefix}_PORT", url))
        port_prefix = f"{prefix}_PORT_{p.port}_{proto.upper()}"
        out += [
            EnvVar(port_prefix, url),
            EnvVar(f"{port_prefix}_PROTO", proto.lower()),
            EnvVar(f"{port_prefix}_PORT", str(p.port)),
            EnvVar(f"{port_prefix}_ADDR", ip),
        ]
    return out


def from_services(services: Iterable[objects.Service]) -> list[EnvVar]:
    """Variables of many services, one name once: a later service's value wins.

    kubelet collects into a map (``m[name] = value``), so a name two services both
    produce keeps one value; a dict gives the same, with the first position kept.
    """
    merged: dict[str, str] = {}
    for service in services:
        for var in from_service(service):
            merged[var.name] = var.value
    return [EnvVar(name, value) for name, value in merged.items()]


def visible_services(
    src: source.ServiceSource,
    namespace: str,
    enable_service_links: bool,
    only: Collection[str] | None = None,
) -> list[objects.Service]:
    """Which services a pod of ``namespace`` sees, sorted by name.

    kubelet: the master services always; the pod's namespace when service links are on,
    where a same-named service (a ``kubernetes`` of its own) replaces the master one.
    ``only`` is kdns's narrowing annotation: just those names from the pod's namespace,
    whatever ``enableServiceLinks`` says, because naming a service is the opt-in (and a
    pod that narrows has links off, or kubelet would add them all anyway).
    """
    chosen: dict[str, objects.Service] = {}
    for name in MASTER_SERVICES:
        master = src.get_service(MASTER_NAMESPACE, name)
        if master is not None and ip_is_set(master):
            chosen[name] = master
    if only is not None or enable_service_links:
        for service in src.services_in(namespace):
            if (only is None or service.name in only) and ip_is_set(service):
                chosen[service.name] = service
    return [chosen[name] for name in sorted(chosen)]


def for_pod(
    src: source.ServiceSource,
    namespace: str,
    enable_service_links: bool,
    only: Collection[str] | None = None,
) -> list[EnvVar]:
    """The service variables kubelet would give a pod, in a fixed order.

    kubelet ranges over Go maps, so its order is random; ours is by service name, then
    kubelet's order within a service, so the same cluster gives the same patch.
    """
    return from_services(visible_services(src, namespace, enable_service_links, only))


def missing(src: source.ServiceSource, namespace: str, names: Iterable[str]) -> Sequence[str]:
    """Names from the annotation that give nothing, so the webhook can warn about typos."""
    out = []
    for name in names:
        service = src.get_service(namespace, name)
        if service is None and name in MASTER_SERVICES:
            service = src.get_service(MASTER_NAMESPACE, name)
        if service is None or not ip_is_set(service):
            out.append(name)
    return out
