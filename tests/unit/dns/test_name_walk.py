"""One label walk (kdns.dns.names): the handler, forward, cache and log read names
through it, and agree on a corpus of names, escaped labels and compression pointers."""

from __future__ import annotations

import struct

import dnslib
import pytest

from kdns.dns import names
from kdns.plugins.cache import respcache
from kdns.plugins.forward import forward
from kdns.plugins.log import querylog
from kdns.query import handler

CORPUS = [
    b"\x00",
    names.to_wire("web.default.svc.cluster.local."),
    names.to_wire("WeB.Default.SVC.cluster.local."),
    b"\x03a.b\x07example\x00",  # a dot inside a label: a\.b.example.
    b"\x04a\\bc\x07example\x00",  # a backslash
    b"\x02\x01\xff\x03com\x00",  # odd bytes
    b"\x3f" + b"x" * 63 + b"\x00",  # the longest label
    b"\x3f" + b"y" * 63 + b"\x3f" + b"y" * 63 + b"\x3f" + b"y" * 63 + b"\x3d" + b"y" * 61 + b"\x00",
]


def _query(name: bytes, qtype: int = 1) -> bytes:
    return b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + name + struct.pack("!HH", qtype, 1)


@pytest.mark.parametrize("name", CORPUS, ids=range(len(CORPUS)))
def test_every_reader_agrees_on_a_question(name: bytes) -> None:
    q = _query(name)
    end = 12 + len(name)
    assert names.name_end(q) == end
    assert names.skip_name(q, 12) == end
    assert names.read_name(q, 12) == name
    assert forward.question_end(q) == end + 4
    assert handler._question_bytes(q) == q[12:]
    text = names.wire_to_text(name.lower())
    assert querylog._name_text(q, 12) == text


def test_escaped_labels_read_as_text() -> None:
    assert names.wire_to_text(b"\x03a.b\x07example\x00") == "a\\046b.example."
    assert forward.qname_of(_query(b"\x03a.b\x07example\x00")) == "a\\.b.example."


@pytest.mark.parametrize(
    "bad",
    [
        b"\xc0\x0c",  # a pointer where a question's name cannot have one
        b"\x40abc\x00",  # a reserved label type
        b"\x05abc",  # runs past the message
        (b"\x3f" + b"z" * 63) * 4 + b"\x00",  # 257 octets
    ],
)
def test_a_bad_question_name_is_refused_by_every_reader(bad: bytes) -> None:
    msg = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + bad
    with pytest.raises(names.BadName):
        names.name_end(msg)
    with pytest.raises(ValueError):
        forward.question_end(msg + b"\x00\x01\x00\x01")
    if bad != b"\x05abc":
        assert handler._question_bytes(msg + b"\x00\x01\x00\x01") is None


def test_compression_pointers_are_followed_and_skipped() -> None:
    reply = dnslib.DNSRecord.question("web.default.svc.cluster.local", "A").reply()
    reply.add_answer(dnslib.RR("web.default.svc.cluster.local", rdata=dnslib.A("10.0.0.1")))
    reply.add_answer(dnslib.RR("x.svc.cluster.local", rdata=dnslib.A("10.0.0.2")))
    msg = reply.pack()
    pos = names.skip_name(msg, 12) + 4
    assert msg[pos] & 0xC0 == 0xC0  # the answer's owner is a pointer to the question
    assert names.read_name(msg, pos) == names.to_wire("web.default.svc.cluster.local.")
    pos = names.skip_name(msg, pos) + 14  # type, class, ttl, rdlength, A
    assert names.read_name(msg, pos) == names.to_wire("x.svc.cluster.local.")
    assert respcache.parse(msg).counts[0] == 2


def test_a_compression_loop_is_an_error() -> None:
    msg = b"\x12\x34\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xc0\x0c"
    with pytest.raises(names.BadName):
        names.read_name(msg, 12)
