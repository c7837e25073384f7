"""A pooled socket's datagram is matched to its query by ID, then by question without
walking the name (``forward._asks``): it must agree with the full check
(``forward._valid_reply``) on every datagram, odd ones included."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.plugins.forward import forward

LABEL = st.binary(min_size=1, max_size=63).filter(lambda b: b"\x00" not in b) | st.sampled_from(
    [b"www", b"WWW", b"Example", b"a.b", b"\xff\xfe", b"A" * 63]
)


def wire(labels: list[bytes]) -> bytes:
    return b"".join(bytes((len(lab),)) + lab for lab in labels) + b"\x00"


@st.composite
def exchanges(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(qkey of a query, a datagram that may or may not answer it)."""
    labels = draw(st.lists(LABEL, min_size=0, max_size=4))
    if len(wire(labels)) > 255:  # a query's question passed names.name_end: 255 at most
        labels = labels[:3]
    qtype = draw(st.sampled_from([1, 28, 0x4141, 0x0041]))
    qkey = wire([lab.lower() for lab in labels]) + struct.pack("!HH", qtype, 1)
    swapped = [draw(st.sampled_from([lab, lab.upper(), lab.lower()])) for lab in labels]
    if draw(st.booleans()) and labels:
        swapped[-1] = swapped[-1] + b"x"  # another name
    rtype = qtype if draw(st.integers(0, 4)) else draw(st.sampled_from([1, 2, 0x4141]))
    question = wire(swapped) + struct.pack("!HH", rtype, draw(st.sampled_from([1, 1, 3])))
    flags = draw(st.sampled_from([0x8180, 0x8180, 0x0100, 0x8183]))
    qd = draw(st.sampled_from([1, 1, 1, 0, 2]))
    data = struct.pack("!HHHHHH", 0x1234, flags, qd, 0, 0, 0) + question
    data += draw(st.binary(max_size=8))
    cut = draw(st.integers(0, len(data)))
    return qkey, data[:cut] if draw(st.integers(0, 5)) == 0 else data


@settings(max_examples=600, deadline=None)
@given(exchanges())
def test_matching_by_question_agrees_with_the_full_check(case: tuple[bytes, bytes]) -> None:
    qkey, data = case
    assert forward._asks(data, qkey) == forward._valid_reply(data, data[:2], qkey)


def test_matching_cases() -> None:
    qkey = wire([b"www", b"example", b"org"]) + b"\x00\x01\x00\x01"
    header = b"\x12\x34\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00"
    assert forward._asks(header + wire([b"WWW", b"Example", b"ORG"]) + b"\x00\x01\x00\x01", qkey)
    assert not forward._asks(header + wire([b"www", b"example", b"orh"]) + qkey[-4:], qkey)
    assert not forward._asks(
        header + wire([b"www", b"example", b"org"]) + b"\x00\x1c\x00\x01", qkey
    )
    assert not forward._asks(header + wire([b"www", b"example"]), qkey)  # short
