"""The API emulator is faithful: the real clients (kubernetes, kubectl) work against it,
and it fails the way kube-apiserver fails (410, 409, 429, 401, cut streams)."""

from __future__ import annotations

import http.client
import json
import queue
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.support import apiemu
from tests.support.apiemu import builders

pytestmark = pytest.mark.timeout(60)
KUBECTL = "/usr/bin/kubectl"


@pytest.fixture
def emu() -> Iterator[apiemu.EmulatorThread]:
    with apiemu.EmulatorThread(bookmark_interval=0.2) as running:
        yield running


def api_client(
    emu: apiemu.EmulatorThread, tmp_path: Path, token: str | None = None, name: str = "kubeconfig"
) -> Any:
    path = emu.write_kubeconfig(tmp_path / name, token)
    return config.new_client_from_config(config_file=str(path))


def call(emu: apiemu.EmulatorThread, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    raw = None if body is None else json.dumps(body)
    conn.request(method, path, raw, {"Content-Type": "application/json"} | (headers or {}))
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), json.loads(data) if data else None


def kubectl(emu: apiemu.EmulatorThread, tmp_path: Path, *args: str) -> list[str]:
    kubeconfig = tmp_path / "kubeconfig"
    if not kubeconfig.exists():
        emu.write_kubeconfig(kubeconfig)
    return [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache"),
            "--request-timeout", "10s", *args]  # fmt: skip


# -- the real kubernetes client ---------------------------------------------------------


def test_python_client_lists_services_and_slices(
    emu: apiemu.EmulatorThread, tmp_path: Path
) -> None:
    emu.put(builders.service("web", cluster_ip="10.96.0.20"))
    emu.put(builders.endpoint_slice("web", addresses=["10.244.1.5", "10.244.1.6"]))
    api = api_client(emu, tmp_path)
    services = client.CoreV1Api(api).list_namespaced_service("default")
    assert [s.metadata.name for s in services.items] == ["web"]
    assert services.items[0].spec.cluster_ip == "10.96.0.20"
    assert int(services.metadata.resource_version) == emu.resource_version
    slices = client.DiscoveryV1Api(api).list_endpoint_slice_for_all_namespaces()
    assert slices.items[0].endpoints[1].addresses == ["10.244.1.6"]
    assert slices.items[0].metadata.labels["kubernetes.io/service-name"] == "web"


def test_python_client_pages_with_continue(emu: apiemu.EmulatorThread, tmp_path: Path) -> None:
    for i in range(7):
        emu.put(builders.service(f"svc-{i}", cluster_ip=f"10.96.0.{i + 1}"))
    v1 = client.CoreV1Api(api_client(emu, tmp_path))
    first = v1.list_service_for_all_namespaces(limit=3)
    revision = first.metadata.resource_version
    names = [s.metadata.name for s in first.items]
    emu.put(builders.service("svc-99"))  # after the snapshot: must not show up in later pages
    emu.delete("v1", "Service", "svc-6", "default")  # gone now, but in the snapshot
    token = first.metadata._continue
    assert first.metadata.remaining_item_count == 4
    for _ in range(5):
        page = v1.list_service_for_all_namespaces(limit=3, _continue=token)
        assert page.metadata.resource_version == revision
        names += [s.metadata.name for s in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert names == [f"svc-{i}" for i in range(7)]


def test_python_client_watch_sees_added_modified_deleted(
    emu: apiemu.EmulatorThread, tmp_path: Path
):
    v1 = client.CoreV1Api(api_client(emu, tmp_path))
    start = v1.list_namespaced_service("default").metadata.resource_version
    emu.put(builders.service("web"))
    seen = []
    stream = watch.Watch()
    for event in stream.stream(v1.list_namespaced_service, "default", resource_version=start,
                               timeout_seconds=10):  # fmt: skip
        seen.append((event["type"], event["object"].spec.cluster_ip))
        if event["type"] == "ADDED":
            emu.put(builders.service("web", cluster_ip="10.96.0.99"))
        elif event["type"] == "MODIFIED":
            emu.delete("v1", "Service", "web", "default")
        else:
            stream.stop()
    assert seen == [("ADDED", "10.96.0.10"), ("MODIFIED", "10.96.0.99"),
                    ("DELETED", "10.96.0.99")]  # fmt: skip


def test_duplicate_create_is_409_already_exists(emu: apiemu.EmulatorThread, tmp_path: Path) -> None:
    v1 = client.CoreV1Api(api_client(emu, tmp_path))
    created = v1.create_namespaced_service("default", builders.service("web"))
    assert created.metadata.uid and created.metadata.creation_timestamp
    with pytest.raises(ApiException) as raised:
        v1.create_namespaced_service("default", builders.service("web"))
    assert raised.value.status == 409
    body = json.loads(raised.value.body)
    assert (body["kind"], body["reason"], body["details"]["name"]) == ("Status", "AlreadyExists",
                                                                       "web")  # fmt: skip


def test_generate_name_and_missing_namespace(emu: apiemu.EmulatorThread) -> None:
    made = builders.service("", namespace="default")
    made["metadata"] = {"generateName": "web-"}
    code, _, body = call(emu, "POST", "/api/v1/namespaces/default/services", made)
    assert code == 201 and body["metadata"]["name"].startswith("web-")
    assert len(body["metadata"]["name"]) == len("web-") + 5
    code, _, body = call(
        emu, "POST", "/api/v1/namespaces/nope/services", builders.service("x", namespace="nope")
    )
    assert (code, body["reason"], body["message"]) == (404, "NotFound",
                                                       'namespaces "nope" not found')  # fmt: skip


def test_update_conflict_patch_and_delete(emu: apiemu.EmulatorThread) -> None:
    stored = emu.put(builders.service("web"))
    base = "/api/v1/namespaces/default/services/web"
    stale = dict(stored, metadata=dict(stored["metadata"], resourceVersion="1"))
    code, _, body = call(emu, "PUT", base, stale)
    assert (code, body["reason"]) == (409, "Conflict")
    code, _, body = call(emu, "PUT", base, stored)  # no change: no new revision
    assert body["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]
    patch = {"metadata": {"labels": {"tier": "web"}}}
    code, _, body = call(emu, "PATCH", base, patch,
                         {"Content-Type": "application/merge-patch+json"})  # fmt: skip
    assert body["metadata"]["labels"] == {"tier": "web"}
    ops = [{"op": "replace", "path": "/spec/clusterIP", "value": "10.96.7.7"}]
    code, _, body = call(emu, "PATCH", base, ops, {"Content-Type": "application/json-patch+json"})
    assert (code, body["spec"]["clusterIP"]) == (200, "10.96.7.7")
    code, _, body = call(emu, "DELETE", base)
    assert (code, body["kind"]) == (200, "Service")
    code, _, body = call(emu, "GET", base)
    assert (code, body["reason"]) == (404, "NotFound")
    assert body["details"] == {"name": "web", "kind": "services"}


def test_selectors_on_list(emu: apiemu.EmulatorThread, tmp_path: Path) -> None:
    emu.put(builders.service("a", labels={"app": "a", "tier": "web"}))
    emu.put(builders.service("b", labels={"app": "b"}))
    emu.put(builders.service("c", namespace="kube-system", labels={"app": "c", "tier": "db"}))
    v1 = client.CoreV1Api(api_client(emu, tmp_path))

    def names(**selectors: str) -> list[str]:
        listed = v1.list_service_for_all_namespaces(**selectors).items
        return [s.metadata.name for s in listed]

    assert names(label_selector="tier") == ["a", "c"]
    assert names(label_selector="!tier") == ["b"]
    assert names(label_selector="app in (a,b),tier!=web") == ["b"]
    assert names(field_selector="metadata.namespace=kube-system") == ["c"]
    assert names(field_selector="metadata.name!=a,metadata.namespace=default") == ["b"]
    code, _, body = call(emu, "GET", "/api/v1/services?fieldSelector=spec.clusterIP%3D1")
    assert (code, body["message"]) == (400, "field label not supported: spec.clusterIP")


# -- kubectl ----------------------------------------------------------------------------


def test_kubectl_get_and_apply(emu: apiemu.EmulatorThread, tmp_path: Path) -> None:
    emu.put(builders.service("web", namespace="kube-system", cluster_ip="10.96.0.20"))
    emu.put(builders.endpoint_slice("web", namespace="kube-system"))
    out = subprocess.run(kubectl(emu, tmp_path, "get", "svc", "-A", "-o", "json"),
                         capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    listed = json.loads(out.stdout)["items"]
    assert [(s["metadata"]["namespace"], s["spec"]["clusterIP"]) for s in listed] == [
        ("kube-system", "10.96.0.20")
    ]
    out = subprocess.run(kubectl(emu, tmp_path, "get", "endpointslices", "-n", "kube-system"),
                         capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    assert "web-abcde" in out.stdout
    manifest = tmp_path / "svc.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: applied\n  namespace: default\n"
        "spec:\n  clusterIP: 10.96.0.50\n  ports:\n  - {name: http, port: 80, protocol: TCP}\n"
        "  - {name: dns, port: 53, protocol: UDP}\n"
    )
    for _ in range(2):
        subprocess.run(kubectl(emu, tmp_path, "apply", "-f", str(manifest)),
                       capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    manifest.write_text(manifest.read_text().replace("port: 80", "port: 8080"))
    out = subprocess.run(kubectl(emu, tmp_path, "apply", "-f", str(manifest)),
                         capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    assert "configured" in out.stdout
    applied = emu.get("v1", "Service", "applied", "default")
    assert applied is not None
    assert sorted(p["port"] for p in applied["spec"]["ports"]) == [53, 8080]


def test_kubectl_watch_sees_side_channel_change(emu: apiemu.EmulatorThread, tmp_path: Path) -> None:
    emu.put(builders.service("before"))
    args = kubectl(emu, tmp_path, "get", "svc", "-w", "--output-watch-events")
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or []])
    reader.start()
    try:
        emu.wait_for_watchers(1, "services")
        emu.put(builders.service("late"))
        for _ in range(20):
            line = lines.get(timeout=10)
            if "late" in line:
                break
        assert line.split()[:2] == ["ADDED", "late"]
    finally:
        process.kill()
        process.wait(10)
        reader.join(10)


# -- failure modes ----------------------------------------------------------------------


def test_expired_continue_is_410_with_status(emu: apiemu.EmulatorThread, tmp_path: Path) -> None:
    for i in range(4):
        emu.put(builders.service(f"svc-{i}"))
    v1 = client.CoreV1Api(api_client(emu, tmp_path))
    token = v1.list_namespaced_service("default", limit=2).metadata._continue
    emu.put(builders.service("svc-0", cluster_ip="10.96.1.1"))
    emu.compact()
    with pytest.raises(ApiException) as raised:
        v1.list_namespaced_service("default", limit=2, _continue=token)
    body = json.loads(raised.value.body)
    assert (raised.value.status, body["reason"], body["code"]) == (410, "Expired", 410)
    assert body["metadata"]["continue"]  # the inconsistent-continue token, as the real one
    rest = v1.list_namespaced_service("default", limit=2, _continue=body["metadata"]["continue"])
    assert [s.metadata.name for s in rest.items] == ["svc-2", "svc-3"]


def test_watch_from_compacted_version(emu: apiemu.EmulatorThread) -> None:
    emu.put(builders.service("web"))
    old = emu.resource_version
    emu.put(builders.service("web", cluster_ip="10.96.0.11"))
    emu.compact()
    path = f"/api/v1/services?watch=1&resourceVersion={old - 1}"
    conn = http_stream(emu, path)
    response = conn.getresponse()
    event = json.loads(response.readline())
    assert response.status == 200
    assert event["type"] == "ERROR"
    assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
    assert response.readline() == b""  # the stream ends after the error
    emu.set_expired_watch_reply("http-410")
    code, _, body = call(emu, "GET", path)
    assert (code, body["reason"]) == (410, "Expired")
    fresh = http_stream(emu, f"/api/v1/services?watch=1&resourceVersion={emu.resource_version}"
                        "&allowWatchBookmarks=true")  # fmt: skip
    bookmark = json.loads(fresh.getresponse().readline())
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["metadata"]["resourceVersion"] == str(emu.resource_version)


def http_stream(emu: apiemu.EmulatorThread, path: str) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    conn.request("GET", path)
    return conn


def test_watch_replays_log_and_applies_selectors(emu: apiemu.EmulatorThread) -> None:
    start = emu.resource_version
    emu.put(builders.service("a", labels={"app": "x"}))
    emu.put(builders.service("b", labels={"app": "y"}))
    emu.put(builders.service("b", labels={"app": "x"}))  # starts matching: ADDED
    emu.put(builders.service("a", labels={"app": "z"}))  # stops matching: DELETED
    response = http_stream(emu, f"/api/v1/namespaces/default/services?watch=true&"
                           f"resourceVersion={start}&labelSelector=app%3Dx&timeoutSeconds=5"
                           ).getresponse()  # fmt: skip
    events = [json.loads(response.readline()) for _ in range(3)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")
    ]  # fmt: skip


def test_cut_watch_mid_line(emu: apiemu.EmulatorThread) -> None:
    response = http_stream(emu, "/api/v1/services?watch=1&resourceVersion="
                           f"{emu.resource_version}").getresponse()  # fmt: skip
    emu.wait_for_watchers(1, "services")
    emu.put(builders.service("web"))
    assert json.loads(response.readline())["type"] == "ADDED"
    assert emu.cut_watches(apiemu.Cut.MID_LINE) == 1
    try:
        torn = response.readline()
    except (http.client.IncompleteRead, ConnectionError):
        torn = b""
    assert torn and not torn.endswith(b"\n")  # half an event, then the connection is gone
    with pytest.raises(json.JSONDecodeError):
        json.loads(torn)


def test_429_with_retry_after_then_500(emu: apiemu.EmulatorThread, tmp_path: Path) -> None:
    emu.fail_next(1, code=429, retry_after=3)
    emu.fail_next(1, code=500, path_contains="endpointslices")
    code, headers, body = call(emu, "GET", "/api/v1/services")
    assert (code, headers["Retry-After"], body["reason"]) == (429, "3", "TooManyRequests")
    assert body["details"]["retryAfterSeconds"] == 3
    assert call(emu, "GET", "/api/v1/services")[0] == 200
    code, _, body = call(emu, "GET", "/apis/discovery.k8s.io/v1/endpointslices")
    assert (code, body["reason"]) == (500, "InternalError")


def test_token_rotation(emu: apiemu.EmulatorThread, tmp_path: Path) -> None:
    emu.set_token("first")
    v1 = client.CoreV1Api(api_client(emu, tmp_path))
    assert v1.list_namespace().items
    emu.set_token("second")
    with pytest.raises(ApiException) as raised:
        v1.list_namespace()
    assert (raised.value.status, json.loads(raised.value.body)["reason"]) == (401, "Unauthorized")
    rotated = client.CoreV1Api(api_client(emu, tmp_path, token="second", name="rotated"))
    assert rotated.list_namespace().items


def test_down_and_up_on_the_same_port(emu: apiemu.EmulatorThread) -> None:
    port = emu.port
    emu.go_down()
    with pytest.raises(ConnectionRefusedError):
        call(emu, "GET", "/version")
    emu.come_up()
    assert emu.port == port and call(emu, "GET", "/version")[0] == 200


def test_control_channel_over_http(emu: apiemu.EmulatorThread) -> None:
    def control(method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(emu.control_url + path, data, method=method)
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())

    control("POST", "/_emu/objects", builders.service("remote"))
    assert call(emu, "GET", "/api/v1/namespaces/default/services/remote")[0] == 200
    control("POST", "/_emu/fail", {"count": 1, "code": 429, "retryAfter": 2})
    assert call(emu, "GET", "/api/v1/services")[0] == 429
    control("POST", "/_emu/down")
    assert control("GET", "/_emu/state")["up"] is False
    control("POST", "/_emu/up")
    assert control("POST", "/_emu/compact")["compactedRevision"] == emu.resource_version
    with pytest.raises(urllib.error.HTTPError):
        control("DELETE", "/_emu/objects?apiVersion=v1&kind=Service&name=gone&namespace=default")


def test_streaming_list_ends_initial_events_with_a_bookmark(emu: apiemu.EmulatorThread) -> None:
    emu.put_many([builders.service(f"svc-{i}") for i in range(3)])
    path = ("/api/v1/services?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"
            "&resourceVersionMatch=NotOlderThan&resourceVersion=0&timeoutSeconds=5")  # fmt: skip
    response = http_stream(emu, path).getresponse()
    events = [json.loads(response.readline()) for _ in range(4)]
    assert [e["type"] for e in events] == ["ADDED"] * 3 + ["BOOKMARK"]
    end = events[3]["object"]["metadata"]
    assert end["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert end["resourceVersion"] == str(emu.resource_version)


def test_python_client_watch_gets_bookmarks(emu: apiemu.EmulatorThread, tmp_path: Path) -> None:
    v1 = client.CoreV1Api(api_client(emu, tmp_path))
    stream = watch.Watch()
    start = str(emu.resource_version)
    kinds = []
    for event in stream.stream(
        v1.list_namespace, resource_version=start, allow_watch_bookmarks=True, timeout_seconds=5
    ):
        kinds.append(event["type"])
        stream.stop()
    assert kinds == ["BOOKMARK"]
    assert stream.resource_version == start
