"""``fallthrough``: a name the cluster does not have goes on to ``forward``.

Both kinds of NXDOMAIN must fall through: one computed on first use (a name with no
Service), and one compiled ahead (a headless Service whose endpoints are all not
ready), which the fast path must not serve.
"""

from __future__ import annotations

from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.support.process import KdnsCommand, free_port, wait_until
from tests.support.upstreams import DNSMASQ, Dnsmasq

HEADLESS_DOWN = """
apiVersion: v1
kind: Service
metadata: {name: down, namespace: default}
spec:
  clusterIP: None
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: down-1
  namespace: default
  labels: {kubernetes.io/service-name: down}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}]
endpoints:
  - addresses: [10.244.9.9]
    conditions: {ready: false}
---
apiVersion: v1
kind: Service
metadata: {name: up, namespace: default}
spec:
  clusterIP: 10.96.7.7
  ports: [{port: 80}]
"""


def test_nxdomain_falls_through_to_forward(tmp_path: Path) -> None:
    if not Path(DNSMASQ).exists():
        pytest.skip("dnsmasq is not installed (make test installs it)")
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    (cluster / "svc.yaml").write_text(HEADLESS_DOWN)
    port = free_port()
    upstream_server = Dnsmasq({"cluster.local": "192.0.2.53"})
    upstream = upstream_server.port
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        f""".:{port} {{
    kubernetes cluster.local {{
        manifests {cluster}
        fallthrough
    }}
    forward . 127.0.0.1:{upstream}
}}
"""
    )
    kdns = KdnsCommand(["-conf", str(corefile)], port)
    try:
        wait_until(lambda: kdns.rcode("up.default.svc.cluster.local") == 0, timeout=20)
        assert kdns.records("up.default.svc.cluster.local") == ["10.96.7.7"]
        for name in ("nothing.default.svc.cluster.local", "down.default.svc.cluster.local"):
            assert kdns.rcode(name) == dns.rcode.NOERROR, name
            assert kdns.records(name) == ["192.0.2.53"], name
    finally:
        kdns.stop()
        upstream_server.stop()
