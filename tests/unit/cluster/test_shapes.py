"""The msgspec shapes change what is built, never what is served or refused: for any
JSON object (the fuzz strategies of test_shrink_fuzz), the shrinker given the shape's
reduced dict returns the same object, or raises Invalid with the same message, as given
the whole object; the informer reads the same key, resourceVersion and trigger time;
and a page or a watch line decodes to the same outcomes item by item."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kdns.cluster import shrink
from kdns.cluster.kube import client, informer, shapes

from .test_shrink_fuzz import (
    FUZZ,
    endpoint_ports,
    ips,
    json_values,
    maybe,
    metadata,
    names,
    namespaces,
    obj,
    pods,
    services,
    slices,
)

imports = obj(
    metadata=metadata,
    spec=obj(
        type=st.sampled_from(["ClusterSetIP", "Headless", "x"]),
        ips=maybe(st.lists(ips)),
        ports=endpoint_ports,
    ),
)
with_annotations = obj(
    metadata=obj(
        name=names,
        namespace=names,
        resourceVersion=st.text(max_size=4),
        annotations=st.fixed_dictionaries(
            {informer.TRIGGER_TIME: maybe(st.sampled_from(["2026-01-01T00:00:00Z", "x"]))}
        ),
    ),
    addressType=st.just("IPv4"),
)

KINDS: dict[str, tuple[shapes.Reader, Callable[[Any], Any], st.SearchStrategy[Any]]] = {
    "services": (informer.SERVICES.shape, shrink.service, services),  # type: ignore[dict-item]
    "slices": (informer.SLICES.shape, shrink.endpoint_slice, slices | with_annotations),  # type: ignore[dict-item]
    "namespaces": (informer.NAMESPACES.shape, shrink.namespace, namespaces),  # type: ignore[dict-item]
    "pods": (informer.PODS.shape, shrink.pod, pods),  # type: ignore[dict-item]
    "pod_addresses": (informer.POD_ADDRESSES.shape, shrink.pod_address, pods),  # type: ignore[dict-item]
    "imports": (informer.SERVICE_IMPORTS.shape, shrink.service_import, imports),  # type: ignore[dict-item]
}


def outcome(fn: Callable[[Any], Any], raw: Any) -> tuple[str, Any]:
    """What the informer makes of an item: the shrunk object or the logged problem,
    with the key, version and trigger time it reads off the metadata."""
    meta = informer._metadata(raw)
    read = (informer._key(meta), informer._version(meta),
            informer._trigger_time(meta) if meta is not None else None)  # fmt: skip
    try:
        return "ok", (fn(raw), read)
    except shrink.Invalid as exc:
        return "invalid", (str(exc), read)


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize("kind", sorted(KINDS))
@FUZZ
@given(data=st.data())
def test_item_decodes_to_the_same_outcome(kind: str, data: st.DataObject) -> None:
    reader, fn, strategy = KINDS[kind]
    raw = data.draw(st.one_of(strategy, json_values))
    assert outcome(fn, reader.item(_dumps(raw))) == outcome(fn, raw)


@pytest.mark.parametrize("kind", sorted(KINDS))
@FUZZ
@given(data=st.data())
def test_page_decodes_to_the_same_outcomes(kind: str, data: st.DataObject) -> None:
    reader, fn, strategy = KINDS[kind]
    items = data.draw(st.lists(st.one_of(strategy, strategy, json_values), max_size=4))
    body = _dumps({"kind": "List", "metadata": {"resourceVersion": "7", "continue": "c"},
                   "items": items})  # fmt: skip
    decoded = reader.page(body)
    if decoded is None:  # the slow path (PageReader) reads it: NaN, say
        slow = client.PageReader()
        got, meta = slow.feed(body, final=True), slow.members["metadata"]
    else:
        got, meta = decoded
    assert meta == {"resourceVersion": "7", "continue": "c"}
    assert [outcome(fn, i) for i in got] == [outcome(fn, i) for i in items]


@pytest.mark.parametrize("kind", sorted(KINDS))
@FUZZ
@given(data=st.data())
def test_watch_line_decodes_to_the_same_outcome(kind: str, data: st.DataObject) -> None:
    reader, fn, strategy = KINDS[kind]
    raw = data.draw(st.one_of(strategy, json_values))
    kind_of = data.draw(st.sampled_from(["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]))
    event = client._event("/x", _dumps({"type": kind_of, "object": raw}), 1.0, reader)
    assert event.type == kind_of
    assert outcome(fn, event.object) == outcome(fn, raw)


def test_an_error_event_is_raised_as_before() -> None:
    reader = informer.PODS.shape
    status = {"kind": "Status", "metadata": {}, "code": 410, "reason": "Expired", "message": "x"}
    line = _dumps({"type": "ERROR", "object": status})
    with pytest.raises(client.Gone):
        client._event("/api/v1/pods", line, 1.0, reader)


def test_a_pod_is_reduced_to_what_pods_verified_reads() -> None:
    reader = informer.POD_ADDRESSES.shape
    assert reader is not None
    pod = {
        "metadata": {"name": "web-1", "namespace": "prod", "resourceVersion": "9",
                     "labels": {"app": "web"}, "ownerReferences": [{"kind": "ReplicaSet"}]},
        "spec": {"containers": [{"name": "app", "image": "x"}], "nodeName": "n1"},
        "status": {"podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}], "phase": "Running"},
    }  # fmt: skip
    assert reader.item(_dumps(pod)) == {
        "metadata": {"name": "web-1", "namespace": "prod", "resourceVersion": "9"},
        "status": {"podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}]},
    }
