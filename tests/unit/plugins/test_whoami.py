"""whoami: the client's address and port in the additional section, as CoreDNS's whoami."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.rcode
import pytest

from kdns.dns import names, wire
from kdns.plugins.whoami.whoami import whoami_answer


def decode(answer: wire.Answer, qname_as_sent: str, qtype: int = wire.A) -> dns.message.Message:
    question = names.to_wire(qname_as_sent) + struct.pack("!HH", qtype, 1)
    return dns.message.from_wire(
        b"\x00\x07" + answer.flags[1][0] + answer.counts + question + answer.body
    )


@pytest.mark.parametrize(
    ("ip", "proto", "expected"),
    [
        (
            "10.240.0.1",
            "udp",
            ["example.org. 0 IN A 10.240.0.1", "_udp.example.org. 0 IN SRV 0 0 40212 ."],
        ),
        (
            "2001:db8::1",
            "tcp",
            ["example.org. 0 IN AAAA 2001:db8::1", "_tcp.example.org. 0 IN SRV 0 0 40212 ."],
        ),
        (
            "::ffff:192.0.2.1",
            "udp",
            ["example.org. 0 IN A 192.0.2.1", "_udp.example.org. 0 IN SRV 0 0 40212 ."],
        ),
        (
            "fe80::1%eth0",
            "udp",
            ["example.org. 0 IN AAAA fe80::1", "_udp.example.org. 0 IN SRV 0 0 40212 ."],
        ),
    ],
)
def test_whoami(ip: str, proto: str, expected: list[str]) -> None:
    msg = decode(whoami_answer("example.org.", ip, 40212, proto), "example.org.")
    assert msg.rcode() == dns.rcode.NOERROR and msg.flags & dns.flags.AA
    assert msg.answer == [] and msg.authority == []
    assert [line for rrset in msg.additional for line in rrset.to_text().splitlines()] == expected


def test_whoami_root_and_case() -> None:
    msg = decode(whoami_answer(".", "10.0.0.1", 53, "udp"), ".")
    assert [rrset.to_text() for rrset in msg.additional] == [
        ". 0 IN A 10.0.0.1",
        "_udp. 0 IN SRV 0 0 53 .",
    ]
    # The owner is a pointer to the question: the client's spelling comes back.
    msg = decode(whoami_answer("example.org.", "10.0.0.1", 53, "udp"), "ExAmPle.org.")
    assert str(msg.additional[0].name) == "ExAmPle.org."
