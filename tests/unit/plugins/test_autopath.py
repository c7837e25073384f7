"""autopath in process: a Corefile's plan, pods at 127.0.0.x, a scripted upstream.

Every query goes through :meth:`Handler.answer` with the client address a transport
would pass, so the pod lookup, the walk and the reply bytes are the real ones.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dnslib
import pytest

from kdns.corefile.errors import CorefileError
from kdns.dns import metrics
from kdns.plugins.loader import load_text
from kdns.server import lifecycle, planner
from tests.support.upstreams import FaultServer

POD = "127.0.0.5"  # apps/client
OTHER = "127.0.0.6"  # other/client: its own namespace's path only
SHARED = "127.0.0.9"  # two host-network pods on one node
STRANGER = "127.0.0.77"  # no pod

MANIFESTS = """\
apiVersion: v1
kind: Namespace
metadata: {name: apps}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: apps}
spec: {clusterIP: 10.96.0.20, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: apps}
spec: {containers: [{name: c, image: x}]}
status: {phase: Running, podIP: 127.0.0.5}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: other}
spec: {containers: [{name: c, image: x}]}
status: {phase: Running, podIP: 127.0.0.6}
---
apiVersion: v1
kind: Pod
metadata: {name: proxy, namespace: apps}
spec: {hostNetwork: true, containers: [{name: c, image: x}]}
status: {phase: Running, podIP: 127.0.0.9, hostIP: 127.0.0.9}
---
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: apps}
spec: {hostNetwork: true, containers: [{name: c, image: x}]}
status: {phase: Running, podIP: 127.0.0.9, hostIP: 127.0.0.9}
"""

SOA = dnslib.SOA("ns.example.", "host.example.", (1, 60, 60, 60, 30))
A_RECORDS = {"api.example.com.": "192.0.2.7", "host.": "192.0.2.8"}
AAAA_RECORDS = {"v6only.example.com.": "2001:db8::6"}
EXISTING = {"host.corp.example."}  # NODATA for A and AAAA


def respond(wire: bytes, proto: str) -> list[bytes]:
    """The upstream: A/AAAA from the tables, NODATA for names with other records,
    NXDOMAIN (with SOA) for everything else."""
    query = dnslib.DNSRecord.parse(wire)
    reply = query.reply(ra=1)
    name = str(query.q.qname).lower()
    if query.q.qtype == dnslib.QTYPE.A and name in A_RECORDS:
        reply.add_answer(dnslib.RR(name, dnslib.QTYPE.A, rdata=dnslib.A(A_RECORDS[name]), ttl=60))
    elif query.q.qtype == dnslib.QTYPE.AAAA and name in AAAA_RECORDS:
        rdata = dnslib.AAAA(AAAA_RECORDS[name])
        reply.add_answer(dnslib.RR(name, dnslib.QTYPE.AAAA, rdata=rdata, ttl=60))
    elif name in A_RECORDS or name in AAAA_RECORDS or name in EXISTING:
        reply.add_auth(dnslib.RR("example.", dnslib.QTYPE.SOA, rdata=SOA, ttl=30))
    else:
        reply.header.rcode = dnslib.RCODE.NXDOMAIN
        reply.add_auth(dnslib.RR("example.", dnslib.QTYPE.SOA, rdata=SOA, ttl=30))
    return [bytes(reply.pack())]


def corefile(
    port: int, manifests: Path, pods: str = "verified", autopath: str = "@kubernetes"
) -> str:
    return textwrap.dedent(f"""\
        .:53 {{
            kubernetes cluster.local {{
                pods {pods}
            }}
            manifests {manifests}
            autopath {autopath}
            forward . 127.0.0.1:{port}
            cache 30
        }}
        """)


class Server:
    def __init__(
        self, tmp: Path, monkeypatch: pytest.MonkeyPatch, autopath: str = "@kubernetes"
    ) -> None:
        (tmp / "cluster").mkdir()
        (tmp / "cluster" / "all.yaml").write_text(MANIFESTS)
        (tmp / "resolv.conf").write_text("nameserver 10.0.0.2\nsearch corp.example\n")
        monkeypatch.setenv("KDNS_RESOLV_CONF", str(tmp / "resolv.conf"))
        self.loop = asyncio.new_event_loop()
        self.upstream = FaultServer(respond)
        self.loop.run_until_complete(self.upstream.__aenter__())
        text = corefile(self.upstream.port, tmp / "cluster", autopath=autopath)
        plan = planner.from_corefile(load_text(text, str(tmp / "Corefile")), dns_port=0)
        self.gen = lifecycle.Generation(plan)
        self.loop.run_until_complete(self.gen.start())
        (self.handler,) = self.gen.routes.values()

    def ask(self, name: str, rdtype: str = "A", client: str = POD) -> dns.message.Message:
        pkt = dns.message.make_query(name, rdtype).to_wire()
        reply = self.handler.answer_udp(pkt, (client, 40000))
        if reply is not None and not isinstance(reply, bytes):
            reply = self.loop.run_until_complete(reply)
        assert isinstance(reply, bytes)
        return dns.message.from_wire(reply)

    def forwarded(self) -> list[str]:
        return [name for _, name in self.upstream.seen]

    def close(self) -> None:
        self.loop.run_until_complete(self.gen.retire())
        self.loop.run_until_complete(self.upstream.__aexit__(None, None, None))
        self.loop.close()


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    s = Server(tmp_path, monkeypatch)
    try:
        yield s
    finally:
        s.close()


def texts(msg: dns.message.Message, section: str = "answer") -> list[str]:
    return sorted(
        f"{rrset.name} {rrset.ttl} IN {dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text()}"
        for rrset in getattr(msg, section)
        for rd in rrset
    )


def test_external_name_from_a_pod_is_one_answer(server: Server) -> None:
    reply = server.ask("api.example.com.apps.svc.cluster.local.")
    assert reply.rcode() == dns.rcode.NOERROR
    assert texts(reply) == [
        "api.example.com. 30 IN A 192.0.2.7",
        "api.example.com.apps.svc.cluster.local. 30 IN CNAME api.example.com.",
    ]
    assert str(reply.question[0].name) == "api.example.com.apps.svc.cluster.local."
    # svc.cluster.local and cluster.local are ours; corp.example and the bare name go out
    assert server.forwarded() == ["api.example.com.corp.example.", "api.example.com."]


def test_nodata_of_the_completed_name_keeps_the_cname(server: Server) -> None:
    """coredns#3765: AAAA of a name with only A answers the same CNAME, then NODATA
    (the target's SOA), so A and AAAA of one asked name stop at the same element."""
    reply = server.ask("api.example.com.apps.svc.cluster.local.", "AAAA")
    assert reply.rcode() == dns.rcode.NOERROR
    assert texts(reply) == ["api.example.com.apps.svc.cluster.local. 30 IN CNAME api.example.com."]
    assert [str(r.name) for r in reply.authority] == ["example."]
    a = server.ask("v6only.example.com.apps.svc.cluster.local.", "A")
    assert texts(a) == [
        "v6only.example.com.apps.svc.cluster.local. 30 IN CNAME v6only.example.com."
    ]


def test_element_with_no_address_does_not_stop_the_walk(server: Server) -> None:
    """glibc searches on past a name with neither A nor AAAA; so does the walk
    (CoreDNS stops at the first name that is not NXDOMAIN)."""
    reply = server.ask("host.apps.svc.cluster.local.")
    assert texts(reply) == [
        "host. 30 IN A 192.0.2.8",
        "host.apps.svc.cluster.local. 30 IN CNAME host.",
    ]


def test_cluster_names_along_the_path(server: Server) -> None:
    reply = server.ask("web.apps.apps.svc.cluster.local.")
    assert texts(reply) == [
        "web.apps.apps.svc.cluster.local. 5 IN CNAME web.apps.svc.cluster.local.",
        "web.apps.svc.cluster.local. 5 IN A 10.96.0.20",
    ]
    assert reply.flags & dns.flags.AA
    assert server.forwarded() == []


def test_existing_names_answer_as_without_autopath(server: Server) -> None:
    for name, rdtype in (
        ("web.apps.svc.cluster.local.", "A"),
        ("web.apps.svc.cluster.local.", "AAAA"),
    ):
        mine, plain = server.ask(name, rdtype), server.ask(name, rdtype, STRANGER)
        assert mine.to_wire()[2:] == plain.to_wire()[2:]


def test_nothing_found_is_the_plain_nxdomain(server: Server) -> None:
    reply = server.ask("missing.example.com.apps.svc.cluster.local.")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert texts(reply) == []
    assert [str(r.name) for r in reply.authority] == ["cluster.local."]


@pytest.mark.parametrize(
    ("client", "why"),
    [
        (STRANGER, "no pod has the address"),
        (OTHER, "coredns#2842: the pod there is in another namespace than the asked path"),
        (SHARED, "coredns#7120: host-network pods share the node's address"),
    ],
)
def test_clients_that_are_not_this_namespaces_pod_get_plain_answers(
    server: Server, client: str, why: str
) -> None:
    reply = server.ask("api.example.com.apps.svc.cluster.local.", client=client)
    assert reply.rcode() == dns.rcode.NXDOMAIN, why
    assert server.forwarded() == []


def test_other_namespace_pod_has_its_own_path(server: Server) -> None:
    reply = server.ask("api.example.com.other.svc.cluster.local.", client=OTHER)
    assert "api.example.com. 30 IN A 192.0.2.7" in texts(reply)


def test_success_metric(server: Server) -> None:
    def value() -> float:
        got = metrics.REGISTRY.get_sample_value(
            "coredns_autopath_success_total", {"server": "dns://:53"}
        )
        return got or 0.0

    before = value()
    server.ask("api.example.com.apps.svc.cluster.local.")
    server.ask("missing.example.com.apps.svc.cluster.local.")
    assert value() == before + 1


def test_resolv_conf_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``autopath ZONES RESOLV-CONF``: the file's path for every client, pods or not."""
    search = tmp_path / "search.conf"
    search.write_text("search apps.svc.cluster.local svc.cluster.local cluster.local\n")
    s = Server(tmp_path, monkeypatch, autopath=f"cluster.local {search}")
    try:
        reply = s.ask("web.apps.apps.svc.cluster.local.", client=STRANGER)
        assert "web.apps.svc.cluster.local. 5 IN A 10.96.0.20" in texts(reply)
    finally:
        s.close()


def test_kubernetes_form_needs_pods_verified(tmp_path: Path) -> None:
    text = corefile(53, tmp_path, pods="insecure")
    with pytest.raises(CorefileError, match="pods verified"):
        planner.from_corefile(load_text(text, str(tmp_path / "Corefile")))


def test_only_kubernetes_implements_autopather(tmp_path: Path) -> None:
    with pytest.raises(CorefileError, match="AutoPather"):
        load_text(corefile(53, tmp_path, autopath="@erratic"), str(tmp_path / "Corefile"))


COMPAT = Path(__file__).resolve().parents[3] / "Corefile.compat"


def test_page_examples_load_and_plan() -> None:
    """Corefile.compat/autopath.md: CoreDNS's sections; its examples load and plan."""
    import re

    text = (COMPAT / "autopath.md").read_text()
    sections = re.findall(r"^## (\w+)", text, re.M)
    assert sections == ["Name", "Description", "Syntax", "Examples", "Metrics", "Ready", "Bugs"]
    examples = re.findall(r"^~~~ corefile\n(.*?)^~~~$", text, re.S | re.M)
    assert len(examples) == 2
    for body in examples:
        config = load_text(body, str(COMPAT / "Corefile"))
        assert "autopath" in config.blocks[0].names()
        planner.from_corefile(config)
    assert "(autopath.md)" in (COMPAT / "README.md").read_text()


def test_answers_with_records_keep_the_fast_path(server: Server) -> None:
    """autopath acts only on names without records: a compiled answer with records is
    served by the fast path (counted in its tally), the rest goes through the chain."""
    fast = server.handler.stats.fast
    before = sum(fast.values())
    assert texts(server.ask("web.apps.svc.cluster.local.")) == [
        "web.apps.svc.cluster.local. 5 IN A 10.96.0.20"
    ]
    assert sum(fast.values()) == before + 1
    reply = server.ask("api.example.com.apps.svc.cluster.local.")
    assert reply.rcode() == dns.rcode.NOERROR and len(reply.answer) == 2  # completed
    missing = server.ask("nosuch.apps.svc.cluster.local.", client="127.0.0.8")  # not a pod
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert sum(fast.values()) == before + 1
