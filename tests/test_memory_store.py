"""The compact store (issue 15): packed endpoints, address indexes without a set per
address, the pod index of ``pods verified``, relists by mark and sweep, and the
in-cluster configuration without the ``kubernetes`` package."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from kdns.cluster import objects, resolver, shrink
from kdns.cluster.kube import informer
from kdns.cluster.store import Store
from kdns.dns import wire
from tests.integration.test_informer import FAST, aio, running
from tests.integration.test_informer_config import tls_front
from tests.support.apiemu import builders

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


def _endpoint(ip: str, ready: bool = True, host: str = "", pod: str = "", node: str = "") -> Any:
    return objects.Endpoint((ip,), ready, host, pod, node)


def _slice(name: str, service: str, endpoints: list[Any], family: str = "IPv4") -> Any:
    return objects.EndpointSlice(
        "default", name, service, family, tuple(endpoints), (objects.EndpointPort("", 80, "TCP"),)
    )


def _deep_size(obj: object, shared: set[int]) -> int:
    """Bytes reachable from obj, each object counted once (``shared`` is the seen set)."""
    size = 0
    todo = [obj]
    while todo:
        item = todo.pop()
        if id(item) in shared or isinstance(item, type):
            continue
        shared.add(id(item))
        size += sys.getsizeof(item)
        todo.extend(gc.get_referents(item))
    return size


# -- packed endpoints ---------------------------------------------------------------------


def test_a_slice_gives_back_the_endpoints_it_was_given() -> None:
    v4 = [
        _endpoint("10.244.0.1", host="web-0", pod="web-0", node="node-a"),
        _endpoint("10.244.0.2", ready=False),
        objects.Endpoint(("10.244.0.3", "10.244.0.4"), True, "", "pod-x", ""),
    ]
    v6 = [_endpoint("fd00::a"), _endpoint("2001:db8::1", ready=False, pod="p")]
    fqdn = [objects.Endpoint(("db.example.org",), True, "", "", "")]
    scoped = [_endpoint("fe80::1%eth0")]
    # The API allows 100 addresses an endpoint; a hand-written manifest may hold more.
    wide = [
        objects.Endpoint(tuple(f"10.1.{i // 250}.{i % 250}" for i in range(300)), True, "", "", "")
    ]
    cases = (("IPv4", v4), ("IPv6", v6), ("FQDN", fqdn), ("IPv6", scoped), ("IPv4", wide))
    for family, endpoints in cases:
        eps = _slice("s", "svc", endpoints, family)
        assert eps.endpoints == tuple(endpoints)
        assert len(eps) == len(endpoints)
        assert eps.addresses() == [a for e in endpoints for a in e.addresses]
        assert eps == _slice("s", "svc", list(endpoints), family)
        assert hash(eps) == hash(_slice("s", "svc", list(endpoints), family))
    assert _slice("s", "svc", v4) != _slice("s", "svc", v4[:2])
    flipped = [_endpoint("10.244.0.1", host="web-0", pod="web-0", node="node-a", ready=False)]
    assert _slice("s", "svc", flipped) != _slice("s", "svc", v4[:1])
    with pytest.raises(AttributeError):
        _slice("s", "svc", v4).name = "other"  # type: ignore[misc]
    assert _slice("s", "svc", v4).as_dict()["endpoints"][1]["ready"] is False


def test_a_slice_holds_no_object_per_endpoint() -> None:
    """15 endpoints as the controller writes them, pod and node names left out as the
    server does without endpoint_pod_names: one packed slice, no Endpoint objects.
    Before (one frozen Endpoint per endpoint, a tuple and a string per address) the
    same slice took about 4,700 bytes."""
    raw = builders.endpoint_slice("web", addresses=[f"10.244.7.{i}" for i in range(15)])
    for i, ep in enumerate(raw["endpoints"]):
        ep["nodeName"] = f"node-{i}"
        ep["targetRef"] = {"kind": "Pod", "name": f"web-7d9f8b6c5d-{i:05d}", "namespace": "default"}
    eps = shrink.endpoint_slice_keeping(frozenset())(raw)
    referents = gc.get_referents(eps)
    assert not any(isinstance(r, objects.Endpoint) for r in referents)
    shared: set[int] = set()
    for text in ("default", "web", "IPv4"):  # interned, shared with every other object
        _deep_size(sys.intern(text), shared)
    _deep_size(eps.ports, shared)  # one per slice either way
    assert _deep_size(eps, shared) < 600
    full = shrink.endpoint_slice(raw)
    assert [e.target_name for e in full.endpoints][:1] == ["web-7d9f8b6c5d-00000"]
    assert [e.node_name for e in full.endpoints][:1] == ["node-0"]
    assert {e.target_name for e in eps.endpoints} == {""}
    assert [e.addresses for e in eps.endpoints] == [e.addresses for e in full.endpoints]


def test_names_left_out_are_still_checked() -> None:
    """Keeping fewer fields must not serve an object the full shrinker skips."""
    raw = builders.endpoint_slice("web")
    raw["endpoints"][0]["nodeName"] = 7
    with pytest.raises(shrink.Invalid, match="nodeName"):
        shrink.endpoint_slice_keeping(frozenset())(raw)


# -- indexes ------------------------------------------------------------------------------


def test_endpoint_addresses_shared_by_services() -> None:
    store = Store()
    store.put_slice(_slice("a-1", "a", [_endpoint("10.244.0.1"), _endpoint("10.244.0.2")]))
    store.put_slice(_slice("a-2", "a", [_endpoint("10.244.0.2")]))
    store.put_slice(_slice("b-1", "b", [_endpoint("10.244.0.2")]))
    assert store.services_with_endpoint_ip("10.244.0.1") == [("default", "a")]
    assert store.services_with_endpoint_ip("10.244.0.2") == [("default", "a"), ("default", "b")]
    # One owner is a key, not a set of one (a set alone is 216 bytes, per address).
    assert all(not isinstance(v, set) for v in store._endpoint_ips.values())
    store.delete_slice("default", "a-2")  # a-1 still holds 10.244.0.2 for service a
    assert store.services_with_endpoint_ip("10.244.0.2") == [("default", "a"), ("default", "b")]
    store.delete_slice("default", "b-1")
    assert store.services_with_endpoint_ip("10.244.0.2") == [("default", "a")]
    store.delete_slice("default", "a-1")
    assert store.services_with_endpoint_ip("10.244.0.2") == []
    assert not store._endpoint_ips


def test_the_pod_index_answers_by_address() -> None:
    store = Store()
    assert store.put_pod_address(objects.PodAddress("default", "web-0", ("10.244.0.5",)))
    assert not store.put_pod_address(objects.PodAddress("default", "web-0", ("10.244.0.5",)))
    # Host-network pods share their node's address, across namespaces.
    for ns, name in (("kube-system", "proxy-a"), ("kube-system", "cni-a"), ("mon", "exp-a")):
        store.put_pod_address(objects.PodAddress(ns, name, ("192.168.0.10",)))
    store.put_pod_address(objects.PodAddress("default", "dual", ("10.244.0.6", "fd00::6")))
    assert store.pod_has_ip("default", "10.244.0.5")
    assert not store.pod_has_ip("other", "10.244.0.5")
    assert store.pod_namespaces("192.168.0.10") == ["kube-system", "mon"]
    assert store.pod_has_ip("default", "fd00:0::6")  # any spelling of the address
    store.delete_pod_address("kube-system", "proxy-a")
    assert store.pod_has_ip("kube-system", "192.168.0.10")  # cni-a still has it
    store.delete_pod_address("kube-system", "cni-a")
    assert store.pod_namespaces("192.168.0.10") == ["mon"]
    # An address that changes leaves nothing behind.
    store.put_pod_address(objects.PodAddress("default", "web-0", ("10.244.0.9",)))
    assert not store.pod_has_ip("default", "10.244.0.5")
    assert store.pod_has_ip("default", "10.244.0.9")
    assert store.pod_count == 3
    assert not store.pods  # no whole pod kept


def test_a_relist_keeps_the_old_state_until_it_finishes() -> None:
    store = Store()
    store.replace(
        services=[_service("a", "10.96.0.1"), _service("b", "10.96.0.2")],
        slices=[_slice("a-1", "a", [_endpoint("10.244.0.1")])],
    )
    relist = store.relist("services")
    relist.put(_service("a", "10.96.0.11"))
    relist.put(_service("c", "10.96.0.3"))
    # Mid-list: the new versions are in, nothing is gone yet.
    assert store.get_service("default", "b") is not None
    assert store.services_with_ip("10.96.0.11") == [("default", "a")]
    assert store.services_with_ip("10.96.0.1") == []
    assert relist.finish() == 1
    assert sorted(store.services) == [("default", "a"), ("default", "c")]
    pods = store.relist("pod_addresses")
    store.put_pod_address(objects.PodAddress("default", "gone", ("10.244.0.7",)))
    pods.put(objects.PodAddress("default", "kept", ("10.244.0.8",)))
    assert pods.finish() == 1
    assert store.pod_namespaces("10.244.0.7") == []
    assert store.pod_has_ip("default", "10.244.0.8")


def _service(name: str, ip: str) -> objects.Service:
    return shrink.service(builders.service(name, cluster_ip=ip))


# -- the informer --------------------------------------------------------------------------


def test_pods_verified_watches_addresses_only_and_relists_them() -> None:
    @aio
    async def scenario() -> None:
        options = informer.Options(
            pods=True, endpoint_fields=frozenset(), page_size=2, backoff=FAST.backoff
        )
        async with running(options, start=False) as run:
            for i in range(5):
                run.emu.put(builders.pod(f"web-{i}", ip=f"10.244.3.{i + 1}"))
            run.emu.put(builders.service("web", cluster_ip="10.96.3.1"))
            slice_raw = builders.endpoint_slice("web", addresses=["10.244.3.1"])
            slice_raw["endpoints"][0]["targetRef"] = {"kind": "Pod", "name": "web-0"}
            run.emu.put(slice_raw)
            run.start()
            await run.until(lambda: run.store.pod_count == 5 and bool(run.store.slices))
            await run.emu.wait_for_watchers(4)
            assert not run.store.pods  # the informer keeps no whole pod
            (eps,) = run.store.slices.values()
            assert eps.endpoints[0].target_name == ""  # not kept without endpoint_pod_names
            settings = resolver.Settings(zones=("cluster.local.",), pods="verified")
            res = resolver.Resolver(run.store, settings)
            name = "10-244-3-2.default.pod.cluster.local."
            assert res.answer(name, "cluster.local.", wire.A).rcode == wire.NOERROR
            # Deleted while the watch was down, then the history compacted: a relist.
            await run.emu.go_down()
            run.emu.delete("v1", "Pod", "web-1", "default")
            run.emu.put(builders.pod("web-9", ip="10.244.3.9"))
            run.emu.compact()
            await run.emu.come_up()
            await run.until(lambda: run.store.has_pod("default", "web-9"))
            await run.until(lambda: not run.store.pod_has_ip("default", "10.244.3.2"))
            assert run.store.pod_count == 5
            assert res.answer(name, "cluster.local.", wire.A).rcode == wire.NXDOMAIN

    scenario()


# -- in-cluster, without the kubernetes package ------------------------------------------

_IN_CLUSTER = """
import asyncio, sys
from kdns.cluster import shrink
from kdns.cluster.kube import client, config

async def main():
    conn = config.load(config.ConnectionOptions(in_cluster=True))
    api = client.Client(conn)
    try:
        listing = await api.list("/api/v1/namespaces", shrink.namespace)
    finally:
        await api.close()
    print(conn.source, sorted(n.name for n in listing.items), "kubernetes" in sys.modules)

asyncio.run(main())
"""


def test_in_cluster_reads_the_service_account_without_the_kubernetes_package(
    tmp_path: Path,
) -> None:
    @aio
    async def scenario() -> None:
        account = tmp_path / "serviceaccount"
        account.mkdir()
        (account / "token").write_text("sa-token\n")
        async with (
            running(start=False, token="sa-token") as run,
            tls_front(run.emu.port, tmp_path) as (port, ca_file, _),
        ):
            (account / "ca.crt").write_bytes(ca_file.read_bytes())
            env = dict(os.environ)
            env.update(KUBERNETES_SERVICE_HOST="127.0.0.1", KUBERNETES_SERVICE_PORT=str(port),
                       KDNS_SERVICE_ACCOUNT_DIR=str(account), PYTHONPATH=str(ROOT))  # fmt: skip
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _IN_CLUSTER, env=env, cwd=ROOT,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            text = out.decode()
            assert text.startswith("in-cluster service account")
            assert "'kube-system'" in text
            assert text.strip().endswith("False"), text  # kubernetes not imported

    scenario()


def test_in_cluster_without_a_pod_environment_says_what_is_missing(tmp_path: Path) -> None:
    from kdns.cluster.kube import config

    with pytest.raises(config.ConfigError, match="KUBERNETES_SERVICE_HOST"):
        config.load(config.ConnectionOptions(), environ={}, service_account_dir=tmp_path)
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    with pytest.raises(config.ConfigError, match=r"ca\.crt"):
        config.load(config.ConnectionOptions(), environ=env, service_account_dir=tmp_path)
