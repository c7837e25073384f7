"""The last good cluster state on local disk, for a restart during an API outage.

Without it, a kdns that restarts while the API server is down has nothing to answer
from and must SERVFAIL every cluster name until the API returns. With it (opt-in: a
path), the shrunk Services, EndpointSlices and Namespaces are written after the first
sync and after changes (coalesced: at most once per interval), and read back at start
when the API server cannot be reached. The file is versioned JSON written to a temp
file and renamed over the old one, so a crash mid-write leaves the previous snapshot;
a file that does not parse or has another schema version is ignored with a warning.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kdns import errors as kdns_errors
from kdns.cluster import objects
from kdns.cluster.store import Store

log = logging.getLogger(__name__)

SCHEMA = 1
"""Bump when the shape of the shrunk objects changes: an old file is then ignored."""
KIND = "kdns-snapshot"


class Corrupt(kdns_errors.SourceError, ValueError):
    """The snapshot file cannot be used: the message says why."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    written: float
    """Unix time when the state was taken."""
    services: Sequence[objects.Service]
    slices: Sequence[objects.EndpointSlice]
    namespaces: Sequence[objects.Namespace]
    pods: Sequence[objects.Pod] = ()
    """Whole pods: only ``kdns explain --server``'s snapshot carries them."""


# -- encoding ---------------------------------------------------------------------------


def _labels(pairs: objects.Labels) -> dict[str, str]:
    return dict(pairs)


def _service(s: objects.Service) -> dict[str, Any]:
    return {
        "ns": s.namespace, "name": s.name, "type": s.type, "ips": s.cluster_ips,
        "external": s.external_name,
        "ports": [[p.name, p.port, p.protocol, p.target_port, p.node_port] for p in s.ports],
        "selector": None if s.selector is None else _labels(s.selector),
        "pnr": s.publish_not_ready, "families": s.ip_families, "policy": s.ip_family_policy,
        "labels": _labels(s.labels), "ip_text": s.written_cluster_ip,
    }  # fmt: skip


def _slice(e: objects.EndpointSlice) -> dict[str, Any]:
    return {
        "ns": e.namespace, "name": e.name, "service": e.service, "type": e.address_type,
        "endpoints": [[p.addresses, p.ready, p.hostname, p.target_name, p.node_name,
                       *((p.zone,) if p.zone else ())]
                      for p in e.endpoints],
        "ports": [[p.name, p.port, p.protocol] for p in e.ports],
    }  # fmt: skip


def _pod(p: objects.Pod) -> dict[str, Any]:
    return {
        "ns": p.namespace, "name": p.name, "ips": p.ips, "labels": _labels(p.labels),
        "ready": p.ready, "terminating": p.terminating, "hostname": p.hostname,
        "subdomain": p.subdomain, "node": p.node_name, "phase": p.phase,
        "ports": [[c.name, c.port, c.protocol] for c in p.ports],
    }  # fmt: skip


def to_body(snap: Snapshot) -> dict[str, Any]:
    """The snapshot as JSON-able data (what :func:`encode` writes, before ``json``)."""
    body: dict[str, Any] = {
        "kind": KIND,
        "schema": SCHEMA,
        "written": snap.written,
        "namespaces": [{"name": n.name, "labels": _labels(n.labels)} for n in snap.namespaces],
        "services": [_service(s) for s in snap.services],
        "slices": [_slice(e) for e in snap.slices],
    }
    if snap.pods:
        body["pods"] = [_pod(p) for p in snap.pods]
    return body


def encode(snap: Snapshot) -> bytes:
    return json.dumps(to_body(snap), separators=(",", ":")).encode()


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _strs(values: Any) -> tuple[str, ...]:
    return tuple(_str(v) for v in values)


def _pairs(value: Any) -> objects.Labels:
    if not isinstance(value, dict):
        raise TypeError(f"expected a map, got {value!r}")
    return objects.labels_of({_str(k): _str(v) for k, v in value.items()})


def _decode_service(d: dict[str, Any]) -> objects.Service:
    return objects.Service(
        namespace=_str(d["ns"]), name=_str(d["name"]), type=_str(d["type"]),
        cluster_ips=_strs(d["ips"]), external_name=_str(d["external"]),
        ports=tuple(objects.ServicePort(_str(n), _int(p), _str(proto),
                                        t if isinstance(t, str) else _int(t), _int(np))
                    for n, p, proto, t, np in d["ports"]),
        selector=None if d["selector"] is None else _pairs(d["selector"]),
        publish_not_ready=bool(d["pnr"]), ip_families=_strs(d["families"]),
        ip_family_policy=_str(d["policy"]), labels=_pairs(d["labels"]),
        written_cluster_ip=_str(d.get("ip_text", "")),
    )  # fmt: skip


def _decode_slice(d: dict[str, Any]) -> objects.EndpointSlice:
    return objects.EndpointSlice(
        namespace=_str(d["ns"]), name=_str(d["name"]), service=_str(d["service"]),
        address_type=_str(d["type"]),
        endpoints=tuple(objects.Endpoint(_strs(a), bool(r), _str(h), _str(t), _str(n),
                                         _str(z[0]) if z else "")
                        for a, r, h, t, n, *z in d["endpoints"]),
        ports=tuple(objects.EndpointPort(_str(n), _int(p), _str(proto))
                    for n, p, proto in d["ports"]),
    )  # fmt: skip


def _decode_pod(d: dict[str, Any]) -> objects.Pod:
    return objects.Pod(
        namespace=_str(d["ns"]), name=_str(d["name"]), ips=_strs(d["ips"]),
        labels=_pairs(d["labels"]), ready=bool(d["ready"]),
        terminating=bool(d["terminating"]), hostname=_str(d["hostname"]),
        subdomain=_str(d["subdomain"]), node_name=_str(d["node"]), phase=_str(d["phase"]),
        ports=tuple(objects.ContainerPort(_str(n), _int(p), _str(proto))
                    for n, p, proto in d["ports"]),
    )  # fmt: skip


def from_body(body: Any) -> Snapshot:
    """Check JSON-able data :func:`to_body` made; :class:`Corrupt` for anything unexpected."""
    if not isinstance(body, dict) or body.get("kind") != KIND:
        raise Corrupt("not a kdns snapshot")
    if body.get("schema") != SCHEMA:
        raise Corrupt(f"schema version {body.get('schema')!r}, this kdns reads {SCHEMA}")
    try:
        written = float(body["written"])
        namespaces = [objects.Namespace(_str(n["name"]), _pairs(n["labels"]))
                      for n in body["namespaces"]]  # fmt: skip
        services = [_decode_service(s) for s in body["services"]]
        slices = [_decode_slice(e) for e in body["slices"]]
        pods = tuple(_decode_pod(p) for p in body.get("pods", ()))
    except (KeyError, TypeError, ValueError) as exc:
        raise Corrupt(f"unexpected content: {exc!r}") from exc
    return Snapshot(written, services, slices, namespaces, pods)


def decode(data: bytes) -> Snapshot:
    """Parse and check a snapshot; :class:`Corrupt` for anything unexpected."""
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise Corrupt(f"not JSON: {exc}") from exc
    return from_body(body)


def take(store: Store) -> Snapshot:
    """The store's current state; cheap (references to immutable objects)."""
    return Snapshot(
        time.time(),
        list(store.services.values()),
        list(store.slices.values()),
        list(store.namespaces.values()),
    )


def write(path: Path, snap: Snapshot) -> int:
    """Encode and replace ``path`` atomically; returns the size written. Blocking."""
    data = encode(snap)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with _suppress_oserror():
            os.unlink(temp)
        raise
    return len(data)


class _suppress_oserror:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> bool:
        return exc_type is not None and issubclass(exc_type, OSError)


# -- the persister ------------------------------------------------------------------------


class _AgeCollector(Collector):
    def __init__(self, persister: Persister) -> None:
        self._persister = persister

    def collect(self) -> Iterator[Metric]:
        age = GaugeMetricFamily(
            "kdns_snapshot_age_seconds",
            "Age of the on-disk snapshot kdns is serving because the API server could not "
            "be reached at start; 0 when serving live data.",
        )
        served = self._persister.served
        age.add_metric([], 0.0 if served is None else max(0.0, time.time() - served.written))
        yield age

    def describe(self) -> Iterator[Metric]:
        return iter(())


class Persister:
    """Writes the store to ``path`` after sync and on change; reads it back on demand."""

    def __init__(
        self,
        path: str | Path,
        store: Store,
        *,
        interval: float = 10.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.path = Path(path)
        self.store = store
        self.interval = interval
        self.served: Snapshot | None = None
        self._dirty = asyncio.Event()
        registry = CollectorRegistry() if registry is None else registry
        self.writes = Counter(
            "kdns_snapshot_writes", "Snapshots written to disk.", registry=registry
        )
        self.write_errors = Counter(
            "kdns_snapshot_write_errors", "Snapshots that could not be written.",
            registry=registry,
        )  # fmt: skip
        registry.register(_AgeCollector(self))
        store.subscribe(self._dirty.set)

    def load(self) -> Snapshot | None:
        """The snapshot on disk, or None (missing, corrupt, other version: warned). Blocking."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("snapshot %s: cannot read: %s; ignoring it", self.path, exc)
            return None
        try:
            return decode(data)
        except Corrupt as exc:
            log.warning("snapshot %s: %s; ignoring it", self.path, exc)
            return None

    def serving(self, snap: Snapshot | None) -> None:
        """Record that ``snap`` is (or, with None, no longer is) what DNS answers from."""
        self.served = snap

    async def run(self, synced: asyncio.Event) -> None:
        """After ``synced``, write now and then whenever the store changed, at most once
        per interval. Never writes a state that did not come from the API server."""
        await synced.wait()
        while True:
            self._dirty.clear()
            snap = take(self.store)
            try:
                size = await asyncio.to_thread(write, self.path, snap)
            except OSError as exc:
                self.write_errors.inc()
                log.warning("snapshot %s: cannot write: %s", self.path, exc)
            else:
                self.writes.inc()
                log.debug("snapshot %s: wrote %d bytes", self.path, size)
            await asyncio.sleep(self.interval)
            await self._dirty.wait()
