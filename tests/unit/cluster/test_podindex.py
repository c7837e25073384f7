"""The packed pod index answers as a dict of every pod would, whatever the mix of puts,
deletes, compactions and relists: addresses shared by several pods (host network),
across namespaces, dual-stack and IPv6 pods, pods that move to another address."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.cluster import objects, podindex
from kdns.cluster.store import Store

NAMESPACES = ["default", "kube-system", "prod"]
NAMES = [f"p-{i}" for i in range(8)]
ADDRESSES = [("10.0.0.1",), ("10.0.0.2",), ("10.0.0.3",), ("192.168.0.10",), ("fd00::1",),
             ("10.0.0.4", "fd00::4"), ()]  # fmt: skip

pods = st.tuples(st.sampled_from(NAMESPACES), st.sampled_from(NAMES))
ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), pods, st.sampled_from(ADDRESSES)),
        st.tuples(st.just("delete"), pods, st.just(())),
        st.tuples(st.just("compact"), st.just(("", "")), st.just(())),
        st.tuples(st.just("relist"), st.just(("", "")), st.just(())),
    ),
    max_size=40,
)


def _model_answers(model: dict[tuple[str, str], tuple[str, ...]], ip: str) -> dict[str, int]:
    key = objects.address_key(ip)
    counts: dict[str, int] = {}
    for (ns, _), ips in model.items():
        counts[ns] = counts.get(ns, 0) + sum(objects.address_key(a) == key for a in ips)
    return {ns: n for ns, n in counts.items() if n}


@settings(max_examples=300, deadline=None)
@given(ops, st.data())
def test_same_answers_as_a_dict(steps: list[Any], data: st.DataObject) -> None:
    store = Store()
    store._pod_index.COMPACT_MIN = 2  # fold often
    model: dict[tuple[str, str], tuple[str, ...]] = {}
    for op, (ns, name), ips in steps:
        if op == "put":
            changed = store.put_pod_address(objects.PodAddress(ns, name, ips))
            assert changed == (model.get((ns, name)) != ips)
            model[(ns, name)] = ips
        elif op == "delete":
            assert store.delete_pod_address(ns, name) == ((ns, name) in model)
            model.pop((ns, name), None)
        elif op == "compact":
            store._pod_index.compact()
        else:  # a relist that keeps some pods, changes some, and drops the rest
            kept = data.draw(st.lists(st.sampled_from(sorted(model)), unique=True)
                             if model else st.just([]))  # fmt: skip
            relist = store.relist("pod_addresses")
            new = {key: model[key] for key in kept}
            for (pns, pname), pips in new.items():
                relist.put(objects.PodAddress(pns, pname, pips))
            assert relist.finish() == len(model) - len(new)
            model = new
        assert store.pod_count == len(model)
        for pns, pname in [(n, p) for n in NAMESPACES for p in NAMES]:
            assert store.has_pod(pns, pname) == ((pns, pname) in model)
        for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.4", "192.168.0.10", "fd00::1", "fd00::4"):
            want = _model_answers(model, ip)
            assert store.pod_namespaces(ip) == sorted(want)
            one = next(iter(want)) if list(want.values()) == [1] else None
            assert store.pod_namespace(ip) == one
            for n in NAMESPACES:
                assert store.pod_has_ip(n, ip) == (n in want)


def test_a_relisted_pod_keeps_its_stored_version_when_marked() -> None:
    store = Store()
    store.put_pod_address(objects.PodAddress("default", "web", ("10.0.0.9",)))
    relist = store.relist("pod_addresses")
    relist.mark_key("default", "web")  # listed, but failed to shrink: the last good stays
    assert relist.finish() == 0
    assert store.pod_has_ip("default", "10.0.0.9")


def test_a_relist_packs_every_single_address_pod() -> None:
    """After a relist, pods with one IPv4 address of their own sit in the packed columns
    (24 bytes a pod; ~157 in dicts) and nothing is loose; a shared address stays loose."""
    store = Store()
    relist = store.relist("pod_addresses")
    count = 5_000
    for i in range(count):
        ip = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        relist.put(objects.PodAddress(f"ns-{i % 100}", f"web-{i}", (ip,)))
    relist.put(objects.PodAddress("kube-system", "proxy", ("10.0.0.1",)))  # web-1's too
    relist.finish()
    index = store._pod_index
    assert store.pod_count == count + 1
    assert len(index._keys) == len(index._ips) == count - 1
    assert sorted(index._loose) == sorted(
        [podindex.key_of("ns-1", "web-1"), podindex.key_of("kube-system", "proxy")]
    )
    columns = (index._keys, index._key_ips, index._key_spaces, index._ips, index._ip_spaces)
    assert sum(c.itemsize for c in columns) == 24
    assert store.pod_namespace("10.0.1.2") == f"ns-{258 % 100}"
    assert store.pod_namespaces("10.0.0.1") == ["kube-system", "ns-1"]
