"""explain's ``--server`` snapshot is the cluster snapshot codec's body (one codec), and
a snapshot served by a kdns from before it (``dataclasses.asdict`` rows) still reads."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from kdns import explain
from kdns.cluster import manifests, objects, resolver
from kdns.cluster.kube import snapshot as codec
from kdns.cluster.store import Store
from tests.unit.explain.test_explain import FIXTURE

SETTINGS = resolver.Settings()


@pytest.fixture(scope="module")
def store() -> Store:
    s = Store()
    source = manifests.ManifestsSource(FIXTURE, s)
    source.load()
    assert source.problems == []
    return s


def _same(a: Store, b: Store) -> None:
    assert (a.services, a.slices, a.pods, a.namespaces) == (
        b.services,
        b.slices,
        b.pods,
        b.namespaces,
    )


def _legacy(store: Store, settings: resolver.Settings) -> dict[str, Any]:
    """What explain.snapshot served before it used the cluster codec."""
    return {
        "synced": store.synced,
        "modified": store.modified,
        "settings": {
            "zones": list(settings.zones),
            "ttl": settings.ttl,
            "pods": settings.pods,
            "endpoint_pod_names": settings.endpoint_pod_names,
            "ignore_empty_service": settings.ignore_empty_service,
            "namespaces": sorted(settings.namespaces),
            "nameservers": list(settings.nameservers),
            "fallthrough": list(settings.fallthrough),
        },
        "namespaces": [dataclasses.asdict(o) for o in store.namespaces.values()],
        "services": [dataclasses.asdict(o) for o in store.services.values()],
        "slices": [o.as_dict() for o in store.slices.values()],
        "pods": [dataclasses.asdict(o) for o in store.pods.values()],
    }


def test_explain_serves_the_cluster_codecs_body(store: Store) -> None:
    body = json.loads(json.dumps(explain.snapshot(store, SETTINGS)))
    assert body["kind"] == codec.KIND and body["schema"] == codec.SCHEMA
    snap = codec.from_body(body)  # the file codec reads it as it is
    assert len(snap.services) == len(store.services) and len(snap.pods) == len(store.pods)
    assert store.pods, "the fixture has pods: explain needs them"


def test_an_older_servers_snapshot_still_reads(store: Store) -> None:
    copy, settings = explain.from_snapshot(json.loads(json.dumps(_legacy(store, SETTINGS))))
    assert settings == SETTINGS
    _same(copy, store)


def test_both_formats_rebuild_the_same_store(store: Store) -> None:
    new, _ = explain.from_snapshot(json.loads(json.dumps(explain.snapshot(store, SETTINGS))))
    old, _ = explain.from_snapshot(json.loads(json.dumps(_legacy(store, SETTINGS))))
    _same(new, old)


def test_a_broken_snapshot_is_an_explain_error(store: Store) -> None:
    body = json.loads(json.dumps(explain.snapshot(store, SETTINGS)))
    body["services"][0]["ports"] = "oops"
    with pytest.raises(explain.ExplainError, match="not a kdns snapshot"):
        explain.from_snapshot(body)


def test_the_file_codec_keeps_an_endpoints_zone_and_reads_files_without_one() -> None:
    zoned = objects.Endpoint(("10.0.0.1",), True, "", "web-0", "node-a", "zone-a")
    plain = objects.Endpoint(("10.0.0.2",), True, "", "web-1", "node-b")
    eps = objects.EndpointSlice(
        namespace="default",
        name="web-abc",
        service="web",
        address_type="IPv4",
        endpoints=(zoned, plain),
        ports=(objects.EndpointPort("http", 80, "TCP"),),
    )
    snap = codec.decode(codec.encode(codec.Snapshot(1.0, [], [eps], [])))
    assert tuple(snap.slices[0].endpoints) == (zoned, plain)
    body = json.loads(codec.encode(codec.Snapshot(1.0, [], [eps], [])))
    assert len(body["slices"][0]["endpoints"][1]) == 5  # a file of an older kdns: no zone
    assert "pods" not in body  # the restart file never carries pods
