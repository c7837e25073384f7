"""The first thing a user does: ask the example cluster for a service, over UDP and TCP."""

from __future__ import annotations

import dns.rcode

from tests.support.process import KdnsProcess, rrset_texts


def test_example_cluster_answers_udp_and_tcp(example_server: KdnsProcess) -> None:
    for tcp in (False, True):
        reply = example_server.query("web.default.svc.cluster.local", "A", tcp=tcp)
        assert reply.rcode() == dns.rcode.NOERROR
        assert rrset_texts(reply) == ["web.default.svc.cluster.local. 5 IN A 10.96.0.20"]
