"""The one name grammar (CoreDNS's parse.go): what the resolver answers from and explain reads."""

from __future__ import annotations

import pytest

from kdns.cluster import resolver, store
from kdns.explain import diagnose

ZONE = "cluster.local."

CASES = [
    ("cluster.local.", "apex", {}),
    ("svc.cluster.local.", "apex", {}),
    ("pod.cluster.local.", "apex", {}),
    ("default.svc.cluster.local.", "namespace", {"namespace": "default"}),
    ("web.default.svc.cluster.local.", "service", {"namespace": "default", "service": "web"}),
    ("10-0-0-1.default.pod.cluster.local.", "pod", {"service": "10-0-0-1"}),
    ("db-0.db.data.svc.cluster.local.", "endpoint", {"endpoint": "db-0", "service": "db"}),
    ("_http._tcp.api.shop.svc.cluster.local.", "srv", {"port": "http", "protocol": "tcp"}),
    ("http.tcp.api.shop.svc.cluster.local.", "srv", {"port": "http", "protocol": "tcp"}),
    ("web.default.cluster.local.", "invalid", {"reason": resolver.BAD_TYPE_LABEL}),
    ("a.b.c.d.e.svc.cluster.local.", "invalid", {"reason": resolver.TOO_MANY_LABELS}),
]


@pytest.mark.parametrize(("qname", "kind", "fields"), CASES)
def test_parse_name(qname: str, kind: str, fields: dict[str, str]) -> None:
    name = resolver.parse_name(qname, ZONE)
    assert name.kind == kind
    for field, value in fields.items():
        assert getattr(name, field) == value


@pytest.mark.parametrize(("qname", "kind", "fields"), CASES)
def test_explain_reads_names_as_the_resolver_does(
    qname: str, kind: str, fields: dict[str, str]
) -> None:
    st = store.Store()
    res = resolver.Resolver(st, resolver.Settings(zones=(ZONE,)))
    parts = diagnose.parts_of(res, qname)
    assert parts.kind == kind
    if kind == "invalid":
        assert parts.problem == fields["reason"]
