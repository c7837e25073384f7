"""template: CoreDNS's matching, fallthrough and rendering, on the AKS defaults and README cases."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.rcode
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from kdns.dns import names, wire
from kdns.plugins.loader import load_text
from kdns.plugins.template import template
from kdns.plugins.template.setup import Template, TemplateConfig

AKS = r"""
.:53 {
    forward . 127.0.0.1
    template ANY ANY internal.cloudapp.net {
      match "^(?:[^.]+\.){4,}internal\.cloudapp\.net\.$"
      rcode NXDOMAIN
      fallthrough
    }
    template ANY ANY reddog.microsoft.com {
      rcode NXDOMAIN
    }
}
"""

EXAMPLES = r"""
.:53 {
    template IN A example {
      match (^|[.])ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
      answer "{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
      fallthrough
    }
    template IN A example {
      match "^ip0a(?P<b>[a-f0-9]{2})(?P<c>[a-f0-9]{2})(?P<d>[a-f0-9]{2})[.]example[.]$"
      answer "{{ .Name }} 60 IN A 10.{{ parseInt .Group.b 16 8 }}.{{ parseInt .Group.c 16 8 }}.{{ parseInt .Group.d 16 8 }}"
      fallthrough
    }
    template IN MX example {
      match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
      answer "{{ .Name }} 60 IN MX 10 {{ .Name }}"
      additional "{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
      authority  "example. 60 IN NS ns0.example."
    }
    template IN PTR in-addr.arpa {
      match ^(?P<d>[0-9]*)[.](?P<c>[0-9]*)[.](?P<b>[0-9]*)[.](?P<a>[0-9]*)[.]in-addr[.]arpa[.]$
      answer "{{ .Name }} 60 IN PTR ip-{{ .Group.a }}-{{ .Group.b }}-{{ .Group.c }}-{{ .Group.d }}.example."
    }
    template IN ANY foogle.com {
      match "^foogle\.com\.$"
      answer "foogle.com 60 IN CNAME google.com"
    }
    template ANY ANY invalid {
      rcode NXDOMAIN
      authority "invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)"
    }
}
"""  # noqa: E501 (the README's lines, as written)


def templates(corefile: str, keys: str = "", **kw: object) -> template.Templates:
    config = load_text(corefile, "Corefile").blocks[0].get(TemplateConfig)
    assert config is not None
    return template.Templates(config, **kw)  # type: ignore[arg-type]


def ask(
    t: template.Templates, qname: str, qtype: int, qclass: int = 1, remote: str = "10.0.0.9"
) -> dns.message.Message | None:
    answer = t.match(qname, qtype, qclass, remote)
    if answer is None:
        return None
    question = names.to_wire(qname) + struct.pack("!HH", qtype, 1)
    pkt = b"\x12\x34" + answer.flags[1][0] + answer.counts + question + answer.body
    return dns.message.from_wire(pkt)


def text(section: list[dns.rrset.RRset]) -> list[str]:
    return [line for rrset in section for line in rrset.to_text().splitlines()]


@pytest.mark.parametrize(
    ("qname", "rcode"),
    [
        # Four or more labels before internal.cloudapp.net: a search-path expansion, NXDOMAIN.
        ("api.example.com.default.svc.internal.cloudapp.net.", dns.rcode.NXDOMAIN),
        ("a.b.c.d.internal.cloudapp.net.", dns.rcode.NXDOMAIN),
        # A VM name: the regex misses, fallthrough reaches the next plugin (forward).
        ("myvm.internal.cloudapp.net.", None),
        ("a.b.c.internal.cloudapp.net.", None),
        ("internal.cloudapp.net.", None),
        ("anything.reddog.microsoft.com.", dns.rcode.NXDOMAIN),
        ("reddog.microsoft.com.", dns.rcode.NXDOMAIN),
        ("kubernetes.default.svc.cluster.local.", None),
        ("microsoft.com.", None),
    ],
)
def test_aks_defaults(qname: str, rcode: int | None) -> None:
    t = templates(AKS)
    for qtype in (wire.A, wire.AAAA, wire.TXT, wire.ANY):
        msg = ask(t, qname, qtype)
        if rcode is None:
            assert msg is None
            continue
        assert msg is not None and msg.rcode() == rcode
        assert msg.flags & dns.flags.AA and not msg.answer and not msg.authority


def test_aks_answers_are_prebuilt() -> None:
    t = templates(AKS)
    one = t.match("a.b.c.d.internal.cloudapp.net.", wire.A, 1, "")
    assert one is t.match("x.y.z.w.internal.cloudapp.net.", wire.AAAA, 1, "")


def test_metrics_count_matches() -> None:
    registry = CollectorRegistry()
    t = templates(AKS, server="dns://:53", registry=registry)
    t.match("a.b.c.d.internal.cloudapp.net.", wire.A, 1, "")
    t.match("a.b.c.d.internal.cloudapp.net.", wire.A, 1, "")
    t.match("x.reddog.microsoft.com.", wire.ANY, 1, "")
    t.match("myvm.internal.cloudapp.net.", wire.A, 1, "")  # no match: not counted
    labels = {"server": "dns://:53", "view": ""}
    get = registry.get_sample_value
    assert (
        get(
            "coredns_template_matches_total",
            {**labels, "zone": "internal.cloudapp.net.", "class": "IN", "type": "A"},
        )
        == 2
    )
    # An ANY query reports the template's type and class: ANY.
    assert (
        get(
            "coredns_template_matches_total",
            {**labels, "zone": "reddog.microsoft.com.", "class": "IN", "type": "ANY"},
        )
        == 1
    )
    templates(AKS, server="dns://:1053", registry=registry)  # a second block shares the family


def test_readme_examples() -> None:
    t = templates(EXAMPLES)
    msg = ask(t, "ip-10-95-12-8.example.", wire.A)
    assert msg is not None and text(msg.answer) == ["ip-10-95-12-8.example. 60 IN A 10.95.12.8"]
    msg = ask(t, "www.ip-10-95-12-8.example.", wire.A)  # "(^|[.])" makes it a wildcard
    assert msg is not None and text(msg.answer) == ["www.ip-10-95-12-8.example. 60 IN A 10.95.12.8"]
    msg = ask(t, "ip0a7b7b01.example.", wire.A)
    assert msg is not None and text(msg.answer) == ["ip0a7b7b01.example. 60 IN A 10.123.123.1"]
    msg = ask(t, "ip-10-1-2-3.example.", wire.MX)
    assert msg is not None and msg.rcode() == dns.rcode.NOERROR and msg.flags & dns.flags.AA
    assert text(msg.answer) == ["ip-10-1-2-3.example. 60 IN MX 10 ip-10-1-2-3.example."]
    assert text(msg.additional) == ["ip-10-1-2-3.example. 60 IN A 10.1.2.3"]
    assert text(msg.authority) == ["example. 60 IN NS ns0.example."]
    msg = ask(t, "4.3.2.1.in-addr.arpa.", wire.PTR)
    assert msg is not None and text(msg.answer) == [
        "4.3.2.1.in-addr.arpa. 60 IN PTR ip-1-2-3-4.example."
    ]
    msg = ask(t, "foogle.com.", wire.A)
    assert msg is not None and text(msg.answer) == ["foogle.com. 60 IN CNAME google.com."]
    msg = ask(t, "x.invalid.", wire.MX)
    assert msg is not None and msg.rcode() == dns.rcode.NXDOMAIN
    assert text(msg.authority) == [
        "invalid. 60 IN SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60"
    ]


def test_fallthrough_and_no_match() -> None:
    t = templates(EXAMPLES)
    # A-template misses and falls through; no later template for example A: next plugin.
    assert t.match("something.example.", wire.A, 1, "") is None
    # The MX template has no fallthrough: a miss is SERVFAIL.
    msg = ask(t, "something.example.", wire.MX)
    assert msg is not None and msg.rcode() == dns.rcode.SERVFAIL and not msg.flags & dns.flags.AA
    # Types no template names: skipped, next plugin.
    assert t.match("ip-10-1-2-3.example.", wire.TXT, 1, "") is None
    assert t.match("elsewhere.org.", wire.A, 1, "") is None


def test_multi_section_like_coredns() -> None:
    t = templates(
        r"""test.:8053 {
        template IN A {
            rcode REFUSED
        }
        template IN TXT {
            match "$^"
            rcode SERVFAIL
            fallthrough
        }
        template IN MX {
            rcode SERVFAIL
            answer "{{ .Name }} 60 IN MX 10 {{ .Name }}"
        }
    }"""
    )
    msg = ask(t, "some.test.", wire.A)
    assert msg is not None and msg.rcode() == dns.rcode.REFUSED
    assert t.match("some.test.", wire.TXT, 1, "") is None
    assert t.match("some.test.", wire.MX, 1, "") is template.SERVFAIL  # not even rendered


def test_class_matching() -> None:
    t = templates('.:53 {\n template CH TXT {\n  answer "{{ .Name }} 60 CH TXT \\"x\\""\n }\n}')
    assert t.match("version.bind.", wire.TXT, 1, "") is None  # IN query, CH template
    assert t.match("version.bind.", wire.TXT, 3, "") is not None
    assert t.match("version.bind.", wire.TXT, 255, "") is not None  # ANY class matches


def build(
    *answer: str, match: tuple[str, ...] = (".*",), rcode: str = "NOERROR"
) -> template.Templates:
    return template.Templates(
        TemplateConfig((Template("IN", "ANY", (".",), match=match, answer=answer, rcode=rcode),))
    )


def test_template_features() -> None:
    t = build(
        '{{- /* a comment */ -}} {{ .Name }} 60 IN TXT "{{ .Zone }} {{ .Class }} {{ .Type }}"'
        ' "{{ index .Match 1 }}" "{{ index .Group "x" }}" "{{ .Group.x }}" "{{ .Group.y }}"'
        ' "{{ .Remote }}" "{{ .Meta "kubernetes/client-namespace" }}" "{{ index .Group "nope" }}"'
        ' "{{ .Question.Name }} {{ .Question.Qtype }}"',
        match=("^(?P<x>[^.]+)[.](y)?",),
    )
    msg = ask(t, "host.example.", wire.TXT, remote="192.0.2.1")
    assert msg is not None
    assert text(msg.answer) == [
        'host.example. 60 IN TXT ". IN TXT" "host" "host" "host" "<no value>" "192.0.2.1" "" ""'
        ' "host.example. 16"'
    ]
    # .Remote varies per client: never served from the cache.
    msg = ask(t, "host.example.", wire.TXT, remote="192.0.2.2")
    assert msg is not None and "192.0.2.2" in text(msg.answer)[0]


def test_rr_text_normalisation() -> None:
    rr = template.parse_rr("Foo.Example IN 1h mx 10 mail")
    assert (rr.name, rr.type, rr.ttl, rr.rdata) == (
        "foo.example.",
        wire.MX,
        3600,
        b"\x00\n\x04mail\x00",
    )
    assert template.parse_rr("x. A 10.0.0.1").ttl == 3600  # miekg/dns's default TTL
    soa = template.parse_rr("example. 60 IN SOA ns1.example. admin.example. (1 60 120 86400 3600)")
    # Names in rdata stay uncompressed: the bytes are spliced into another message.
    assert soa.rdata.startswith(names.to_wire("ns1.example.") + names.to_wire("admin.example."))


def test_failures_are_servfail_and_counted() -> None:
    registry = CollectorRegistry()
    t = template.Templates(
        TemplateConfig(
            (
                Template(
                    "IN", "A", ("a.",), answer=('{{ .Name }} 60 IN TXT "{{ index .Match 2 }}"',)
                ),
                Template("IN", "A", ("b.",), additional=("{{ .Name }}",)),
            )
        ),
        server="dns://:53",
        registry=registry,
    )
    assert t.match("x.a.", wire.A, 1, "") is template.SERVFAIL
    assert t.match("x.b.", wire.A, 1, "") is template.SERVFAIL
    base = {"server": "dns://:53", "view": "", "class": "IN", "type": "A"}
    assert registry.get_sample_value(
        "coredns_template_template_failures_total",
        {**base, "zone": "a.", "section": "answer",
         "template": '{{ .Name }} 60 IN TXT "{{ index .Match 2 }}"'},
    ) == 1  # fmt: skip
    assert (
        registry.get_sample_value(
            "coredns_template_rr_failures_total",
            {**base, "zone": "b.", "section": "additional", "template": "{{ .Name }}"},
        )
        == 1
    )


@pytest.mark.parametrize(
    "source",
    [
        "{{ .Message }}",
        "{{ .Message.Id }}",
        "{{ $x }}",
        "{{ .Name | printf }}",
        "{{ if .Name }}x{{ end }}",
        "{{ .Name",
    ],
)
def test_unsupported_go_template_is_rejected_up_front(source: str) -> None:
    with pytest.raises(template.TemplateError):
        build(source)


def test_go_regex_end_of_text() -> None:
    assert template.go_regex(r"a\z").search("a")
    assert not template.go_regex(r"a\\z").search("a")


@pytest.mark.parametrize(
    ("text", "base", "bits", "value"),
    [
        ("ff", 16, 8, 255),
        ("0x1f", 0, 0, 31),
        ("010", 0, 64, 8),
        ("1_000", 0, 0, 1000),
        ("7", 10, 3, 7),
    ],
)
def test_parse_uint(text: str, base: int, bits: int, value: int) -> None:
    assert template.parse_uint(text, base, bits) == value


@pytest.mark.parametrize(
    ("text", "base", "bits"),
    [("100", 16, 8), ("-1", 10, 0), ("+1", 10, 0), ("1_0", 10, 0), ("", 10, 0), ("g", 16, 0)],
)
def test_parse_uint_errors(text: str, base: int, bits: int) -> None:
    with pytest.raises(ValueError):
        template.parse_uint(text, base, bits)


@given(st.integers(min_value=0, max_value=2**64 - 1), st.sampled_from([2, 8, 10, 16, 36]))
def test_parse_uint_round_trips(value: int, base: int) -> None:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text, n = "", value
    while True:
        n, r = divmod(n, base)
        text = digits[r] + text
        if not n:
            break
    assert template.parse_uint(text, base, 64) == value


def test_render_cache_is_bounded() -> None:
    t = build("{{ .Name }} 60 IN A 10.0.0.1")
    for i in range(3000):
        assert t.match(f"h{i}.example.", wire.A, 1, "") is not None
    assert all(len(c.cache) <= 1024 for c in t._templates)
