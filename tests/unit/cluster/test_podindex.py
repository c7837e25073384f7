"""The packed pod index answers as a dict of every pod would, whatever the mix of puts,
deletes, compactions and relists: addresses shared by several pods (host network),
across namespaces, dual-stack and IPv6 pods, pods that move to another address. And so
it does at every moment of a fold that runs beside the writes (in a worker thread under
a running loop): writes interleaved while the fold is in flight, the fold packed and
completed at any point, a relist or a compaction superseding it."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.cluster import objects, podindex
from kdns.cluster.store import Store

NAMESPACES = ["default", "kube-system", "prod"]
NAMES = [f"p-{i}" for i in range(8)]
ADDRESSES = [("10.0.0.1",), ("10.0.0.2",), ("10.0.0.3",), ("192.168.0.10",), ("fd00::1",),
             ("10.0.0.4", "fd00::4"), ()]  # fmt: skip

Model = dict[tuple[str, str], tuple[str, ...]]

pods = st.tuples(st.sampled_from(NAMESPACES), st.sampled_from(NAMES))
writes = st.one_of(
    st.tuples(st.just("put"), pods, st.sampled_from(ADDRESSES)),
    st.tuples(st.just("delete"), pods, st.just(())),
)
ops = st.lists(
    st.one_of(
        writes,
        st.tuples(st.just("compact"), st.just(("", "")), st.just(())),
        st.tuples(st.just("relist"), st.just(("", "")), st.just(())),
    ),
    max_size=40,
)
NO_POD, NO_IPS = st.just(("", "")), st.just(())
fold_ops = st.lists(
    st.one_of(
        writes,
        writes,
        st.tuples(st.sampled_from(["begin", "pack", "end", "compact", "relist"]), NO_POD, NO_IPS),
    ),
    max_size=50,
)
loop_ops = st.lists(
    st.one_of(
        writes,
        writes,
        st.tuples(st.sampled_from(["yield", "settle", "relist"]), NO_POD, NO_IPS),
    ),
    max_size=50,
)


def _model_answers(model: Model, ip: str) -> dict[str, int]:
    key = objects.address_key(ip)
    counts: dict[str, int] = {}
    for (ns, _), ips in model.items():
        counts[ns] = counts.get(ns, 0) + sum(objects.address_key(a) == key for a in ips)
    return {ns: n for ns, n in counts.items() if n}


def _write(store: Store, model: Model, op: str, ns: str, name: str, ips: Any) -> None:
    if op == "put":
        changed = store.put_pod_address(objects.PodAddress(ns, name, ips))
        assert changed == (model.get((ns, name)) != ips)
        model[(ns, name)] = ips
    else:
        assert store.delete_pod_address(ns, name) == ((ns, name) in model)
        model.pop((ns, name), None)


def _relist(store: Store, model: Model, data: st.DataObject) -> tuple[podindex.Build, Model]:
    """A relist that keeps some pods, changes some, and drops the rest: its build,
    filled, and what the store holds once it is installed."""
    kept = data.draw(st.lists(st.sampled_from(sorted(model)), unique=True)
                     if model else st.just([]))  # fmt: skip
    relist = store.relist("pod_addresses")
    new = {key: model[key] for key in kept}
    for key in data.draw(st.lists(st.sampled_from(kept), unique=True) if kept else st.just([])):
        new[key] = data.draw(st.sampled_from(ADDRESSES))  # changed while the watch was down
    for (pns, pname), pips in new.items():
        relist.put(objects.PodAddress(pns, pname, pips))
    return relist, new  # type: ignore[return-value]


def _pods_of(packed: podindex.Packed, names: list[str]) -> dict[int, tuple[str, Any]]:
    pods: dict[int, tuple[str, Any]] = dict(packed.loose)
    for key, ip, space in zip(packed.keys, packed.key_ips, packed.key_spaces, strict=True):
        pods[key] = (names[space], ip.to_bytes(4, "big"))
    return pods


def _pods_in(model: Model) -> dict[int, tuple[str, Any]]:
    return {podindex.key_of(ns, name): (ns, podindex.packed_ips(ips))
            for (ns, name), ips in model.items()}  # fmt: skip


def _check(store: Store, model: Model) -> None:
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


@settings(max_examples=300, deadline=None)
@given(ops, st.data())
def test_same_answers_as_a_dict(steps: list[Any], data: st.DataObject) -> None:
    store = Store()
    store._pod_index.COMPACT_MIN = 2  # fold often (in place: no loop runs here)
    model: Model = {}
    for op, (ns, name), ips in steps:
        if op in ("put", "delete"):
            _write(store, model, op, ns, name, ips)
        elif op == "compact":
            store._pod_index.compact()
        else:
            relist, new = _relist(store, model, data)
            deleted = len(model.keys() - new.keys())
            assert relist.finish() == deleted  # type: ignore[attr-defined]
            model = new
        _check(store, model)


@settings(max_examples=300, deadline=None)
@given(fold_ops, st.data())
def test_same_answers_while_a_fold_is_in_flight(steps: list[Any], data: st.DataObject) -> None:
    """The fold driven by hand, as the loop and its thread drive it: begun, packed (from
    what it copied, whatever was written since), ended (its result installed, the
    journal replayed) at any point; a relist or a compaction drops it. Only one fold
    at a time: none begins by itself while one is in flight."""
    store = Store()
    index = store._pod_index
    index.COMPACT_MIN = 2
    model: Model = data.draw(st.dictionaries(pods, st.sampled_from(ADDRESSES), max_size=16))
    relist = store.relist("pod_addresses")  # most start packed
    for (ns, name), ips in model.items():
        relist.put(objects.PodAddress(ns, name, ips))
    relist.finish()
    fold: podindex.Fold | None = index.begin_fold()
    packed: podindex.Packed | None = None
    began: Model = dict(model)
    for op, (ns, name), ips in steps:
        if op in ("put", "delete"):
            _write(store, model, op, ns, name, ips)
        elif op == "begin":
            if index._fold is None:
                fold, packed, began = index.begin_fold(), None, dict(model)
        elif op == "pack" and fold is not None and packed is None:
            packed = fold.pack()  # what the index held when the fold began, not since
            assert _pods_of(packed, index._names) == _pods_in(began)
        elif op == "end" and fold is not None:
            current = index._fold is fold  # else a relist or a compact superseded it
            assert index.end_fold(fold, packed or fold.pack()) == current
            fold = packed = None
        elif op == "compact":
            index.compact()
            assert index._fold is None
        elif op == "relist":
            relist, model = _relist(store, model, data)
            assert index._fold is None  # the relist superseded the fold
            relist.finish()  # type: ignore[attr-defined]
        assert index._fold in (None, fold)
        _check(store, model)
    if fold is not None:  # a superseded fold's result is dropped
        current = index._fold is fold
        assert index.end_fold(fold, packed or fold.pack()) == current
        _check(store, model)


@settings(max_examples=100, deadline=None)
@given(loop_ops, st.data())
def test_same_answers_with_folds_in_threads(steps: list[Any], data: st.DataObject) -> None:
    """Under a running loop, as the informer runs it: folds start by themselves and pack
    in the loop's default executor while the writes go on; the loop installs each at
    whichever await comes after its thread finishes; a relist (packed in a thread too)
    supersedes the fold in flight."""

    async def run() -> None:
        store = Store()
        index = store._pod_index
        index.COMPACT_MIN = 2
        model: Model = {}
        for op, (ns, name), ips in steps:
            if op in ("put", "delete"):
                _write(store, model, op, ns, name, ips)
            elif op == "yield":
                await asyncio.sleep(0)
            elif op == "settle":
                await _settle(index)
            else:
                relist, new = _relist(store, model, data)
                await asyncio.to_thread(relist.prepare)  # type: ignore[attr-defined]
                relist.finish()  # type: ignore[attr-defined]
                model = new
            _check(store, model)
        await _settle(index)
        _check(store, model)

    asyncio.run(run())


async def _settle(index: podindex.PodIndex) -> None:
    """Wait until no fold is in flight (each one ended may have begun another)."""
    while index.folding is not None:
        await asyncio.wait([index.folding])
        await asyncio.sleep(0)  # awaiting a done future does not yield: its install runs now


def _crowd(store: Store, count: int) -> None:
    for i in range(count):
        ip = f"10.1.{i >> 8}.{i & 255}"
        store.put_pod_address(objects.PodAddress("default", f"web-{i}", (ip,)))


def test_a_fold_under_a_loop_runs_in_a_thread() -> None:
    """The write that crosses the threshold returns before the fold is done; the loop
    keeps answering from the live index, and installs the fold when its thread ends."""
    threads: list[int] = []
    pack = podindex.Fold.pack

    def spy(fold: podindex.Fold) -> podindex.Packed:
        threads.append(threading.get_ident())
        return pack(fold)

    async def run() -> None:
        store = Store()
        index = store._pod_index
        index.COMPACT_MIN = 100
        _crowd(store, 101)  # the 101st write starts a fold
        assert index.folding is not None and len(index._loose) == 101
        _crowd(store, 120)  # written beside the fold, journalled
        assert store.pod_namespace("10.1.0.110") == "default"
        await _settle(index)
        assert len(index._keys) == 101 and len(index._loose) == 19
        assert store.pod_count == 120
        assert threads and threads[0] != threading.get_ident()

    podindex.Fold.pack = spy  # type: ignore[method-assign]
    try:
        asyncio.run(run())
    finally:
        podindex.Fold.pack = pack  # type: ignore[method-assign]


def test_a_failed_fold_leaves_the_index_whole(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> None:
        store = Store()
        index = store._pod_index
        index.COMPACT_MIN = 10
        _crowd(store, 11)
        assert index.folding is not None
        await _settle(index)
        assert store.pod_count == 11
        assert store.pod_namespace("10.1.0.3") == "default"

    def fail(fold: podindex.Fold) -> podindex.Packed:
        raise MemoryError

    pack = podindex.Fold.pack
    podindex.Fold.pack = fail  # type: ignore[method-assign]
    try:
        with caplog.at_level(logging.ERROR, "kdns.cluster.podindex"):
            asyncio.run(run())
    finally:
        podindex.Fold.pack = pack  # type: ignore[method-assign]
    assert "a fold failed" in caplog.text


def test_sort_in_steps() -> None:
    for size in (0, 1, podindex.RUN - 1, podindex.RUN, 3 * podindex.RUN + 7):
        values = [(i * 7919) % 1009 for i in range(size)]
        want = sorted(values)
        podindex._sort(values)
        assert values == want


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
