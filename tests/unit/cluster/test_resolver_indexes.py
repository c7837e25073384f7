"""The resolver's kept service indexes: bounded by the addresses they hold, newest kept.

Issue 15: 512 whole indexes stayed in memory after the compile built them. They are now
kept while their addresses add up to ``resolver.INDEXES``, least recently used dropped
first, and the newest always, so asking the same service again does not rebuild it however
large it is. ``Resolver.indexed`` counts the builds (one pass over a service's endpoints).
"""

from __future__ import annotations

import pytest

from kdns.cluster import objects, resolver, store

PORT = (objects.EndpointPort("http", 80, "TCP"),)


def _cluster(sizes: dict[str, int]) -> resolver.Resolver:
    """Headless services named after ``sizes``, each with that many ready endpoints."""
    st = store.Store()
    st.put_namespace(objects.Namespace("ns"))
    for n, (name, size) in enumerate(sizes.items()):
        st.put_service(
            objects.Service(
                "ns", name, "ClusterIP", ("None",), "", (), None, False, ("IPv4",), "SingleStack"
            )
        )
        endpoints = tuple(
            objects.Endpoint((f"10.{n}.{i >> 8}.{i & 255}",), True, "", "") for i in range(size)
        )
        st.put_slice(objects.EndpointSlice("ns", f"{name}-0", name, "IPv4", endpoints, PORT))
    st.mark_synced()
    return resolver.Resolver(st, resolver.Settings(zones=("cluster.local.",)))


def _builds(res: resolver.Resolver, *names: str) -> int:
    """How many indexes asking for ``names`` in turn built."""
    before = res.indexed
    for name in names:
        assert len(res.index("ns", name, False).addresses) > 0
    return res.indexed - before


def test_indexes_kept_within_the_address_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resolver, "INDEXES", 30)
    res = _cluster({f"s{i}": 10 for i in range(5)})
    assert _builds(res, "s0", "s1", "s2", "s3", "s4") == 5
    assert _builds(res, "s2", "s3", "s4") == 0  # the last 30 addresses' worth
    assert _builds(res, "s0") == 1  # dropped: rebuilt, and s2 goes in its place
    assert _builds(res, "s3", "s4", "s0") == 0
    assert _builds(res, "s2") == 1


def test_an_index_used_again_is_kept_longer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resolver, "INDEXES", 30)
    res = _cluster({f"s{i}": 10 for i in range(4)})
    assert _builds(res, "s0", "s1", "s2", "s0", "s3") == 4  # s0 asked again: s1 goes first
    assert _builds(res, "s0", "s2", "s3") == 0
    assert _builds(res, "s1") == 1


def test_the_newest_index_is_kept_however_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resolver, "INDEXES", 30)
    res = _cluster({"small": 10, "big": 500})
    assert _builds(res, "small", "big", "big", "big") == 2
    assert _builds(res, "small") == 1  # the big one made room for nothing else
    assert _builds(res, "small") == 0


def test_a_changed_service_is_indexed_again() -> None:
    res = _cluster({"web": 3})
    assert _builds(res, "web", "web") == 1
    st = res.store
    eps = st.slices[("ns", "web-0")]
    st.put_slice(objects.EndpointSlice("ns", "web-0", "web", "IPv4", eps.endpoints[1:], eps.ports))
    assert _builds(res, "web") == 1
    assert len(res.index("ns", "web", False).addresses) == 2
