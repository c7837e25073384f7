"""A running kdns's cache over HTTP, for ``kdns explain --server``.

The server serializes its Store and Settings on its health port (:data:`SNAPSHOT_PATH`);
the command rebuilds an identical Store locally, so both sides share one logic. The
objects travel in the one snapshot codec, :mod:`kdns.cluster.kube.snapshot` (the file a
kdns restarts from), with the pods and the Settings beside them. A kdns from before
that served the objects as ``dataclasses.asdict`` rows: :func:`from_snapshot` still
reads those.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from kdns.cluster import objects, resolver
from kdns.cluster.kube import snapshot as codec
from kdns.cluster.store import Store
from kdns.explain.model import (
    ExplainError,
)

SNAPSHOT_PATH = "/debug/kdns/snapshot"
"""Where a running kdns serves :func:`snapshot` on its health port."""


def snapshot(store: Store, settings: resolver.Settings) -> dict[str, Any]:
    """The Store and Settings as JSON-able data, for :data:`SNAPSHOT_PATH`: the
    cluster snapshot's body (:func:`kdns.cluster.kube.snapshot.to_body`), pods
    included, with ``settings``, ``synced`` and ``modified`` beside it."""
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
        **codec.to_body(
            codec.Snapshot(
                time.time(),
                list(store.services.values()),
                list(store.slices.values()),
                list(store.namespaces.values()),
                list(store.pods.values()),
            )
        ),
    }


# -- the rows a kdns before the one codec served (dataclasses.asdict) -------------------


def _labels(raw: Any) -> objects.Labels:
    return tuple((str(k), str(v)) for k, v in raw or ())


def _service(raw: Mapping[str, Any]) -> objects.Service:
    return objects.Service(
        namespace=raw["namespace"],
        name=raw["name"],
        type=raw["type"],
        cluster_ips=tuple(raw["cluster_ips"]),
        external_name=raw["external_name"],
        ports=tuple(objects.ServicePort(**p) for p in raw["ports"]),
        selector=None if raw["selector"] is None else _labels(raw["selector"]),
        publish_not_ready=raw["publish_not_ready"],
        ip_families=tuple(raw["ip_families"]),
        ip_family_policy=raw["ip_family_policy"],
        labels=_labels(raw.get("labels")),
    )


def _slice(raw: Mapping[str, Any]) -> objects.EndpointSlice:
    endpoints = tuple(
        objects.Endpoint(**{**e, "addresses": tuple(e["addresses"])}) for e in raw["endpoints"]
    )
    return objects.EndpointSlice(
        namespace=raw["namespace"],
        name=raw["name"],
        service=raw["service"],
        address_type=raw["address_type"],
        endpoints=endpoints,
        ports=tuple(objects.EndpointPort(**p) for p in raw["ports"]),
    )


def _pod(raw: Mapping[str, Any]) -> objects.Pod:
    return objects.Pod(
        **{
            **raw,
            "ips": tuple(raw["ips"]),
            "labels": _labels(raw["labels"]),
            "ports": tuple(objects.ContainerPort(**p) for p in raw["ports"]),
        }
    )


def from_snapshot(data: Mapping[str, Any]) -> tuple[Store, resolver.Settings]:
    """Rebuild the Store and Settings a :func:`snapshot` was taken of."""
    try:
        raw = data["settings"]
        settings = resolver.Settings(
            zones=tuple(raw["zones"]),
            ttl=int(raw["ttl"]),
            pods=raw["pods"],
            endpoint_pod_names=bool(raw["endpoint_pod_names"]),
            ignore_empty_service=bool(raw["ignore_empty_service"]),
            namespaces=frozenset(raw["namespaces"]),
            nameservers=tuple(raw["nameservers"]),
            fallthrough=tuple(raw["fallthrough"]),
        )
        store = Store()
        if data.get("kind") == codec.KIND:
            snap = codec.from_body(data)
            store.replace(
                namespaces=snap.namespaces,
                services=snap.services,
                slices=snap.slices,
                pods=snap.pods,
            )
        else:
            store.replace(
                namespaces=[
                    objects.Namespace(n["name"], _labels(n.get("labels")))
                    for n in data["namespaces"]
                ],
                services=[_service(s) for s in data["services"]],
                slices=[_slice(s) for s in data["slices"]],
                pods=[_pod(p) for p in data["pods"]],
            )
    except (KeyError, TypeError, ValueError, codec.Corrupt) as exc:
        raise ExplainError(f"not a kdns snapshot: {exc!r}") from None
    if data.get("synced"):
        store.mark_synced()
    store.modified = int(data.get("modified", store.modified))
    return store, settings
