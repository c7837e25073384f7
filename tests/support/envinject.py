"""Shared pieces of the envinject tests: a fake service cache, a Service builder, and a
running kdns with both webhooks on one TLS listener.

No tests here; pytest imports it as a sibling module of the test files.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from kdns.cluster import objects
from tests.support import apiemu
from tests.support.process import ROOT, KdnsCommand, free_port


def kdns_with_webhooks(emu: apiemu.EmulatorThread, tmp_path: Path) -> tuple[KdnsCommand, int, Path]:
    """kdns from a Corefile reading the emulator, with envinject over TLS (certificates
    from ``kdns envinject certs``) and clusterip 10.96.0.0/28 in cluster mode, started as
    a pod in kube-system. Returns the process, the webhook port and the certificates."""
    certs = tmp_path / "tls"
    subprocess.run(
        [sys.executable, "-m", "kdns", "envinject", "certs", "--out", str(certs)],
        check=True,
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    kubeconfig = emu.write_kubeconfig(tmp_path / "kubeconfig")
    dns_port, hook_port = free_port(), free_port()
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        f""".:{dns_port} {{
    kubernetes cluster.local {{
        kubeconfig {kubeconfig}
    }}
    envinject 127.0.0.1:{hook_port} {{
        tls {certs / "tls.crt"} {certs / "tls.key"}
    }}
    clusterip 10.96.0.0/28
}}
"""
    )
    proc = KdnsCommand(
        ["-conf", str(corefile)],
        dns_port,
        env={"POD_NAMESPACE": "kube-system", "POD_NAME": "kdns-0"},
    )
    return proc, hook_port, certs


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
