"""rewrite and acl in process: the Corefile errors CoreDNS reports for their rules, and
the startup checks of acl's isolate. End to end: tests/integration/test_rewrite_acl.py.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from kdns.corefile.errors import CorefileError
from kdns.plugins.loader import load_text
from kdns.server import lifecycle, planner


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("rewrite", "no rule type specified for rewrite"),
        ("rewrite answer name a b", "response rewrites must begin with a name rule"),
        ("rewrite name a", "too few arguments for a name rule"),
        ("rewrite name fuzzy a b", "received: fuzzy"),
        ("rewrite name regex ( b", "invalid regex matching pattern: ("),
        ("rewrite name regex (a) {1}{2}", "uses more subexpressions"),
        ("rewrite type A", "type rules must have exactly two arguments"),
        ("rewrite type A BOGUS", 'invalid type "BOGUS"'),
        ("rewrite class CH XX", 'invalid class "XX"'),
        ("rewrite ttl a.b x", "invalid TTL 'x' for a ttl rule"),
        ("rewrite rcode a.b NOPE NXDOMAIN", "invalid matching RCODE 'NOPE'"),
        ("rewrite edns0 local bogus 0xffee a", "invalid action"),
        ("rewrite edns0 local set 0xffee {server_ip}", "not supported by kdns"),
        ("rewrite cname exact a b", "rule type 'cname' is not supported by kdns"),
        ("rewrite bogus a b", 'invalid rule type "bogus"'),
        ("acl {\n permit\n}", "unexpected token 'permit'"),
        ("acl {\n block type a\n}", "unexpected token 'a'; expect legal QTYPE"),
        ("acl {\n block net 10.0.0.300\n}", "illegal CIDR notation '10.0.0.300/32'"),
        ("acl {\n block net\n}", "no token specified in 'net' section"),
        ("acl {\n block file /x\n}", "unexpected token 'file'; expect 'type | net'"),
        ("acl {\n isolate Bad.Name\n}", "invalid namespace name 'Bad.Name'"),
        ('acl {\n isolate namespace_labels "a in (b)"\n}', "set-based label selector"),
    ],
)
def test_setup_errors(body: str, error: str) -> None:
    with pytest.raises(CorefileError) as caught:
        load_text(f". {{\n{body}\n}}\n", "Corefile")
    assert error in str(caught.value), str(caught.value)
    assert str(caught.value).startswith("plugin/" + body.split()[0])


def test_isolate_needs_pods_verified_with_an_api_server() -> None:
    text = (
        ". {\n acl {\n  isolate\n }\n"
        " kubernetes cluster.local {\n  endpoint http://127.0.0.1:1\n }\n}\n"
    )
    with pytest.raises(CorefileError, match="pods verified"):
        planner.from_corefile(load_text(text, "Corefile"))


CLUSTER = """\
apiVersion: v1
kind: Namespace
metadata: {name: alpha}
---
apiVersion: v1
kind: Namespace
metadata: {name: beta}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: beta}
spec: {clusterIP: 10.96.2.2, ports: [{port: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: a-0, namespace: alpha}
spec: {containers: [{name: c, image: x}]}
status: {phase: Running, podIP: 127.0.0.21}
---
apiVersion: v1
kind: Pod
metadata: {name: b-0, namespace: beta}
spec: {containers: [{name: c, image: x}]}
status: {phase: Running, podIP: 127.0.0.22}
"""


def test_acl_judges_autopath_walk_by_the_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """plugin.cfg: rewrite, autopath, acl. The names autopath walks to pass acl with the
    client's address (coredns#8290): a search path cannot carry a pod past isolate."""
    (tmp_path / "cluster").mkdir()
    (tmp_path / "cluster" / "all.yaml").write_text(CLUSTER)
    (tmp_path / "resolv.conf").write_text("nameserver 10.0.0.2\n")
    monkeypatch.setenv("KDNS_RESOLV_CONF", str(tmp_path / "resolv.conf"))
    text = textwrap.dedent(f"""\
        .:53 {{
            autopath @kubernetes
            acl cluster.local {{
                isolate
                block net 127.0.0.23
            }}
            kubernetes cluster.local {{
                pods verified
            }}
            manifests {tmp_path / "cluster"}
        }}
        """)
    plan = planner.from_corefile(load_text(text, str(tmp_path / "Corefile")), dns_port=0)
    loop = asyncio.new_event_loop()
    gen = lifecycle.Generation(plan)
    loop.run_until_complete(gen.start())
    (handler,) = gen.routes.values()

    def ask(name: str, client: str) -> dns.message.Message:
        reply = handler.answer_udp(dns.message.make_query(name, "A").to_wire(), (client, 40000))
        if reply is not None and not isinstance(reply, bytes):
            reply = loop.run_until_complete(reply)
        assert isinstance(reply, bytes)
        return dns.message.from_wire(reply)

    try:
        # beta's pod: its search path's second element completes the name.
        found = ask("api.beta.beta.svc.cluster.local", "127.0.0.22")
        assert [str(r) for r in found.answer][-1].endswith("IN A 10.96.2.2")
        # alpha's pod walks to the same name, hidden from it: the plain NXDOMAIN.
        hidden = ask("api.beta.alpha.svc.cluster.local", "127.0.0.21")
        assert (hidden.rcode(), hidden.answer) == (dns.rcode.NXDOMAIN, [])
        # a blocked client is refused, by autopath's first lookup already.
        assert ask("api.beta.alpha.svc.cluster.local", "127.0.0.23").rcode() == dns.rcode.REFUSED
    finally:
        loop.run_until_complete(gen.retire())
        loop.close()
