"""rewrite and acl end to end: a Corefile, the real kdns process, dnspython and dig, dnsmasq.

Clients bind to 127.0.0.x addresses so acl sees different networks, and the pods of
the manifests own some of those addresses so ``isolate`` knows them as pods. The EDNS0
rules are checked on what an upstream socket of the test receives.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from tests.support.process import KdnsCommand, free_port, http_get, rrset_texts, wait_until
from tests.support.upstreams import Dnsmasq, needs_dnsmasq

pytestmark = needs_dnsmasq

CLUSTER = """
apiVersion: v1
kind: Namespace
metadata: {name: alpha}
---
apiVersion: v1
kind: Namespace
metadata: {name: beta}
---
apiVersion: v1
kind: Namespace
metadata: {name: common, labels: {team: shared}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: alpha}
spec: {clusterIP: 10.96.1.1, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: beta}
spec: {clusterIP: 10.96.2.2, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: dir, namespace: common}
spec: {clusterIP: 10.96.3.3, ports: [{port: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: a-0, namespace: alpha}
spec: {containers: [{name: c, image: x}]}
status: {phase: Running, podIP: 127.0.0.21, podIPs: [{ip: 127.0.0.21}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b-0, namespace: beta}
spec: {containers: [{name: c, image: x}]}
status: {phase: Running, podIP: 127.0.0.22, podIPs: [{ip: 127.0.0.22}]}
"""


def ask(
    port: int,
    name: str,
    rdtype: str = "A",
    source: str = "127.0.0.1",
    rdclass: str = "IN",
    **kw: object,
) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, rdclass, **kw)  # type: ignore[arg-type]
    return dns.query.udp(q, "127.0.0.1", port=port, source=source, timeout=2)


class Recorder:
    """An upstream that answers every A query with 192.0.2.77 and keeps what it got."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.seen: list[dns.message.Message] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                continue
            query = dns.message.from_wire(data)
            self.seen.append(query)
            reply = dns.message.make_response(query)
            if query.question[0].rdtype == dns.rdatatype.A:
                reply.answer.append(
                    dns.rrset.from_text(query.question[0].name, 30, "IN", "A", "192.0.2.77")
                )
            self.sock.sendto(reply.to_wire(), addr)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Path:
    folder = tmp_path / "cluster"
    folder.mkdir()
    (folder / "all.yaml").write_text(CLUSTER)
    return folder


@pytest.fixture
def upstream() -> Iterator[Dnsmasq]:
    server = Dnsmasq(
        {
            "google.test": "192.0.2.7",
            "consul.test": "192.0.2.8",
            "typed.test": "192.0.2.9",
            "chaos.test": "192.0.2.10",
            "ttl.test": "192.0.2.11",
        }
    )
    yield server
    server.stop()


def start(tmp_path: Path, corefile: str, port: int) -> KdnsCommand:
    path = tmp_path / "Corefile"
    path.write_text(corefile)
    kdns = KdnsCommand(["-conf", str(path)], port)
    wait_until(lambda: kdns.rcode("web.alpha.svc.cluster.local") is not None, timeout=20)
    return kdns


REWRITE = """
.:{port} {{
    rewrite name exact db.example.internal web.alpha.svc.cluster.local
    rewrite name exact api.beta.svc.cluster.local web.alpha.svc.cluster.local
    rewrite name suffix .schmoogle.test. .google.test. answer auto
    rewrite stop {{
        name regex (.*)-(us-west-1)\\.coredns\\.test {{1}}.service.{{2}}.consul.test
        answer name (.*)\\.service\\.(us-west-1)\\.consul\\.test {{1}}-{{2}}.coredns.test
    }}
    rewrite continue name exact a.chain.test b.chain.test
    rewrite name exact b.chain.test web.alpha.svc.cluster.local
    rewrite name exact c.chain.test d.chain.test
    rewrite name exact d.chain.test web.alpha.svc.cluster.local
    rewrite continue {{
        ttl regex (.*)\\.ttl\\.test 15
    }}
    rewrite rcode suffix .rcode.test. REFUSED NXDOMAIN
    kubernetes cluster.local {{
        manifests {cluster}
    }}
    forward . 127.0.0.1:{upstream}
}}
typed.test:{port} {{
    rewrite type MX A
    forward . 127.0.0.1:{upstream}
}}
chaos.test:{port} {{
    rewrite class CH IN
    forward . 127.0.0.1:{upstream}
}}
edns.test:{port} {{
    rewrite continue edns0 local set 0xffee {{client_ip}}
    rewrite continue edns0 subnet set 24 56
    rewrite edns0 nsid append
    forward . 127.0.0.1:{recorder}
}}
"""


def test_rewrite_end_to_end(tmp_path: Path, cluster: Path, upstream: Dnsmasq) -> None:
    port = free_port()
    recorder = Recorder()
    corefile = REWRITE.format(
        port=port, cluster=cluster, upstream=upstream.port, recorder=recorder.port
    )
    kdns = start(tmp_path, corefile, port)
    try:
        # The common use: an outside name answered from the cluster, under the asked name.
        reply = ask(port, "db.example.internal")
        assert str(reply.question[0].name) == "db.example.internal."
        assert rrset_texts(reply) == ["db.example.internal. 5 IN A 10.96.1.1"]
        # A cluster name rewritten to another: the fast path must not answer it.
        assert rrset_texts(ask(port, "api.beta.svc.cluster.local")) == [
            "api.beta.svc.cluster.local. 5 IN A 10.96.1.1"
        ]
        assert rrset_texts(ask(port, "web.alpha.svc.cluster.local")) == [
            "web.alpha.svc.cluster.local. 5 IN A 10.96.1.1"
        ]
        # suffix with answer auto, through a real upstream; also as dig sees it.
        assert rrset_texts(ask(port, "www.schmoogle.test")) == [
            "www.schmoogle.test. 300 IN A 192.0.2.7"
        ]
        if shutil.which("dig"):
            out = subprocess.run(
                ["dig", "@127.0.0.1", "-p", str(port), "+noall", "+answer", "www.schmoogle.test"],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout  # fmt: skip
            assert out.split() == ["www.schmoogle.test.", "300", "IN", "A", "192.0.2.7"]
        # regex with answer name.
        assert rrset_texts(ask(port, "ftp-us-west-1.coredns.test")) == [
            "ftp-us-west-1.coredns.test. 300 IN A 192.0.2.8"
        ]
        # continue goes on to the next rule; stop (the default) does not.
        assert rrset_texts(ask(port, "a.chain.test")) == ["a.chain.test. 5 IN A 10.96.1.1"]
        assert ask(port, "c.chain.test").rcode() == dns.rcode.REFUSED  # d.chain.test upstream
        # ttl (continue: the next rules still run) and rcode rules on the response.
        assert rrset_texts(ask(port, "www.ttl.test")) == ["www.ttl.test. 15 IN A 192.0.2.11"]
        assert ask(port, "x.rcode.test").rcode() == dns.rcode.NXDOMAIN
        # type and class: the question stays the client's.
        typed = ask(port, "www.typed.test", "MX")
        assert typed.question[0].rdtype == dns.rdatatype.MX
        assert rrset_texts(typed) == ["www.typed.test. 300 IN A 192.0.2.9"]
        chaos = ask(port, "www.chaos.test", rdclass="CH")
        assert chaos.question[0].rdclass == dns.rdataclass.CH
        assert rrset_texts(chaos) == ["www.chaos.test. 300 IN A 192.0.2.10"]
        # Without a rewrite rule, other classes are still refused.
        assert ask(port, "www.typed.test", rdclass="CH").rcode() == dns.rcode.REFUSED
        # EDNS0 options reach the upstream; the client, which sent no EDNS, gets none back.
        plain = ask(port, "www.edns.test", source="127.0.0.5")
        assert rrset_texts(plain) == ["www.edns.test. 30 IN A 192.0.2.77"]
        assert plain.edns < 0
        seen = [m for m in recorder.seen if str(m.question[0].name) == "www.edns.test."]
        options = {o.otype: o for o in seen[-1].options}
        assert options[0xFFEE].to_wire() == bytes([127, 0, 0, 5])
        ecs = options[dns.edns.ECS]
        assert isinstance(ecs, dns.edns.ECSOption)
        assert (ecs.address, ecs.srclen) == ("127.0.0.0", 24)
        assert dns.edns.NSID in options
    finally:
        kdns.stop()
        recorder.stop()


ACL = """
.:{port} {{
    prometheus 127.0.0.1:{metrics}
    rewrite name exact harmless.test web.blocked.test
    acl {{
        allow net 127.0.0.33
        drop net 127.0.0.32
        filter type TXT
        block type MX net 127.0.0.0/8
    }}
    acl blocked.test {{
        block
    }}
    acl cluster.local in-addr.arpa {{
        isolate namespace_labels team=shared
    }}
    kubernetes cluster.local in-addr.arpa {{
        manifests {cluster}
    }}
    forward . 127.0.0.1:{upstream}
}}
"""


def metric(body: str, name: str) -> dict[str, float]:
    found = {}
    for line in body.splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            found[labels[len(name) :]] = float(value)
    return found


def test_acl_end_to_end(tmp_path: Path, cluster: Path, upstream: Dnsmasq) -> None:
    port, metrics_port = free_port(), free_port()
    corefile = ACL.format(port=port, metrics=metrics_port, cluster=cluster, upstream=upstream.port)
    kdns = start(tmp_path, corefile, port)
    try:
        assert ask(port, "www.google.test").rcode() == dns.rcode.NOERROR
        blocked = ask(port, "web.alpha.svc.cluster.local", "MX")
        assert blocked.rcode() == dns.rcode.REFUSED
        filtered = ask(port, "www.google.test", "TXT")
        assert (filtered.rcode(), filtered.answer, filtered.authority) == (0, [], [])
        with pytest.raises(dns.exception.Timeout):
            ask(port, "www.google.test", source="127.0.0.32")
        # allow ends the walk: the MX block below does not apply to 127.0.0.33.
        allowed = ask(port, "web.alpha.svc.cluster.local", "MX", source="127.0.0.33")
        assert allowed.rcode() == dns.rcode.NOERROR
        # acl acts on the rewritten name (CVE-2026-26017): a rewrite cannot dodge it.
        assert ask(port, "harmless.test").rcode() == dns.rcode.REFUSED
        status, body = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert status == 200
        server = f'server="dns://:{port}"'
        blocked_counts = metric(body, "coredns_acl_blocked_requests_total")
        assert blocked_counts[f'{{{server},view="",zone="."}}'] == 1
        assert blocked_counts[f'{{{server},view="",zone="blocked.test."}}'] == 1
        filtered_counts = metric(body, "coredns_acl_filtered_requests_total")
        assert filtered_counts == {f'{{{server},view="",zone="."}}': 1.0}
        dropped = metric(body, "coredns_acl_dropped_requests_total")
        assert dropped == {f'{{{server},view="",zone="."}}': 1.0}
        assert metric(body, "coredns_acl_allowed_requests_total")[f'{{{server},view=""}}'] >= 2
    finally:
        kdns.stop()


def test_isolate_namespaces(tmp_path: Path, cluster: Path, upstream: Dnsmasq) -> None:
    port, metrics_port = free_port(), free_port()
    corefile = ACL.format(port=port, metrics=metrics_port, cluster=cluster, upstream=upstream.port)
    kdns = start(tmp_path, corefile, port)
    alpha, beta, node = "127.0.0.21", "127.0.0.22", "127.0.0.23"
    try:
        web = "web.alpha.svc.cluster.local"
        api = "api.beta.svc.cluster.local"
        common = "dir.common.svc.cluster.local"
        assert rrset_texts(ask(port, web, source=alpha)) == [f"{web}. 5 IN A 10.96.1.1"]
        assert rrset_texts(ask(port, common, source=alpha)) == [f"{common}. 5 IN A 10.96.3.3"]
        assert rrset_texts(ask(port, api, source=beta)) == [f"{api}. 5 IN A 10.96.2.2"]
        assert rrset_texts(ask(port, api, source=node)) == [f"{api}. 5 IN A 10.96.2.2"]
        # Hidden: the same answer (rcode, flags, SOA and its TTL, sections) as a name in
        # a namespace that does not exist.
        for name, missing in (
            (api, "api.nosuch.svc.cluster.local"),
            ("beta.svc.cluster.local", "nosuch.svc.cluster.local"),
            ("_http._tcp.api.beta.svc.cluster.local", "_http._tcp.api.nosuch.svc.cluster.local"),
        ):
            hidden = ask(port, name, "SRV" if name.startswith("_") else "A", source=alpha)
            absent = ask(port, missing, "SRV" if name.startswith("_") else "A", source=alpha)
            assert hidden.rcode() == dns.rcode.NXDOMAIN
            assert hidden.flags == absent.flags
            assert rrset_texts(hidden, "authority") == rrset_texts(absent, "authority")
            assert (hidden.answer, hidden.additional) == (absent.answer, absent.additional)
        assert ask(port, web, source=beta).rcode() == dns.rcode.NXDOMAIN
        # PTR answers naming a hidden Service are hidden too.
        ptr = "2.2.96.10.in-addr.arpa"
        assert rrset_texts(ask(port, ptr, "PTR", source=beta)) == [f"{ptr}. 5 IN PTR {api}."]
        assert ask(port, ptr, "PTR", source=alpha).rcode() == dns.rcode.NXDOMAIN
    finally:
        kdns.stop()
