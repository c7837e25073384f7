"""Shared pieces of the envinject tests: a fake service cache and a Service builder.

No tests here; pytest imports it as a sibling module of the test files.
"""

from __future__ import annotations

from collections.abc import Sequence

from kdns.cluster import objects


def svc(
    namespace: str,
    name: str,
    ips: str | tuple[str, ...],
    *ports: tuple[str, int, str],
    type: str = "ClusterIP",
    external_name: str = "",
) -> objects.Service:
    """A Service; ``ips`` is spec.clusterIPs, ports are (name, port, protocol)."""
    cluster_ips = (ips,) if isinstance(ips, str) else ips
    families = tuple("IPv6" if ":" in ip else "IPv4" for ip in cluster_ips if ip != "None")
    return objects.Service(
        namespace=namespace,
        name=name,
        type=type,
        cluster_ips=cluster_ips if cluster_ips != ("",) else (),
        external_name=external_name,
        ports=tuple(objects.ServicePort(n, p, proto, p) for n, p, proto in ports),
        selector=(("app", name),),
        publish_not_ready=False,
        ip_families=families,
        ip_family_policy="SingleStack",
    )


KUBERNETES = svc("default", "kubernetes", "10.96.0.1", ("https", 443, "TCP"))

KUBERNETES_ENV = """
KUBERNETES_SERVICE_HOST=10.96.0.1
KUBERNETES_SERVICE_PORT=443
KUBERNETES_SERVICE_PORT_HTTPS=443
KUBERNETES_PORT=tcp://10.96.0.1:443
KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443
KUBERNETES_PORT_443_TCP_PROTO=tcp
KUBERNETES_PORT_443_TCP_PORT=443
KUBERNETES_PORT_443_TCP_ADDR=10.96.0.1
"""


def env_lines(text: str) -> list[tuple[str, str]]:
    """``NAME=value`` lines, as ``env`` prints them, to (name, value) pairs."""
    out = []
    for line in text.strip().splitlines():
        name, _, value = line.strip().partition("=")
        out.append((name, value))
    return out


class FakeServices:
    """The ServiceSource protocol over a dict, with the mutations a watch would make."""

    def __init__(self, *services: objects.Service, synced: bool = True) -> None:
        self.by_key = {s.key: s for s in services}
        self.synced = synced

    def services_in(self, namespace: str) -> Sequence[objects.Service]:
        return [s for (ns, _), s in sorted(self.by_key.items()) if ns == namespace]

    def get_service(self, namespace: str, name: str) -> objects.Service | None:
        return self.by_key.get((namespace, name))

    def put(self, service: objects.Service) -> None:
        self.by_key[service.key] = service

    def delete(self, namespace: str, name: str) -> None:
        del self.by_key[(namespace, name)]
