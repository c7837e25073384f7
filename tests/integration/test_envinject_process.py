"""The service-variables webhook in a running kdns, fed by the (emulated) API server.

The webhook's rules are tested in-process elsewhere; this checks what an operator
deploys: a Corefile ``envinject`` block beside ``kubernetes``, real HTTPS with a CA from
``kdns envinject certs``, Services arriving through the informers' watch, including a
Service deleted after a first injection.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import jsonpatch

from tests.support import apiemu
from tests.support.envinject import kdns_with_webhooks
from tests.support.process import ROOT, KdnsCommand, free_port, wait_until


def _review(pod: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def _post(url: str, body: dict[str, Any], context: ssl.SSLContext) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, context=context, timeout=5) as resp:
        result: dict[str, Any] = json.loads(resp.read())
    return result


def _injected(url: str, context: ssl.SSLContext) -> dict[str, str]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": "shop", "generateName": "app-"},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }
    review = _review(pod)
    answer = _post(url, review, context)["response"]
    assert answer["uid"] == review["request"]["uid"]
    assert answer["allowed"] is True
    if "patch" not in answer:
        return {}
    patch = jsonpatch.JsonPatch(json.loads(base64.b64decode(answer["patch"])))
    patched = patch.apply(pod)
    return {e["name"]: e["value"] for e in patched["spec"]["containers"][0].get("env", [])}


def test_webhook_in_a_running_kdns_follows_the_api(tmp_path: Path) -> None:
    certs_dir = tmp_path / "tls"
    made = subprocess.run(
        [sys.executable, "-m", "kdns", "envinject", "certs", "--out", str(certs_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    with apiemu.EmulatorThread(bookmark_interval=0.5) as emu:
        emu.put(apiemu.builders.namespace("shop"))
        emu.put(
            apiemu.builders.service(
                "kubernetes", cluster_ip="10.96.0.1", ports=[("https", 443, "TCP")]
            )
        )
        emu.put(
            apiemu.builders.service(
                "redis-master", "shop", cluster_ip="10.96.0.11", ports=[("", 6379, "TCP")]
            )
        )
        kubeconfig = emu.write_kubeconfig(tmp_path / "kubeconfig")
        dns_port, hook_port = free_port(), free_port()
        corefile = tmp_path / "Corefile"
        corefile.write_text(
            f""".:{dns_port} {{
    kubernetes cluster.local {{
        kubeconfig {kubeconfig}
    }}
    envinject 127.0.0.1:{hook_port} {{
        tls {certs_dir / "tls.crt"} {certs_dir / "tls.key"}
    }}
}}
"""
        )
        proc = KdnsCommand(["-conf", str(corefile)], dns_port)
        context = ssl.create_default_context(cafile=str(certs_dir / "ca.crt"))
        context.check_hostname = False  # the serving name is the webhook Service's, not 127.0.0.1
        url = f"https://127.0.0.1:{hook_port}/inject"
        try:

            def synced() -> bool:
                proc.alive()
                try:
                    return "REDIS_MASTER_SERVICE_HOST" in _injected(url, context)
                except OSError:
                    return False

            wait_until(synced, timeout=30)
            variables = _injected(url, context)
            assert variables["REDIS_MASTER_SERVICE_HOST"] == "10.96.0.11"
            assert variables["REDIS_MASTER_PORT_6379_TCP"] == "tcp://10.96.0.11:6379"
            assert variables["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
            emu.delete("v1", "Service", "redis-master", "shop")
            wait_until(
                lambda: "REDIS_MASTER_SERVICE_HOST" not in _injected(url, context), timeout=10
            )
            assert _injected(url, context)["KUBERNETES_SERVICE_PORT"] == "443"
        finally:
            proc.stop()


def test_allocate_webhook_in_a_running_kdns(tmp_path: Path) -> None:
    """clusterip in cluster mode: elected through a Lease, served beside /inject."""
    with apiemu.EmulatorThread(bookmark_interval=0.5) as emu:
        emu.put(apiemu.builders.namespace("shop"))
        emu.put(apiemu.builders.namespace("kdns-system"))  # the allocator's Leases
        emu.put(apiemu.builders.service("taken", "shop", cluster_ip="10.96.0.10"))
        proc, hook_port, certs_dir = kdns_with_webhooks(emu, tmp_path)
        context = ssl.create_default_context(cafile=str(certs_dir / "ca.crt"))
        context.check_hostname = False
        url = f"https://127.0.0.1:{hook_port}/allocate"
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}]},
        }
        review = _review(service)
        review["request"]["kind"] = {"group": "", "version": "v1", "kind": "Service"}
        review["request"]["resource"] = {"group": "", "version": "v1", "resource": "services"}
        try:

            def patched() -> dict[str, Any] | None:
                proc.alive()
                try:
                    answer = _post(url, review, context)["response"]
                except OSError:
                    return None
                if "patch" not in answer:
                    return None
                ops = json.loads(base64.b64decode(answer["patch"]))
                result: dict[str, Any] = jsonpatch.JsonPatch(ops).apply(service)
                return result

            allocated: dict[str, Any] = {}

            def answered() -> bool:
                found = patched()
                if found is not None:
                    allocated.update(found)
                return found is not None

            wait_until(answered, timeout=30)
            spec = allocated["spec"]
            assert spec["clusterIPs"] == [spec["clusterIP"]]
            assert spec["clusterIP"].startswith("10.96.0.")
            assert spec["clusterIP"] not in ("10.96.0.0", "10.96.0.10", "10.96.0.15")
            assert spec["ipFamilies"] == ["IPv4"]
        finally:
            proc.stop()
