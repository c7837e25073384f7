"""log: CoreDNS's replacer placeholders, rule choice and response classes."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from kdns.plugins.loader import load_text
from kdns.plugins.log import querylog
from kdns.plugins.log.setup import COMBINED_FORMAT, COMMON_FORMAT, LogConfig, LogRule


def fields(**kw: object) -> querylog.QueryLogFields:
    base: dict[str, object] = dict(
        remote="10.244.0.92", port=48081, local="10.244.0.2", proto="udp", qid=26946,
        opcode=0, qname="foo.default.svc.cluster.local.", qtype=1, qclass=1, size=72,
        do=False, bufsize=512, rcode=3, rflags=0x8500, rsize=165, duration=7.631e-05,
    )  # fmt: skip
    base.update(kw)
    return querylog.QueryLogFields(**base)  # type: ignore[arg-type]


def test_common_format_matches_coredns_line() -> None:
    assert querylog.format_line(COMMON_FORMAT, fields()) == (
        '10.244.0.92:48081 - 26946 "A IN foo.default.svc.cluster.local. udp 72 false 512"'
        " NXDOMAIN qr,aa,rd 165 0.00007631s"
    )


def test_combined_ipv6_and_missing_response() -> None:
    line = querylog.format_line(
        COMBINED_FORMAT,
        fields(remote="::1", rcode=None, rflags=None, rsize=None, duration=None, qtype=65280),
    )
    assert line == (
        '[::1]:48081 - 26946 "TYPE65280 IN foo.default.svc.cluster.local. udp 72 false 512"'
        ' - - - - "0"'
    )


@pytest.mark.parametrize(
    ("fmt", "line"),
    [
        ("{proto} Request: {name} {type} {>id}", "udp Request: a.example. A 26946"),
        ("{unknown} {type}", "{unknown} A"),  # unknown labels stay literal text
        ("A } {type}", "A } A"),
        ("{ {type} }", "{ A }"),
        ("{/kubernetes/client-namespace} {/missing}", "default -"),
        ("{local} {>opcode} {>do} {>bufsize} {class} {rcode}", "10.244.0.2 0 true 4096 CH 9"),
    ],
)
def test_placeholders(fmt: str, line: str) -> None:
    f = fields(
        qname="a.example.", do=True, bufsize=4096, qclass=3, rcode=9,
        metadata={"kubernetes/client-namespace": "default"},
    )  # fmt: skip
    assert querylog.format_line(fmt, f) == line.replace(" 9", " NOTAUTH")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(7.631e-05, "0.00007631s"), (0.037990251, "0.037990251s"), (1.0, "1s"), (1.5, "1.5s"),
     (1e-09, "0.000000001s"), (12.0, "12s"), (0.0002876779999780865, "0.000287678s"),
     (1.0000000004, "1s")],
)  # fmt: skip
def test_duration_like_go(seconds: float, text: str) -> None:
    assert querylog.go_seconds(seconds) == text


def query(name: str = "Foo.Example.", rdtype: str = "A", **kw: object) -> dns.message.Message:
    return dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]


def test_fields_from_wire() -> None:
    q = query(use_edns=0, payload=1232, want_dnssec=True)
    q.id = 4242
    r = dns.message.make_response(q)
    r.flags |= dns.flags.AA
    r.set_rcode(dns.rcode.NXDOMAIN)
    qb, rb = q.to_wire(), r.to_wire()
    f = querylog.fields_from_wire(qb, rb, ("192.0.2.7", 5353), "10.0.0.10", "udp", 0.25)
    assert f is not None
    assert (f.qid, f.qname, f.qtype, f.qclass, f.size, f.do, f.bufsize) == (
        4242, "foo.example.", 1, 1, len(qb), True, 1232,
    )  # fmt: skip
    assert (f.rcode, querylog.rflags(f.rflags or 0), f.rsize) == (3, "qr,aa,rd", len(rb))
    tcp = querylog.fields_from_wire(query().to_wire(), None, ("::1", 1), "::1", "tcp", None)
    assert tcp is not None and tcp.bufsize == 65535 and tcp.rcode is None and not tcp.do
    plain = querylog.fields_from_wire(query().to_wire(), None, ("::1", 1), "::1", "udp", None)
    assert plain is not None and plain.bufsize == 512
    assert querylog.fields_from_wire(b"\x00\x01", None, ("::1", 1), "::1", "udp", None) is None


def response(
    rcode: int = 0,
    answer: Sequence[str] = (),
    authority: Sequence[str] = (),
    rdtype: str = "A",
) -> bytes:
    q = query("a.example.", rdtype)
    r = dns.message.make_response(q)
    r.set_rcode(dns.rcode.Rcode(rcode))
    r.answer = [rrset(t) for t in answer]
    r.authority = [rrset(t) for t in authority]
    return r.to_wire()


def rrset(line: str) -> dns.rrset.RRset:
    name, ttl, rdclass, rdtype, *rdata = line.split()
    return dns.rrset.from_text(name, int(ttl), rdclass, rdtype, " ".join(rdata))


SOA = "example. 60 IN SOA ns.example. host.example. 1 60 60 60 60"


@pytest.mark.parametrize(
    ("wire", "klass"),
    [
        (response(answer=["a.example. 60 IN A 10.0.0.1"]), "success"),
        (response(answer=["a.example. 60 IN CNAME b.example."]), "denial"),  # no A: NoData
        (response(answer=["a.example. 60 IN MX 10 b.example."], rdtype="MX"), "success"),
        (response(3, authority=[SOA]), "denial"),
        (response(0, authority=[SOA]), "denial"),
        (response(3), "error"),  # NXDOMAIN without SOA is OtherError in CoreDNS
        (response(0), "success"),
        (response(0, authority=["example. 60 IN NS ns.example."]), "success"),
        (response(2), "error"),
        (response(5), "error"),
        (response(0, rdtype="AXFR"), "error"),
        (None, "error"),
        (b"\x00", "error"),
    ],
)
def test_classify(wire: bytes | None, klass: str) -> None:
    assert querylog.classify(wire) == klass


def test_first_matching_rule_decides() -> None:
    config = (
        load_text(
            ".:53 {\n log example.org {\n  class denial\n }\n log . {combined}\n}\n", "Corefile"
        )
        .blocks[0]
        .get(LogConfig)
    )
    assert config is not None
    rules = config.rules
    assert querylog.select_rule(rules, "a.example.org.") is rules[0]
    assert querylog.select_rule(rules, "a.example.net.") is rules[1]
    # The first rule decides even when its class filters the query out.
    assert not querylog.should_log(rules[0], "a.example.org.", "success")
    assert querylog.should_log(rules[0], "a.example.org.", "denial")
    assert not querylog.should_log(rules[0], "a.example.net.", "denial")
    assert querylog.should_log(rules[1], "a.example.net.", "error")
    assert querylog.select_rule((LogRule(("example.org.",)),), "example.com.") is None


def test_microk8s_logs_only_errors(caplog: pytest.LogCaptureFixture) -> None:
    config = (
        load_text(".:53 {\n log . {\n  class error\n }\n}\n", "Corefile").blocks[0].get(LogConfig)
    )
    assert config is not None
    qlog = querylog.QueryLog(config)
    rule = qlog.rule_for("foo.example.")
    assert rule is not None
    with caplog.at_level(logging.INFO, logger="kdns.log"):
        assert not qlog.write(
            rule, fields(rcode=0), response(answer=["a.example. 60 IN A 10.0.0.1"])
        )
        assert qlog.write(rule, fields(rcode=2, qname="a.example."), response(2))
    assert [(r.name, r.levelname) for r in caplog.records] == [("kdns.log", "INFO")]
    assert caplog.records[0].getMessage().startswith('10.244.0.92:48081 - 26946 "A IN a.example.')
