"""Lease election against the API emulator, and replicas allocating through the leader.

Every replica here has its own store, informers and REST client, as separate kdns
processes would; they share only the emulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from kdns.cluster.kube import config as kube_config
from kdns.envinject import certs
from kdns.ipam import claims, cluster, config, leader, webhook
from tests.integration.test_ipam_webhook import (
    NAMESPACE,
    aio,
    answer,
    patched,
    replica,
    review,
    service,
)
from tests.support import apiemu

pytestmark = pytest.mark.timeout(60)

LEASE = "kdns-clusterip"


def elector(rest: leader.Rest, ident: str) -> leader.Elector:
    """Short timings (2 s lease, 1 s renew deadline, 0.1 s retry) keep the tests quick."""
    return leader.Elector(
        rest, NAMESPACE, LEASE, ident, lease_duration=2.0, renew_deadline=1.0, retry_period=0.1
    )


def rest_for(emu: apiemu.Emulator) -> leader.Rest:
    return leader.Rest(kube_config.load(kube_config.ConnectionOptions(endpoint=emu.url)))


async def until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        # Leadership also ends by the clock alone (no event to wait on): poll, bounded.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(*electors: leader.Elector) -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks = [asyncio.ensure_future(e.run()) for e in electors]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for e in electors:
            await e.rest.close()


def lease(emu: apiemu.Emulator) -> dict[str, Any]:
    found = emu.get("coordination.k8s.io/v1", "Lease", LEASE, NAMESPACE)
    assert found is not None
    spec: dict[str, Any] = found["spec"]
    return spec


@aio
async def test_only_one_leads_and_release_hands_over_at_once() -> None:
    async with apiemu.serving() as emu:
        a = elector(rest_for(emu), "a_127.0.0.1:1")
        b = elector(rest_for(emu), "b_127.0.0.1:2")
        async with running(a, b) as tasks:
            await until(lambda: a.is_leader or b.is_leader)
            first, second = (a, b) if a.is_leader else (b, a)
            await until(lambda: second.leader == first.identity)
            for _ in range(10):  # several renewals: still exactly one
                assert first.is_leader and not second.is_leader
                await asyncio.sleep(0.1)
            spec = lease(emu)
            assert spec["holderIdentity"] == first.identity
            assert spec["leaseDurationSeconds"] == 2 and spec["leaseTransitions"] == 0
            assert spec["renewTime"].endswith("Z") and "." in spec["renewTime"]
            assert second.leader_address() == first.identity.split("_")[1]
            # A clean stop releases the Lease: the other takes over well before expiry.
            stopped_at = asyncio.get_running_loop().time()
            tasks[[a, b].index(first)].cancel()
            await until(lambda: second.is_leader, timeout=1.5)
            assert asyncio.get_running_loop().time() - stopped_at < 1.5
            assert lease(emu)["holderIdentity"] == second.identity
            assert lease(emu)["leaseTransitions"] == 1


@aio
async def test_an_expired_lease_is_taken_over_and_a_live_one_is_not() -> None:
    async with apiemu.serving() as emu:
        now = leader.microtime()
        ghost = leader.Record("ghost_10.0.0.1:9443", 1, now, now, 3)
        meta = {"name": LEASE, "namespace": NAMESPACE}
        emu.put({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                 "spec": ghost.spec()})  # fmt: skip
        b = elector(rest_for(emu), "b_127.0.0.1:2")
        async with running(b):
            await until(lambda: b.leader == "ghost_10.0.0.1:9443")
            assert not b.is_leader and b.leader_address() == "10.0.0.1:9443"
            # The ghost never renews: one lease duration after b first saw it, b takes over.
            await until(lambda: b.is_leader, timeout=3.0)
            assert lease(emu)["holderIdentity"] == b.identity
            assert lease(emu)["leaseTransitions"] == 4


@aio
async def test_a_leader_that_cannot_renew_stops_leading_before_others_may_take_over() -> None:
    async with apiemu.serving() as emu:
        a = elector(rest_for(emu), "a_127.0.0.1:1")
        async with running(a):
            await until(lambda: a.is_leader)
            await emu.go_down()
            lost_at = asyncio.get_running_loop().time()
            await until(lambda: not a.is_leader, timeout=2.0)
            # Within renew_deadline (1 s) of the last renewal, under the 2 s lease duration.
            assert asyncio.get_running_loop().time() - lost_at <= 1.2
            await emu.come_up()
            await until(lambda: a.is_leader, timeout=3.0)


def test_identity_round_trip() -> None:
    assert leader.address_of(leader.identity("kdns-x_y", "10.244.0.5", 9443)) == "10.244.0.5:9443"
    assert leader.address_of(leader.identity("p", "fd00::5", 9443)) == "[fd00::5]:9443"
    assert leader.address_of("some-controller-manager-id") is None
    with pytest.raises(ValueError):
        leader.Elector(leader.Rest.__new__(leader.Rest), "ns", "l", "i", renew_deadline=20.0)


# -- two replicas, one range, concurrent creates -----------------------------------------


def tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext, str]:
    """The one serving pair every replica mounts, and a client that trusts its CA."""
    issued = certs.generate("kdns-webhook", NAMESPACE)
    cert, key, ca = certs.write(issued, tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(ca))
    return server, client, f"kdns-webhook.{NAMESPACE}.svc"


@contextlib.asynccontextmanager
async def serving_replica(
    emu: apiemu.Emulator, name: str, cfg: config.ClusterIPConfig,
    pki: tuple[ssl.SSLContext, ssl.SSLContext, str], *, elect: bool = True,
) -> AsyncIterator[tuple[str, webhook.Allocate, cluster.ClusterAllocator]]:  # fmt: skip
    server_ctx, client_ctx, server_name = pki
    async with replica(emu) as one:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        ident = leader.identity(name, "127.0.0.1", port)
        chosen = elector(leader.Rest(one.rest.connection), ident) if elect else None
        allocator = cluster.ClusterAllocator(
            cfg, one.store, claimer=claims.Claims(one.rest, NAMESPACE), elector=chosen
        )
        forwarder = webhook.Forwarder(ssl_context=client_ctx, server_hostname=server_name)
        handler = webhook.Allocate(allocator, forwarder=forwarder, registry=CollectorRegistry())
        app = web.Application()
        webhook.add_routes(app, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock, ssl_context=server_ctx).start()
        task = asyncio.ensure_future(allocator.run(tick=0.1))
        try:
            yield f"127.0.0.1:{port}", handler, allocator
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await forwarder.close()
            if chosen is not None:
                await chosen.rest.close()
            await runner.cleanup()


async def create_many(
    handlers: list[webhook.Allocate], count: int
) -> tuple[list[str], list[dict[str, Any]]]:
    async def one(i: int) -> dict[str, Any]:
        obj = service(f"svc-{i}")
        reply = await handlers[i % len(handlers)].review(review(obj, uid=f"u-{i}"))
        return answer(reply.body) | {"_obj": obj}

    responses = await asyncio.gather(*(one(i) for i in range(count)))
    ips = [patched(r["_obj"], r)["spec"]["clusterIP"] for r in responses if "patch" in r]
    return ips, list(responses)


@aio
async def test_two_replicas_allocating_concurrently_never_share_an_address(
    tmp_path: Path,
) -> None:
    # A /27: 30 usable addresses, 16 static and 14 dynamic; 24 creates fill most of both.
    cfg = config.ClusterIPConfig(cidrs=("10.96.0.0/27",))
    pki = tls(tmp_path)
    async with (
        apiemu.serving() as emu,
        serving_replica(emu, "a", cfg, pki) as (_, hook_a, alloc_a),
        serving_replica(emu, "b", cfg, pki) as (_, hook_b, alloc_b),
    ):
        await until(lambda: alloc_a.leading != alloc_b.leading)
        follower = alloc_b if alloc_a.leading else alloc_a
        await until(lambda: follower.leader_address() is not None)
        ips, responses = await create_many([hook_a, hook_b], 24)
        assert len(ips) == 24, [r.get("warnings") for r in responses]
        assert len(set(ips)) == 24
        forwarded = hook_a if follower is alloc_a else hook_b
        assert forwarded.metrics.requests.labels("forwarded")._value.get() == 12
        claimed = {o["metadata"]["name"] for o in emu.objects("coordination.k8s.io/v1", "Lease")}
        assert {claims.claim_name(ip) for ip in ips} <= claimed


@aio
async def test_two_replicas_that_both_believe_they_lead_still_never_share(tmp_path: Path) -> None:
    """Split brain (no election at all): the claims alone keep addresses unique."""
    cfg = config.ClusterIPConfig(cidrs=("10.96.0.0/28",))  # 14 usable, all dynamic
    pki = tls(tmp_path)
    async with (
        apiemu.serving() as emu,
        serving_replica(emu, "a", cfg, pki, elect=False) as (_, hook_a, _a),
        serving_replica(emu, "b", cfg, pki, elect=False) as (_, hook_b, _b),
    ):
        ips, responses = await create_many([hook_a, hook_b], 14)
        assert len(set(ips)) == len(ips)
        # Each replica only learns of the other's picks through refused claims, yet
        # nearly the whole range gets handed out; the rest is left to the API server.
        assert len(ips) >= 10, [r.get("warnings") for r in responses]
