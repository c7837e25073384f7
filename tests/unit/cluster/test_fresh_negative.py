"""The first-time miss path: the one-pass wire -> text decoding and Resolver.scope's own
reading of a name must agree with the per-label decoding and with parse_name."""

from __future__ import annotations

import pytest

from kdns.cluster import objects, resolver, store
from kdns.dns import names


@pytest.mark.parametrize(
    ("wire", "text"),
    [
        (b"\x06nosuch\x04ns-4\x03svc\x07cluster\x05local\x00", "nosuch.ns-4.svc.cluster.local."),
        (b"\x03WeB\x00", "web."),
        (b"\x03a.b\x07example\x00", "a\\046b.example."),
        (b"\x03a\\b\x00", "a\\092b."),
        (b"\x02A\x01\x00", "a\\001."),
        (b"\x01\xc9\x00", "\xe9."),
        (b"\x02a \x00", "a ."),
        (b"\x00", "."),
    ],
)
def test_wire_to_text_escapes_only_odd_labels(wire: bytes, text: str) -> None:
    assert names.wire_to_text(wire) == text


def _resolver() -> resolver.Resolver:
    st = store.Store()
    st.put_namespace(objects.Namespace("ns-4"))
    st.mark_synced()
    return resolver.Resolver(st, resolver.Settings())


@pytest.mark.parametrize(
    ("qname", "scope"),
    [
        ("nosuch.ns-4.svc.cluster.local.", (True, ("ns-4", "nosuch"))),
        ("nosuch.ns-9.svc.cluster.local.", (True, ("ns-9", ""))),
        ("ns-4.svc.cluster.local.", (False, ("ns-4", ""))),
        ("svc.cluster.local.", (False, None)),
        ("a.b.c.d.e.svc.cluster.local.", (True, None)),
        ("x.nope.cluster.local.", (True, None)),
        ("dns-version.cluster.local.", (False, None)),
        ("1-2-3-4.ns-4.pod.cluster.local.", (False, ("ns-4", ""))),
    ],
)
def test_scope_reads_names_as_parse_name(qname: str, scope: object) -> None:
    assert _resolver().scope(qname, "cluster.local.") == scope
