"""The admission webhook: decisions tested on bytes, then end to end over real HTTPS
with a test CA, the patch applied by the jsonpatch library."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import prometheus_client
import pytest
from aiohttp import web

from kdns.cluster import objects
from kdns.envinject import certs, tls, webhook
from tests.support.envinject import KUBERNETES, KUBERNETES_ENV, FakeServices, env_lines, svc

REDIS = svc("shop", "redis-master", "10.0.0.11", ("", 6379, "TCP"))
REDIS_ENV = """
REDIS_MASTER_SERVICE_HOST=10.0.0.11
REDIS_MASTER_SERVICE_PORT=6379
REDIS_MASTER_PORT=tcp://10.0.0.11:6379
REDIS_MASTER_PORT_6379_TCP=tcp://10.0.0.11:6379
REDIS_MASTER_PORT_6379_TCP_PROTO=tcp
REDIS_MASTER_PORT_6379_TCP_PORT=6379
REDIS_MASTER_PORT_6379_TCP_ADDR=10.0.0.11
"""
DB = svc("shop", "db", "10.0.0.12", ("pg", 5432, "TCP"))
DB_ENV = """
DB_SERVICE_HOST=10.0.0.12
DB_SERVICE_PORT=5432
DB_SERVICE_PORT_PG=5432
DB_PORT=tcp://10.0.0.12:5432
DB_PORT_5432_TCP=tcp://10.0.0.12:5432
DB_PORT_5432_TCP_PROTO=tcp
DB_PORT_5432_TCP_PORT=5432
DB_PORT_5432_TCP_ADDR=10.0.0.12
"""


def env(text: str) -> list[dict[str, str]]:
    return [{"name": n, "value": v} for n, v in env_lines(text)]


def api_pod(**spec: Any) -> dict[str, Any]:
    """A pod as the API server hands it to mutating webhooks: defaulted, no name yet."""
    base: dict[str, Any] = {
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "securityContext": {},
        "schedulerName": "default-scheduler",
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
        "containers": [
            {
                "name": "app",
                "image": "registry.example/app:1",
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
            }
        ],
    }
    base.update(spec)
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "generateName": "app-5f7c9d-",
            "namespace": "shop",
            "creationTimestamp": None,
            "labels": {"app": "app", "pod-template-hash": "5f7c9d"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "app-5f7c9d",
                    "uid": "0c1e5c1d-1b47-4a53-9e3b-7d1c1f0e4d7a",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": base,
        "status": {},
    }


def review(
    obj: dict[str, Any] | None,
    uid: str = "705ab4f5-6393-11e8-b7cc-42010a800002",
    operation: str = "CREATE",
    dry_run: bool = False,
    kind: str = "Pod",
    resource: str = "pods",
    sub_resource: str | None = None,
) -> dict[str, Any]:
    """An AdmissionReview v1 request shaped as kube-apiserver sends it."""
    gvk = {"group": "", "version": "v1", "kind": kind}
    gvr = {"group": "", "version": "v1", "resource": resource}
    request: dict[str, Any] = {
        "uid": uid,
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "namespace": "shop",
        "operation": operation,
        "userInfo": {
            "username": "system:serviceaccount:kube-system:replicaset-controller",
            "uid": "a7d8f2c4-7c1d-4c5e-9f0e-2b6f0e8f6a11",
            "groups": ["system:serviceaccounts", "system:authenticated"],
        },
        "object": obj,
        "oldObject": None,
        "dryRun": dry_run,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
    }
    if sub_resource:
        request["subResource"] = sub_resource
    return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request}


def injector(src: Any = None) -> webhook.Injector:
    services = src if src is not None else FakeServices(KUBERNETES, REDIS, DB)
    return webhook.Injector(services, prometheus_client.CollectorRegistry())


def respond(inj: webhook.Injector, doc: Any) -> dict[str, Any]:
    reply = inj.review(json.dumps(doc).encode())
    assert reply.status == 200
    out: dict[str, Any] = json.loads(reply.body)
    assert out["apiVersion"] == "admission.k8s.io/v1"
    assert out["kind"] == "AdmissionReview"
    assert out["response"]["allowed"] is True
    return out["response"]  # type: ignore[no-any-return]


def apply(pod: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    if "patch" not in response:
        return pod
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    result: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(pod), ops)
    return result


# --- decisions, no sockets -------------------------------------------------------------


def test_pod_create_gets_kubelet_set_before_its_own_env() -> None:
    own = [{"name": "CACHE", "value": "$(REDIS_MASTER_SERVICE_HOST):6379"}]
    pod = api_pod(
        initContainers=[{"name": "migrate", "image": "m"}],
        containers=[{"name": "app", "image": "a", "env": own}],
    )
    response = respond(injector(), review(pod))
    assert response["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert "warnings" not in response
    expected = copy.deepcopy(pod)
    injected = env(DB_ENV) + env(KUBERNETES_ENV) + env(REDIS_ENV)
    expected["spec"]["initContainers"][0]["env"] = injected
    expected["spec"]["containers"][0]["env"] = injected + own
    assert apply(pod, response) == expected


def test_links_off_gives_kubernetes_only() -> None:
    pod = api_pod(enableServiceLinks=False)
    after = apply(pod, respond(injector(), review(pod)))
    assert after["spec"]["containers"][0]["env"] == env(KUBERNETES_ENV)


def test_annotation_narrows_even_with_links_off() -> None:
    pod = api_pod(enableServiceLinks=False)
    pod["metadata"]["annotations"] = {webhook.ANNOTATION: " redis-master , nope,"}
    response = respond(injector(), review(pod))
    after = apply(pod, response)
    assert after["spec"]["containers"][0]["env"] == env(KUBERNETES_ENV) + env(REDIS_ENV)
    (warning,) = response["warnings"]
    assert warning == "kdns envinject: kdns.io/inject-services: no cluster IP in shop: nope"


def test_annotation_star_is_the_full_set_with_links_off() -> None:
    pod = api_pod(enableServiceLinks=False)
    pod["metadata"]["annotations"] = {webhook.ANNOTATION: "*"}
    after = apply(pod, respond(injector(), review(pod)))
    assert after["spec"]["containers"][0]["env"] == (
        env(DB_ENV) + env(KUBERNETES_ENV) + env(REDIS_ENV)
    )


def test_reinvocation_yields_no_patch() -> None:
    inj = injector()
    pod = api_pod()
    once = apply(pod, respond(inj, review(pod)))
    again = respond(inj, review(once))
    assert "patch" not in again and "patchType" not in again


def test_dry_run_is_answered_the_same() -> None:
    inj = injector()
    pod = api_pod()
    wet, dry = respond(inj, review(pod)), respond(inj, review(pod, dry_run=True))
    assert wet == dry


@pytest.mark.parametrize(
    "change",
    [
        {"operation": "UPDATE"},
        {"operation": "DELETE"},
        {"kind": "Service", "resource": "services"},
        {"sub_resource": "ephemeralcontainers", "operation": "UPDATE"},
        {"sub_resource": "binding", "kind": "Binding"},
    ],
)
def test_anything_but_pod_create_is_allowed_unchanged(change: dict[str, Any]) -> None:
    response = respond(injector(), review(api_pod(), **change))
    assert response == {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True}


def test_not_synced_admits_with_a_warning_and_no_patch() -> None:
    response = respond(injector(FakeServices(KUBERNETES, synced=False)), review(api_pod()))
    assert "patch" not in response
    assert "not synced" in response["warnings"][0]


@pytest.mark.parametrize(
    "obj",
    [
        None,
        {"kind": "Pod", "metadata": {}, "spec": {"containers": []}},
        {"kind": "Pod", "metadata": {}},
        {"kind": "Pod", "spec": {"containers": [{"name": "c", "env": {"A": "1"}}]}},
        {"kind": "Pod", "metadata": {"annotations": ["x"]}, "spec": {"containers": []}},
        {"kind": "Pod", "metadata": [], "spec": {"containers": [{"name": "c"}]}},
    ],
)
def test_pods_that_cannot_be_read_are_admitted_with_a_warning(obj: Any) -> None:
    inj = injector()
    response = respond(inj, review(obj))
    assert "patch" not in response
    assert response["warnings"][0].startswith("kdns envinject: ")
    assert inj.metrics.errors.labels("invalid_pod")._value.get() == 1


class Broken(FakeServices):
    def services_in(self, namespace: str) -> Sequence[objects.Service]:
        raise RuntimeError("cache exploded")


def test_internal_error_admits_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    inj = injector(Broken(KUBERNETES))
    response = respond(inj, review(api_pod()))
    assert "patch" not in response
    assert "internal error" in response["warnings"][0]
    assert "cache exploded" in caplog.text


@pytest.mark.parametrize(
    "body,message",
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}', "expected"),
        (b'{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}', "expected"),
        (b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}', "no request"),
        (b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}', "uid"),
    ],
)
def test_not_an_admission_review_is_400(body: bytes, message: str) -> None:
    reply = injector().review(body)
    assert reply.status == 400
    assert message in reply.body.decode()


# --- end to end over HTTPS -------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    issued = certs.generate("kdns-envinject", "kube-system", ip_addresses=["127.0.0.1"])
    return certs.write(issued, tmp_path_factory.mktemp("tls"))


@contextlib.asynccontextmanager
async def serving(app: web.Application, ctx: ssl.SSLContext) -> AsyncIterator[int]:
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        await web.SockSite(runner, sock, ssl_context=ctx).start()
        yield sock.getsockname()[1]
    finally:
        await runner.cleanup()
        sock.close()


async def run_e2e(
    tls_files: tuple[Path, Path, Path],
    src: FakeServices,
    body: Any,
) -> tuple[prometheus_client.CollectorRegistry, Any]:
    cert, key, ca = tls_files
    registry = prometheus_client.CollectorRegistry()
    app = webhook.make_app(src, registry=registry)
    client_ctx = ssl.create_default_context(cafile=ca)
    async with (
        serving(app, tls.ReloadingContext(cert, key).context) as port,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx)) as session,
    ):
        url = f"https://127.0.0.1:{port}/inject"
        return registry, await body(session, url)


def test_e2e_inject_apply_and_reinvoke(tls_files: tuple[Path, Path, Path]) -> None:
    src = FakeServices(KUBERNETES, REDIS)

    async def body(session: aiohttp.ClientSession, url: str) -> None:
        pod = api_pod()
        async with session.post(url, json=review(pod)) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/json"
            answer = await resp.json()
        assert answer["response"]["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
        after = apply(pod, answer["response"])
        expected = copy.deepcopy(pod)
        expected["spec"]["containers"][0]["env"] = env(KUBERNETES_ENV) + env(REDIS_ENV)
        assert after == expected

        # The Service goes away after the first injection: the injected pod keeps what it
        # got (a reinvocation adds and removes nothing), a new pod no longer gets it.
        src.delete("shop", "redis-master")
        async with session.post(url, json=review(after, uid="second")) as resp:
            again = (await resp.json())["response"]
        assert again == {"uid": "second", "allowed": True}
        async with session.post(url, json=review(pod, uid="third")) as resp:
            fresh = apply(pod, (await resp.json())["response"])
        assert fresh["spec"]["containers"][0]["env"] == env(KUBERNETES_ENV)

    registry, _ = asyncio.run(run_e2e(tls_files, src, body))
    sample = registry.get_sample_value
    assert sample("kdns_envinject_requests_total", {"outcome": "patched"}) == 2
    assert sample("kdns_envinject_requests_total", {"outcome": "unchanged"}) == 1
    assert sample("kdns_envinject_patches_total") == 2
    assert sample("kdns_envinject_variables_injected_total") == 15 + 8
    assert sample("kdns_envinject_request_duration_seconds_count") == 3


def test_e2e_bad_requests(tls_files: tuple[Path, Path, Path]) -> None:
    async def chunked(data: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(data), 1 << 20):
            yield data[i : i + (1 << 20)]

    async def body(session: aiohttp.ClientSession, url: str) -> list[int]:
        statuses = []
        for data in (b"not json", b'{"kind":"Pod"}'):
            async with session.post(url, data=data) as resp:
                statuses.append(resp.status)
        big = b" " * (webhook.MAX_BODY + 1)
        async with session.post(url, data=big) as resp:
            statuses.append(resp.status)
        # Without Content-Length the limit holds too (chunked transfer).
        async with session.post(url, data=chunked(big)) as resp:
            statuses.append(resp.status)
        # Exactly at the limit is accepted (and is not an AdmissionReview: 400).
        async with session.post(url, data=b" " * webhook.MAX_BODY) as resp:
            statuses.append(resp.status)
        async with session.get(url) as resp:
            statuses.append(resp.status)
        return statuses

    registry, statuses = asyncio.run(run_e2e(tls_files, FakeServices(KUBERNETES), body))
    assert statuses == [400, 400, 413, 413, 400, 405]
    assert registry.get_sample_value("kdns_envinject_errors_total", {"reason": "too_large"}) == 2


def test_e2e_fifty_concurrent_requests_each_get_their_uid(
    tls_files: tuple[Path, Path, Path],
) -> None:
    async def one(session: aiohttp.ClientSession, url: str, i: int) -> tuple[str, int]:
        pod = api_pod()
        pod["spec"]["containers"][0]["env"] = [{"name": "N", "value": str(i)}]
        async with session.post(url, json=review(pod, uid=f"uid-{i}")) as resp:
            answer = (await resp.json())["response"]
        after = apply(pod, answer)
        own = after["spec"]["containers"][0]["env"][-1]
        return answer["uid"], int(own["value"])

    async def body(session: aiohttp.ClientSession, url: str) -> list[tuple[str, int]]:
        return await asyncio.gather(*(one(session, url, i) for i in range(50)))

    _, results = asyncio.run(run_e2e(tls_files, FakeServices(KUBERNETES, REDIS), body))
    assert results == [(f"uid-{i}", i) for i in range(50)]
