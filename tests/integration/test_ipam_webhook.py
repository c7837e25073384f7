"""``/allocate``: what the Service webhook answers, and the claims behind its answers.

Decisions are checked through :meth:`Allocate.review` (bytes in, bytes out); stickiness
and claims run against the API emulator, with the store fed by the real informers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import jsonpatch
import pytest
from prometheus_client import CollectorRegistry

from kdns.cluster.kube import client, informer
from kdns.cluster.kube import config as kube_config
from kdns.cluster.kube import metrics as kube_metrics
from kdns.cluster.store import Store
from kdns.ipam import claims, cluster, config, leader, webhook
from tests.support import apiemu
from tests.support.apiemu import builders

pytestmark = pytest.mark.timeout(60)

NAMESPACE = "kube-system"
FAST = informer.Options(
    watch_timeout=30,
    inactivity_timeout=10.0,
    backoff=informer.Backoff(initial=0.05, factor=2.0, cap=0.3),
    startup_timeout=2.0,
)


def aio(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh loop, bounded."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        async def bounded() -> None:
            async with asyncio.timeout(30):
                await fn(*args, **kwargs)

        asyncio.run(bounded())

    return run


def service(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    made = builders.service(name, namespace, cluster_ip=None)
    made["spec"].update(spec)
    return made


def review(
    obj: dict[str, Any], *, uid: str = "u-1", dry_run: bool = False, operation: str = "CREATE"
) -> bytes:
    meta = obj.get("metadata") or {}
    request = {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Service"},
        "resource": {"group": "", "version": "v1", "resource": "services"},
        "operation": operation,
        "namespace": meta.get("namespace", "default"),
        "name": meta.get("name", ""),
        "object": obj,
        "dryRun": dry_run,
    }
    doc = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    return json.dumps(doc).encode()


def answer(reply_body: bytes) -> dict[str, Any]:
    doc = json.loads(reply_body)
    assert doc["kind"] == "AdmissionReview"
    response: dict[str, Any] = doc["response"]
    assert response["allowed"] is True
    return response


def patched(obj: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    assert response["patchType"] == "JSONPatch", response
    ops = json.loads(base64.b64decode(response["patch"]))
    result: dict[str, Any] = jsonpatch.apply_patch(obj, ops)
    return result


def handler(
    cfg: config.ClusterIPConfig, store: Store | None = None, **options: Any
) -> webhook.Allocate:
    if store is None:
        store = Store()
        store.mark_synced()
    forwarder = options.pop("forwarder", None)
    allocator = cluster.ClusterAllocator(cfg, store, **options)
    return webhook.Allocate(allocator, forwarder=forwarder, registry=CollectorRegistry())


# -- decisions, no API server -----------------------------------------------------------


@aio
async def test_sets_cluster_ip_and_families_as_the_api_server_defaults_them() -> None:
    hook = handler(config.ClusterIPConfig(cidrs=("10.96.0.0/24",)))
    obj = service("web")
    reply = await hook.review(review(obj))
    assert reply.status == 200
    spec = patched(obj, answer(reply.body))["spec"]
    ip = spec["clusterIP"]
    assert spec["clusterIPs"] == [ip]
    assert spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack"
    assert 16 < int(ip.rsplit(".", 1)[1]) < 255  # the dynamic band of a /24 starts at .17
    # An empty clusterIP is unset, as for the API server; dual-stack follows the policy.
    dual = handler(config.ClusterIPConfig(cidrs=("10.96.0.0/24", "fd00::/120")))
    obj = service("db", clusterIP="", ipFamilyPolicy="PreferDualStack", ipFamilies=["IPv6"])
    spec = patched(obj, answer((await dual.review(review(obj))).body))["spec"]
    assert spec["ipFamilies"] == ["IPv6", "IPv4"] and ":" in spec["clusterIPs"][0]
    assert spec["clusterIP"] == spec["clusterIPs"][0] and "." in spec["clusterIPs"][1]
    # default/kubernetes gets network+1, as the API server's bootstrap gives it.
    obj = service("kubernetes")
    assert patched(obj, answer((await hook.review(review(obj))).body))["spec"]["clusterIP"] == (
        "10.96.0.1"
    )


@aio
async def test_leaves_headless_external_name_and_addressed_services_alone() -> None:
    hook = handler(config.ClusterIPConfig())
    untouched = [
        service("headless", clusterIP="None"),
        builders.service("mail", type_="ExternalName", external_name="mail.example.com"),
        builders.service("fixed", cluster_ip="10.96.0.50"),
        service("pair", clusterIPs=["10.96.0.51"]),
    ]
    for obj in untouched:
        response = answer((await hook.review(review(obj))).body)
        assert "patch" not in response and "warnings" not in response, obj
    # Not a CREATE, or not a Service: nothing either.
    response = answer((await hook.review(review(service("web"), operation="UPDATE"))).body)
    assert "patch" not in response
    assert hook.allocator.status()[0].used == 0
    bad = await hook.review(b'{"apiVersion": "v1", "kind": "Pod"}')
    assert bad.status == 400


@aio
async def test_no_opinion_until_synced_and_on_refusals() -> None:
    store = Store()
    hook = handler(config.ClusterIPConfig(), store)
    response = answer((await hook.review(review(service("web")))).body)
    assert "patch" not in response and "not synced" in response["warnings"][0]
    store.mark_synced()
    # The API server refuses this itself; kdns stays out of the way and says why.
    obj = service("bad", ipFamilyPolicy="RequireDualStack")
    response = answer((await hook.review(review(obj))).body)
    assert "patch" not in response
    assert "not configured for dual-stack" in response["warnings"][0]
    assert hook.metrics.no_opinion.labels("invalid")._value.get() == 1


@aio
async def test_reserved_addresses_only_for_their_owner_or_by_name() -> None:
    # A /29 has six usable addresses and no static band; five are reserved.
    cfg = config.parse_clusterip(
        ["10.96.0.0/29"],
        [["reserve", "10.96.0.1", "10.96.0.2", "10.96.0.3", "10.96.0.4"],
         ["reserve", "10.96.0.5", "kube-system/kube-dns"]],
    )  # fmt: skip
    hook = handler(cfg)
    obj = service("web")
    assert patched(obj, answer((await hook.review(review(obj))).body))["spec"]["clusterIP"] == (
        "10.96.0.6"
    )
    # Only reserved addresses are left: a dynamic pick refuses them, the API server decides.
    response = answer((await hook.review(review(service("other")))).body)
    assert "patch" not in response and "range is full" in response["warnings"][0]
    obj = service("kube-dns", "kube-system")
    assert patched(obj, answer((await hook.review(review(obj))).body))["spec"]["clusterIP"] == (
        "10.96.0.5"
    )
    assert [s.used for s in hook.allocator.status()] == [2]


@aio
async def test_dry_run_has_no_side_effects() -> None:
    hook = handler(config.ClusterIPConfig(cidrs=("10.96.0.0/28",)))
    obj = service("web")
    response = answer((await hook.review(review(obj, dry_run=True))).body)
    assert patched(obj, response)["spec"]["clusterIP"].startswith("10.96.0.")
    assert hook.allocator.status()[0].used == 0
    assert hook.metrics.requests.labels("dry_run")._value.get() == 1


# -- against the emulator: informers, stickiness, claims ---------------------------------


@dataclass
class Replica:
    store: Store
    informers: informer.Informers
    rest: leader.Rest
    task: asyncio.Task[None]

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.rest.close()


@contextlib.asynccontextmanager
async def replica(emu: apiemu.Emulator) -> AsyncIterator[Replica]:
    """A store fed by its own informers and a REST client of its own: one kdns replica."""
    conn = kube_config.load(kube_config.ConnectionOptions(endpoint=emu.url))
    store = Store()
    informers = informer.Informers(
        store, client.Client(conn), FAST, stats=kube_metrics.Metrics(CollectorRegistry())
    )
    task = asyncio.ensure_future(informers.run())
    made = Replica(store, informers, leader.Rest(conn), task)
    try:
        async with asyncio.timeout(10):
            await informers.synced.wait()
        yield made
    finally:
        await made.close()


async def until(predicate: Callable[[], bool], store: Store | None = None) -> None:
    """Wait (bounded by the test's timeout) for a condition fed by watch events."""
    changed = asyncio.Event()
    if store is not None:
        store.subscribe(changed.set)
    while not predicate():
        changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.05):
                await changed.wait()


def leases(emu: apiemu.Emulator) -> dict[str, str]:
    found = emu.objects("coordination.k8s.io/v1", "Lease", NAMESPACE)
    return {o["metadata"]["name"]: o["spec"]["holderIdentity"] for o in found}


@aio
async def test_sticky_after_delete_and_recreate_through_the_watch() -> None:
    async with apiemu.serving() as emu, replica(emu) as one:
        claimer = claims.Claims(one.rest, NAMESPACE)
        hook = handler(config.ClusterIPConfig(cidrs=("10.96.0.0/16",)), one.store, claimer=claimer)
        obj = service("web")
        first = patched(obj, answer((await hook.review(review(obj))).body))
        ip = first["spec"]["clusterIP"]
        assert leases(emu) == {claims.claim_name(ip): "default/web"}
        emu.put(first)
        await until(lambda: one.store.get_service("default", "web") is not None, one.store)
        emu.delete("v1", "Service", "web", "default")
        await until(lambda: one.store.get_service("default", "web") is None, one.store)
        # Another Service first: it must not get web's old address while web may come back.
        other = service("other")
        assert (
            patched(other, answer((await hook.review(review(other))).body))["spec"]["clusterIP"]
            != ip
        )
        again = patched(obj, answer((await hook.review(review(obj, uid="u-2"))).body))
        assert again["spec"]["clusterIP"] == ip
        # The address was freed by the delete: a dry run elsewhere would not pick it.
        assert hook.allocator.memory == {}


@aio
async def test_claims_held_by_the_api_server_or_another_service_are_skipped() -> None:
    async with apiemu.serving() as emu, replica(emu) as one:
        emu.put({"apiVersion": "networking.k8s.io/v1", "kind": "IPAddress",
                 "metadata": {"name": "10.96.0.4"},
                 "spec": {"parentRef": {"group": "", "resource": "services",
                                        "namespace": "default", "name": "elsewhere"}}})  # fmt: skip
        claimer = claims.Claims(one.rest, NAMESPACE)
        assert (await claimer.claim("10.96.0.5", ("default", "early"))).granted
        cfg = config.parse_clusterip(
            ["10.96.0.0/29"], [["reserve", "10.96.0.1", "10.96.0.2", "10.96.0.3"]]
        )
        hook = handler(cfg, one.store, claimer=claimer)
        obj = service("web")
        assert (
            patched(obj, answer((await hook.review(review(obj))).body))["spec"]["clusterIP"]
            == "10.96.0.6"
        )
        # Nothing left now: no opinion, and no stray claim was left behind.
        response = answer((await hook.review(review(service("late")))).body)
        assert "patch" not in response
        assert sorted(leases(emu)) == [claims.claim_name("10.96.0.5"),
                                       claims.claim_name("10.96.0.6")]  # fmt: skip
        # A retried call for the same Service keeps its claim; dry runs claim nothing.
        assert (await claimer.claim("10.96.0.6", ("default", "web"))).granted
        await hook.review(review(service("dry"), dry_run=True))
        assert len(leases(emu)) == 2


@aio
async def test_expired_claims_are_taken_over_and_collected() -> None:
    async with apiemu.serving() as emu:
        rest = leader.Rest(kube_config.load(kube_config.ConnectionOptions(endpoint=emu.url)))
        try:
            old = claims.Claims(rest, NAMESPACE, ttl=1.0)
            assert (await old.claim("fd00::1:0", ("default", "a"))).granted
            assert claims.address_of(claims.claim_name("fd00::1:0")) == "fd00::1:0"
            later = claims.Claims(rest, NAMESPACE, ttl=1.0)
            assert not (await later.claim("fd00::1:0", ("default", "b"))).granted
            assert (await later.claim("10.96.0.9", ("default", "b"))).granted
            await asyncio.sleep(1.1)  # the claims' own lifetime, measured in wall time
            assert (await later.claim("fd00::1:0", ("default", "b"))).granted
            assert leases(emu)[claims.claim_name("fd00::1:0")] == "default/b"
            await asyncio.sleep(1.1)
            assert await later.collect() == []
            assert leases(emu) == {}
        finally:
            await rest.close()
