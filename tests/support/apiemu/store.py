"""Objects, one resourceVersion counter and an event log, like etcd behind the watch cache.

Every write takes the next revision of a single counter shared by all resources, and
appends an :class:`Event` to one log. The log is what makes the emulator honest about
time: a watch from revision N replays the log after N, a paged list is served from the
snapshot at its first page's revision (rebuilt by undoing later events), and
compaction drops the log's head so that N, and continue tokens minted at N, expire
with 410 Gone exactly when they would against a real server.

Objects are plain JSON dicts, treated as immutable once stored; every write stores a
fresh dict. Only the emulator's event loop touches a store.
"""

from __future__ import annotations

import copy
import datetime
import json
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import resources, status
from .resources import Resource

Obj = dict[str, Any]
Key = tuple[str, str]
"""(namespace, name); the namespace is "" for cluster-scoped resources."""

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


@dataclass(slots=True)
class Entry:
    """A stored object and its JSON encodings, made once and shared by every reader."""

    obj: Obj
    _full: bytes | None = field(default=None, repr=False)
    _item: bytes | None = field(default=None, repr=False)

    def full_json(self) -> bytes:
        """With kind and apiVersion: as a GET or a watch event carries it."""
        if self._full is None:
            self._full = json.dumps(self.obj, separators=(",", ":")).encode()
        return self._full

    def item_json(self) -> bytes:
        """Without kind and apiVersion: as items of a list of built-in types come."""
        if self._item is None:
            item = {k: v for k, v in self.obj.items() if k not in ("kind", "apiVersion")}
            self._item = json.dumps(item, separators=(",", ":")).encode()
        return self._item

    @property
    def key(self) -> Key:
        meta = self.obj["metadata"]
        return meta.get("namespace", ""), meta["name"]


@dataclass(frozen=True, slots=True)
class Event:
    revision: int
    resource: Resource
    type: str
    """ADDED, MODIFIED or DELETED."""
    entry: Entry
    """The object after the event; for DELETED its last state at the deletion revision."""
    previous: Entry | None
    """The object before the event; None for ADDED."""


Subscriber = Callable[[Event], None]


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key_of(resource: Resource, obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace", "") if resource.namespaced else ""), meta.get("name", "")


def _without_revision(obj: Obj) -> Obj:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "resourceVersion"}
    return obj | {"metadata": meta}


def resource_of(obj: Obj) -> Resource:
    resource = resources.by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
    if resource is None:
        raise status.bad_request(
            f"no kind {obj.get('kind')!r} is registered for version {obj.get('apiVersion')!r}"
        )
    return resource


class Store:
    def __init__(self, log_capacity: int | None = None) -> None:
        self._objects: dict[Resource, dict[Key, Entry]] = {r: {} for r in resources.RESOURCES}
        self._revision = 1
        self._floor = 1
        self._log: deque[Event] = deque()
        self._log_capacity = log_capacity
        self._subscribers: set[Subscriber] = set()

    # -- reading -------------------------------------------------------------------
    @property
    def revision(self) -> int:
        """The latest resourceVersion handed out."""
        return self._revision

    @property
    def floor(self) -> int:
        """The oldest revision still watchable and listable; older ones answer 410."""
        return self._floor

    def get(self, resource: Resource, namespace: str, name: str) -> Obj | None:
        entry = self._objects[resource].get((namespace if resource.namespaced else "", name))
        return None if entry is None else entry.obj

    def entries(self, resource: Resource, at: int | None = None) -> list[Entry]:
        """All objects of a resource as of revision ``at`` (default: now), sorted by key."""
        current = self._objects[resource]
        if at is not None and at < self._revision:
            self.check_watchable(at)
            snapshot = dict(current)
            for event in reversed(self._log):
                if event.revision <= at:
                    break
                if event.resource is not resource:
                    continue
                if event.previous is None:
                    snapshot.pop(event.entry.key, None)
                else:
                    snapshot[event.previous.key] = event.previous
            current = snapshot
        return [current[key] for key in sorted(current)]

    def check_watchable(self, revision: int) -> None:
        if revision < self._floor:
            raise status.too_old_resource_version(revision, self._floor)

    def events_after(self, revision: int) -> list[Event]:
        self.check_watchable(revision)
        return [event for event in self._log if event.revision > revision]

    # -- writing -------------------------------------------------------------------
    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.add(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def create(self, resource: Resource, obj: Obj) -> Obj:
        """Store a new object, filling in what the server owns (uid, timestamps, name)."""
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choices(_GENERATE_ALPHABET, k=5))
            meta["name"] = meta["generateName"] + suffix
        if not meta.get("name"):
            raise status.invalid(resource, "", "metadata.name: Required value: name or "
                                 "generateName is required")  # fmt: skip
        if not resource.namespaced:
            meta.pop("namespace", None)
        key = _key_of(resource, obj)
        if key in self._objects[resource]:
            raise status.already_exists(resource, meta["name"])
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta.pop("deletionTimestamp", None)
        return self._write(resource, "ADDED", obj, None)

    def update(self, resource: Resource, obj: Obj, expect_revision: str | None = None) -> Obj:
        """Replace an object; ``expect_revision`` (if set) must be its current one.

        An update that changes nothing keeps the old revision and emits no event, as
        the real server does: clients rely on it to tell real changes from noise.
        """
        key = _key_of(resource, obj)
        old = self._objects[resource].get(key)
        if old is None:
            raise status.not_found(resource, key[1])
        if expect_revision and expect_revision != old.obj["metadata"]["resourceVersion"]:
            raise status.conflict(resource, key[1])
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
        meta = obj.setdefault("metadata", {})
        for owned in ("uid", "creationTimestamp"):
            meta[owned] = old.obj["metadata"][owned]
        if not resource.namespaced:
            meta.pop("namespace", None)
        if _without_revision(obj) == _without_revision(old.obj):
            return old.obj
        return self._write(resource, "MODIFIED", obj, old)

    def put(self, obj: Obj) -> Obj:
        """Create or unconditionally replace: the side channel's write."""
        resource = resource_of(obj)
        if _key_of(resource, obj) in self._objects[resource]:
            return self.update(resource, obj)
        return self.create(resource, obj)

    def delete(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        expect_revision: str | None = None,
        expect_uid: str | None = None,
    ) -> Obj:
        key = (namespace if resource.namespaced else "", name)
        old = self._objects[resource].get(key)
        if old is None:
            raise status.not_found(resource, name)
        meta = old.obj["metadata"]
        if (expect_revision and expect_revision != meta["resourceVersion"]) or (
            expect_uid and expect_uid != meta["uid"]
        ):
            raise status.conflict(resource, name)
        return self._write(resource, "DELETED", copy.deepcopy(old.obj), old)

    def compact(self, revision: int | None = None) -> int:
        """Forget history up to ``revision`` (default: all of it); returns the new floor."""
        target = self._revision if revision is None else min(revision, self._revision)
        while self._log and self._log[0].revision <= target:
            self._log.popleft()
        self._floor = max(self._floor, target)
        return self._floor

    def _write(self, resource: Resource, kind: str, obj: Obj, old: Entry | None) -> Obj:
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        entry = Entry(obj)
        if kind == "DELETED":
            del self._objects[resource][entry.key]
        else:
            self._objects[resource][entry.key] = entry
        event = Event(self._revision, resource, kind, entry, old)
        self._log.append(event)
        if self._log_capacity is not None and len(self._log) > self._log_capacity:
            self.compact(self._log[-self._log_capacity - 1].revision)
        for subscriber in list(self._subscribers):
            subscriber(event)
        return obj

    def seed_namespaces(self, names: Iterable[str]) -> None:
        for name in names:
            self.create(
                resources.named("namespaces"),
                {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
                 "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}},
            )  # fmt: skip
