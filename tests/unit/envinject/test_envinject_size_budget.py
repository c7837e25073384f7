"""The environment size budget, through the webhook over real HTTPS: a namespace with
500 Services injects tens of thousands of variables (kubernetes#84539's E2BIG); the pod
is still admitted, with a warning naming the annotation, and counted in
kdns_envinject_oversized_total. The annotation brings it back under the budget."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kdns.envinject import certs, envvars, webhook
from tests.support.envinject import KUBERNETES, FakeServices, svc
from tests.unit.envinject.test_envinject_webhook import api_pod, review, run_e2e

FIVE_PORTS = tuple((f"p{i}", 8000 + i, "TCP") for i in range(5))


def big_namespace(count: int = 500) -> FakeServices:
    services = [
        svc("shop", f"service-number-{i:03d}", f"10.0.{i // 250}.{i % 250 + 1}", *FIVE_PORTS)
        for i in range(count)
    ]
    return FakeServices(KUBERNETES, *services)


def five_containers() -> dict[str, Any]:
    return api_pod(containers=[{"name": f"c{i}", "image": "a"} for i in range(5)])


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    issued = certs.generate("kdns-webhook", "kube-system", ip_addresses=["127.0.0.1"])
    return certs.write(issued, tmp_path_factory.mktemp("tls"))


def post_all(tls_files: tuple[Path, Path, Path], src: FakeServices, pods: list[Any]) -> Any:
    async def body(session: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
        out = []
        for i, pod in enumerate(pods):
            async with session.post(url, json=review(pod, uid=f"u{i}")) as resp:
                assert resp.status == 200
                out.append((await resp.json())["response"])
        return out

    return asyncio.run(run_e2e(tls_files, src, body))


def test_500_services_warn_and_count_and_the_annotation_narrows(
    tls_files: tuple[Path, Path, Path],
) -> None:
    narrowed = five_containers()
    narrowed["metadata"]["annotations"] = {
        webhook.ANNOTATION: "service-number-001,service-number-002"
    }
    registry, (full, narrow) = post_all(tls_files, big_namespace(), [five_containers(), narrowed])
    assert full["allowed"] is True and full["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(full["patch"]))
    per_container = len(ops[0]["value"])
    assert len(ops) == 5 and per_container > 6000
    (warning,) = full["warnings"]
    assert f"{per_container} service variables" in warning
    assert "E2BIG" in warning and webhook.ANNOTATION in warning
    assert f"{envvars.SIZE_BUDGET // 1024} KiB budget" in warning
    assert "warnings" not in narrow  # two services are far under the budget
    assert registry.get_sample_value("kdns_envinject_oversized_total") == 1
    assert registry.get_sample_value("kdns_envinject_requests_total", {"outcome": "patched"}) == 2


def test_the_size_is_counted_as_execve_counts_it(tls_files: tuple[Path, Path, Path]) -> None:
    """A small namespace: no warning; a variable costs NAME=value, its NUL, its pointer."""
    src = big_namespace(0)
    registry, (response,) = post_all(tls_files, src, [five_containers()])
    assert "warnings" not in response
    ops = json.loads(base64.b64decode(response["patch"]))
    used = sum(envvars.EnvVar(e["name"], e["value"]).exec_size for e in ops[0]["value"])
    assert used == sum(len(f"{e['name']}={e['value']}") + 1 + 8 for e in ops[0]["value"])
    assert registry.get_sample_value("kdns_envinject_oversized_total") == 0
