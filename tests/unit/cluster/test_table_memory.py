"""The compiled table kept small (issue 15): every compiled name's answers packed in one
bytes object (large ones deflated), NODATA shared per zone offset, only the names asked
lately unpacked, and the answers the same as before packing, byte for byte."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from kdns.cluster import objects, resolver, store, table
from kdns.dns import names, wire


def _service(ns: str, name: str, ip: str) -> objects.Service:
    port = objects.ServicePort("http", 80, "TCP", 8080)
    return objects.Service(
        ns, name, "ClusterIP", (ip,), "", (port,), None, False, ("IPv4",), "SingleStack"
    )


def _cluster(services: int, per: int = 15, headless_every: int = 10) -> store.Store:
    """Services as benchmarks/scale_cluster.py lays them out: one slice of ``per``
    endpoints each, every ``headless_every``-th service headless."""
    st = store.Store()
    for i in range(10):
        st.put_namespace(objects.Namespace(f"ns-{i}"))
    port = (objects.EndpointPort("http", 8080, "TCP"),)
    for n in range(services):
        ns, name = f"ns-{n % 10}", f"svc-{n}"
        headless = n % headless_every == headless_every - 1
        ip = "None" if headless else f"10.96.{n >> 8}.{n & 255}"
        st.put_service(_service(ns, name, ip))
        endpoints = tuple(
            objects.Endpoint((f"10.{128 + (p >> 16)}.{(p >> 8) & 255}.{p & 255}",), True, "", "")
            for p in range(n * per, (n + 1) * per)
        )
        st.put_slice(objects.EndpointSlice(ns, f"{name}-x", name, "IPv4", endpoints, port))
    st.mark_synced()
    return st


@pytest.fixture(autouse=True)
def _one_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store.time, "time", lambda: 1_700_000_000.0)


def test_compiled_names_cost_a_few_hundred_bytes_each() -> None:
    """1,000 services (100 headless of 15 endpoints): 3,500 compiled names. Unpacked,
    each held three answer objects and a dict (about 1.6 KiB a name at 10,000
    services); packed, a name is one bytes object and its dict entry."""
    st = _cluster(1000)
    tbl = table.Table(st, resolver.Resolver(st, resolver.Settings()))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        tbl.rebuild()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    mine = [
        tracemalloc.Filter(True, table.__file__),
        tracemalloc.Filter(True, wire.__file__),
        tracemalloc.Filter(True, names.__file__),
    ]
    grown = sum(
        s.size_diff
        for s in after.filter_traces(mine).compare_to(before.filter_traces(mine), "filename")
    )
    assert len(tbl.packed) == 3500
    assert tbl.nodes == {}, "nothing unpacked before it is asked"
    assert grown / len(tbl.packed) < 400, f"{grown / len(tbl.packed):.0f} bytes a name"


def test_only_the_names_asked_lately_stay_unpacked() -> None:
    st = _cluster(table.HOT // 2)
    tbl = table.Table(st, resolver.Resolver(st, resolver.Settings()))
    tbl.rebuild()
    asked = [names.to_wire(names.wire_to_text(n)) for n in tbl.packed]
    assert len(asked) > table.HOT
    for name in asked:
        got = tbl.lookup(name, wire.A)
        assert got is not None and got.rcode == wire.NOERROR
        assert len(tbl.nodes) <= table.HOT
    last = asked[-1]
    assert tbl.nodes[last][table.DEFAULT] is tbl.lookup(last, wire.TXT), "served unpacked"


def test_large_answers_are_kept_deflated_and_answer_the_same() -> None:
    st = _cluster(20, per=200, headless_every=2)
    res = resolver.Resolver(st, resolver.Settings())
    tbl = table.Table(st, res)
    tbl.rebuild()
    text = "svc-1.ns-1.svc.cluster.local."
    blob = tbl.packed[names.to_wire(text)]
    assert blob[:1] == b"\x01" and len(blob) < 200 * 16, "200 A records and 200 SRV, deflated"
    for qtype in (wire.A, wire.SRV, wire.AAAA, wire.TXT):
        got, want = (
            tbl.lookup(names.to_wire(text), qtype),
            res.answer(text, "cluster.local.", qtype),
        )
        assert got is not None
        assert (got.rcode, got.counts, got.body, got.an_sizes) == (
            want.rcode, want.counts, want.body, want.an_sizes
        )  # fmt: skip


def test_compiled_nodata_shares_one_answer_and_follows_the_serial(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Names of one length in a zone share their NODATA answer; a new SOA serial patches
    it in place, so a compiled name's NODATA says what the resolver says."""
    st = _cluster(30)
    res = resolver.Resolver(st, resolver.Settings())
    tbl = table.Table(st, res)
    tbl.rebuild()
    a = tbl.lookup(names.to_wire("svc-10.ns-0.svc.cluster.local."), wire.AAAA)
    b = tbl.lookup(names.to_wire("svc-11.ns-1.svc.cluster.local."), wire.AAAA)
    assert a is not None and a is b and a.rcode == wire.NOERROR and a.ancount == 0
    monkeypatch.setattr(store.time, "time", lambda: 1_700_000_100.0)
    st.put_namespace(objects.Namespace("another"))  # any write: a new serial
    tbl.update()
    text = "svc-10.ns-0.svc.cluster.local."
    got = tbl.lookup(names.to_wire(text), wire.AAAA)
    want = res.answer(text, "cluster.local.", wire.AAAA)
    assert got is not None and got.body == want.body


def test_loadbalance_rotates_unpacked_answers() -> None:
    st = _cluster(20, headless_every=2)
    tbl = table.Table(st, resolver.Resolver(st, resolver.Settings()))
    tbl.rebuild()
    name = names.to_wire("svc-1.ns-1.svc.cluster.local.")
    got = tbl.lookup(name, wire.A)
    assert got is not None and got.rotations == ()
    tbl.loadbalance = True
    got = tbl.lookup(name, wire.A)
    assert got is not None and len(got.rotations) == 8 and got.rotations[0] == got.body
