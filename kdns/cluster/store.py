"""The informer cache: shrunk objects, the indexes DNS needs, and what changed.

Every source (the manifests folder, the API server's watches) writes here, and only
here; DNS, the env injector and the allocator read. Writes that change nothing DNS
reads are dropped on equality of the frozen objects, so they cost no recompilation.
What did change is collected as dirty service and namespace keys, and the compiler
takes them in one batch (:meth:`Store.take_dirty`), which coalesces bursts of events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kdns.cluster import objects, podindex

SvcKey = tuple[str, str]


Owners = SvcKey | frozenset[SvcKey]
"""An address index's value: the one key (the usual case) or several, never a set
per address (an empty set alone is 216 bytes, and there are 150,000 addresses)."""

Address = int | bytes
"""An address index's key: :func:`kdns.cluster.objects.address_number`."""


def _index_add(index: dict[Address, Owners], ip: Address, key: SvcKey) -> None:
    have = index.get(ip)
    if have is None:
        index[ip] = key
    elif isinstance(have, frozenset):
        if key not in have:
            index[ip] = have | {key}
    elif have != key:
        index[ip] = frozenset((have, key))


def _index_remove(index: dict[Address, Owners], ip: Address, key: SvcKey) -> None:
    have = index.get(ip)
    if have is None:
        return
    if isinstance(have, frozenset):
        rest = have - {key}
        if len(rest) == 1:
            index[ip] = next(iter(rest))
        elif rest:
            index[ip] = rest
        else:
            del index[ip]
    elif have == key:
        del index[ip]


def _owners(value: Owners | None) -> list[SvcKey]:
    if value is None:
        return []
    if isinstance(value, frozenset):
        return sorted(value)
    return [value]


IMPORTED = "+"
"""Prefix of the service part of a ServiceImport's change key, ``(namespace, "+name")``:
no Service is named so, so the table's groups keep the two apart."""


class Store:
    """Objects by key, with the reverse indexes CoreDNS keeps (SvcIndexReverse, EpIndexReverse)."""

    def __init__(self) -> None:
        self.services: dict[SvcKey, objects.Service] = {}
        self.slices: dict[SvcKey, objects.EndpointSlice] = {}
        self.namespaces: dict[str, objects.Namespace] = {}
        self.pods: dict[SvcKey, objects.Pod] = {}
        """Whole pods: only ``kdns explain`` (and tests) keep them; the informer keeps
        the pod index below, which is all DNS reads."""
        self._pod_index = podindex.PodIndex()
        """Which namespaces have a pod with an address (``pods verified``), packed."""
        self.imports: dict[SvcKey, objects.ServiceImport] = {}
        """ServiceImports (``multicluster`` only)."""
        self._imported_slices: dict[SvcKey, dict[str, objects.EndpointSlice]] = {}
        """(namespace, ServiceImport name) -> its EndpointSlices, by slice name."""
        self._services_by_ns: dict[str, dict[str, objects.Service]] = {}
        self._slices_by_service: dict[SvcKey, dict[str, objects.EndpointSlice]] = {}
        self._service_ips: dict[Address, Owners] = {}
        self._endpoint_ips: dict[Address, Owners] = {}
        self._dirty_services: set[SvcKey] = set()
        self._dirty_namespaces: set[str] = set()
        self._listeners: list[Callable[[], None]] = []
        self._watchers: list[Callable[[str, str], None]] = []
        self.generation = 0
        self.modified = int(time.time())
        self.synced = False

    # -- reading -------------------------------------------------------------------

    def services_in(self, namespace: str) -> Sequence[objects.Service]:
        return list(self._services_by_ns.get(namespace, {}).values())

    def get_service(self, namespace: str, name: str) -> objects.Service | None:
        return self.services.get((namespace, name))

    def slices_of(self, namespace: str, service: str) -> Sequence[objects.EndpointSlice]:
        by_name = self._slices_by_service.get((namespace, service))
        if not by_name:
            return ()
        return [by_name[name] for name in sorted(by_name)]

    def get_import(self, namespace: str, name: str) -> objects.ServiceImport | None:
        return self.imports.get((namespace, name))

    def imported_slices_of(self, namespace: str, name: str) -> Sequence[objects.EndpointSlice]:
        """The EndpointSlices labelled with this ServiceImport's name, by slice name."""
        by_name = self._imported_slices.get((namespace, name))
        if not by_name:
            return ()
        return [by_name[n] for n in sorted(by_name)]

    def services_with_ip(self, ip: str) -> list[SvcKey]:
        return _owners(self._service_ips.get(objects.address_number(ip)))

    def services_with_endpoint_ip(self, ip: str) -> list[SvcKey]:
        return _owners(self._endpoint_ips.get(objects.address_number(ip)))

    def pod_namespaces(self, ip: str) -> list[str]:
        """The namespaces with a pod that has this address (``pods verified``)."""
        return sorted(self._pod_index.namespaces(objects.address_key(ip)))

    def pod_namespace(self, ip: str) -> str | None:
        """The namespace of the one pod with this address; None when no pod or several
        have it (host-network pods share their node's address): autopath's client."""
        return self._pod_index.namespace(objects.address_key(ip))

    def pod_has_ip(self, namespace: str, ip: str) -> bool:
        return self._pod_index.has_ip(namespace, objects.address_key(ip))

    def has_pod(self, namespace: str, name: str) -> bool:
        return self._pod_index.has(namespace, name)

    @property
    def pod_count(self) -> int:
        return len(self._pod_index)

    def has_namespace(self, name: str) -> bool:
        return name in self.namespaces

    # -- change tracking -----------------------------------------------------------

    def subscribe(self, listener: Callable[[], None]) -> None:
        """``listener`` is called (synchronously, cheaply) after writes that changed DNS data,
        from the sync on: the writes of the first list reach it as one call, by
        :meth:`mark_synced`. (Compiling names as the first list arrives was wasted work,
        since the sync has every service compiled again, and it took a third of the CPU
        before ready at 10,000 Services and 150,000 Pods.)"""
        self._listeners.append(listener)

    def watch(self, watcher: Callable[[str, str], None]) -> None:
        """``watcher(namespace, service)`` is told what each DNS-relevant write touched: a
        service (its slices included), a namespace (service ""), or everything ("", "")."""
        self._watchers.append(watcher)

    def take_dirty(self) -> tuple[set[SvcKey], set[str]]:
        services, namespaces = self._dirty_services, self._dirty_namespaces
        self._dirty_services, self._dirty_namespaces = set(), set()
        return services, namespaces

    def requeue(self, services: Iterable[SvcKey]) -> None:
        """Give back dirty keys a compiler took but did not get to."""
        self._dirty_services.update(services)

    def _changed(self, namespace: str = "", service: str = "") -> None:
        self.generation += 1
        self.modified = int(time.time())
        for watcher in self._watchers:
            watcher(namespace, service)
        if self.synced:
            for listener in self._listeners:
                listener()

    def mark_synced(self) -> None:
        if not self.synced:
            self.synced = True
            # Answers compiled before the sync say SERVFAIL where a name is missing: redo all.
            self._dirty_services.update(self.services)
            self._changed()

    # -- writing -------------------------------------------------------------------

    def put_service(self, svc: objects.Service) -> bool:
        # One key tuple for the dictionary, the address index and the dirty set (which
        # the table's compiled entries keep): svc.key makes a new one at each call.
        key = svc.key
        old = self.services.get(key)
        if old == svc:
            return False
        if old is not None:
            self._unindex_service(old)
        self.services[key] = svc
        self._services_by_ns.setdefault(svc.namespace, {})[svc.name] = svc
        for ip in svc.cluster_ips:
            if ip != "None":
                _index_add(self._service_ips, objects.address_number(ip), key)
        self._dirty_services.add(key)
        self._changed(*key)
        return True

    def delete_service(self, namespace: str, name: str) -> bool:
        old = self.services.pop((namespace, name), None)
        if old is None:
            return False
        self._unindex_service(old)
        self._dirty_services.add(old.key)
        self._changed(*old.key)
        return True

    def _unindex_service(self, svc: objects.Service) -> None:
        by_name = self._services_by_ns.get(svc.namespace)
        if by_name is not None:
            by_name.pop(svc.name, None)
            if not by_name:
                del self._services_by_ns[svc.namespace]
        for ip in svc.cluster_ips:
            if ip != "None":
                _index_remove(self._service_ips, objects.address_number(ip), svc.key)

    def put_slice(self, eps: objects.EndpointSlice) -> bool:
        old = self.slices.get(eps.key)
        if old == eps:
            return False
        if old is not None:
            self._unindex_slice(old)
        self.slices[eps.key] = eps
        if old is not None and old.imported and old.imported != eps.imported:
            self._changed(old.namespace, IMPORTED + old.imported)
        if eps.imported:
            self._imported_slices.setdefault((eps.namespace, eps.imported), {})[eps.name] = eps
            if not eps.service:
                self._changed(eps.namespace, IMPORTED + eps.imported)
                return True
        owner = (eps.namespace, eps.service)
        self._slices_by_service.setdefault(owner, {})[eps.name] = eps
        for ip in eps.address_numbers():
            _index_add(self._endpoint_ips, ip, owner)
        self._dirty_services.add(owner)
        if eps.imported:
            self._changed(eps.namespace, IMPORTED + eps.imported)
        self._changed(*owner)
        return True

    def delete_slice(self, namespace: str, name: str) -> bool:
        old = self.slices.pop((namespace, name), None)
        if old is None:
            return False
        self._unindex_slice(old)
        if old.imported:
            self._changed(old.namespace, IMPORTED + old.imported)
            if not old.service:
                return True
        self._dirty_services.add((old.namespace, old.service))
        self._changed(old.namespace, old.service)
        return True

    def _unindex_slice(self, eps: objects.EndpointSlice) -> None:
        if eps.imported:
            mine = self._imported_slices.get((eps.namespace, eps.imported))
            if mine is not None:
                mine.pop(eps.name, None)
                if not mine:
                    del self._imported_slices[(eps.namespace, eps.imported)]
            if not eps.service:
                return
        owner = (eps.namespace, eps.service)
        by_name = self._slices_by_service.get(owner)
        if by_name is not None:
            by_name.pop(eps.name, None)
            if not by_name:
                del self._slices_by_service[owner]
        # Another slice of the same service may hold the same address: re-add what remains.
        remaining = {ip for s in self.slices_of(*owner) for ip in s.address_numbers()}
        for ip in eps.address_numbers():
            if ip not in remaining:
                _index_remove(self._endpoint_ips, ip, owner)

    def put_import(self, imp: objects.ServiceImport) -> bool:
        if self.imports.get(imp.key) == imp:
            return False
        self.imports[imp.key] = imp
        self._changed(imp.namespace, IMPORTED + imp.name)
        return True

    def delete_import(self, namespace: str, name: str) -> bool:
        if self.imports.pop((namespace, name), None) is None:
            return False
        self._changed(namespace, IMPORTED + name)
        return True

    def put_namespace(self, ns: objects.Namespace) -> bool:
        if self.namespaces.get(ns.name) == ns:
            return False
        self.namespaces[ns.name] = ns
        self._dirty_namespaces.add(ns.name)
        self._changed(ns.name)
        return True

    def delete_namespace(self, name: str) -> bool:
        if self.namespaces.pop(name, None) is None:
            return False
        self._dirty_namespaces.add(name)
        self._changed(name)
        return True

    def put_pod(self, pod: objects.Pod) -> bool:
        """A whole pod (``kdns explain``): kept, and its addresses indexed."""
        if self.pods.get(pod.key) == pod:
            return False
        self.pods[pod.key] = pod
        self.put_pod_address(objects.PodAddress(pod.namespace, pod.name, pod.ips))
        return True

    def delete_pod(self, namespace: str, name: str) -> bool:
        self.delete_pod_address(namespace, name)
        return self.pods.pop((namespace, name), None) is not None

    def put_pod_address(self, pod: objects.PodAddress) -> bool:
        """What ``pods verified`` reads of a pod: its namespace has these addresses."""
        return self._pod_index.put(pod.namespace, pod.name, podindex.packed_ips(pod.ips))

    def delete_pod_address(self, namespace: str, name: str) -> bool:
        return self._pod_index.delete(namespace, name)

    # -- whole-state replacement (a re-list, a reloaded manifests folder) ------------

    def relist(self, kind: str) -> Relist:
        """Start replacing every object of ``kind`` (a :meth:`replace` keyword, or
        ``"pod_addresses"``): put the new objects as they arrive, then ``finish()``."""
        return Relist(self, kind)

    def replace(
        self,
        services: Iterable[objects.Service] | None = None,
        slices: Iterable[objects.EndpointSlice] | None = None,
        namespaces: Iterable[objects.Namespace] | None = None,
        pods: Iterable[objects.Pod] | None = None,
        imports: Iterable[objects.ServiceImport] | None = None,
    ) -> int:
        """Make the given kinds equal to these objects; returns how many writes it took.

        Diffing instead of swapping keeps a re-list cheap when little changed, and
        still deletes what vanished while the watch was down (nothing is lost on 410).
        """
        writes = 0
        for kind, wanted in (("namespaces", namespaces), ("services", services),
                             ("slices", slices), ("pods", pods),
                             ("imports", imports)):  # fmt: skip
            if wanted is not None:
                relist = self.relist(kind)
                for obj in wanted:
                    writes += relist.put(obj)
                writes += relist.finish()
        return writes


class Relist:
    """One kind replaced in place, page by page: a mark and sweep.

    Each object listed is written at once (an unchanged one costs a comparison and is
    dropped) and its key marked; :meth:`finish` deletes whatever was not marked. So a
    re-list never holds two copies of the cluster, and until it finishes the store
    keeps answering from the old state, updated as pages arrive. What is marked is a
    key per object, nothing more. Pod addresses are the exception: they are built into
    a new packed index (:class:`kdns.cluster.podindex.Build`, ~24 bytes a pod) that
    replaces the old one when the list completes, which answers until then.
    """

    def __init__(self, store: Store, kind: str) -> None:
        if kind not in ("namespaces", "services", "slices", "pods", "pod_addresses", "imports"):
            raise ValueError(f"not a kind the store keeps: {kind}")
        self.store = store
        self.kind = kind
        self._seen: set[object] = set()
        self._pods = store._pod_index.relist() if kind == "pod_addresses" else None
        self._packed: podindex.Packed | None = None
        self._deleted = 0

    def put(self, obj: Any) -> bool:
        """Write one listed object; True if that changed the store."""
        self.mark(obj)
        store = self.store
        if self.kind == "namespaces":
            return store.put_namespace(obj)
        if self.kind == "services":
            return store.put_service(obj)
        if self.kind == "slices":
            return store.put_slice(obj)
        if self.kind == "pods":
            return store.put_pod(obj)
        if self.kind == "imports":
            return store.put_import(obj)
        assert self._pods is not None
        key = podindex.key_of(obj.namespace, obj.name)
        ips = podindex.packed_ips(obj.ips)
        self._pods.put(obj.namespace, key, ips)
        return store._pod_index.get(key) != (obj.namespace, ips)

    def mark(self, obj: Any) -> None:
        """Keep an object without writing it (its last good version, say)."""
        if self.kind == "namespaces":
            self._seen.add(obj.name)
        elif self.kind != "pod_addresses":  # put() builds the new pod index itself
            self._seen.add(obj.key)

    def mark_key(self, namespace: str, name: str) -> None:
        if self.kind == "namespaces":
            self._seen.add(name)
        elif self._pods is not None:  # the stored version goes into the new index
            key = podindex.key_of(namespace, name)
            old = self.store._pod_index.get(key)
            if old is not None:
                self._pods.put(old[0], key, old[1])
        else:
            self._seen.add((namespace, name))

    def prepare(self) -> None:
        """The CPU-bound part of :meth:`finish` for pods (sorting 150,000 pods' columns,
        ~0.5 s), which reads the store without changing it: the informer runs it in a
        thread, so the event loop keeps answering. Nothing to do for other kinds."""
        if self._pods is not None and self._packed is None:
            self._packed = self._pods.pack()
            self._deleted = self.store._pod_index.deleted_by(self._packed)

    def finish(self) -> int:
        """Delete what the listing did not hold; returns how many deletes it took."""
        store, seen = self.store, self._seen
        writes = 0
        if self.kind == "namespaces":
            for name in [n for n in store.namespaces if n not in seen]:
                writes += store.delete_namespace(name)
        elif self.kind == "services":
            for key in [k for k in store.services if k not in seen]:
                writes += store.delete_service(*key)
        elif self.kind == "slices":
            for key in [k for k in store.slices if k not in seen]:
                writes += store.delete_slice(*key)
        elif self.kind == "pods":
            for key in [k for k in store.pods if k not in seen]:
                writes += store.delete_pod(*key)
        elif self.kind == "imports":
            for key in [k for k in store.imports if k not in seen]:
                writes += store.delete_import(*key)
        elif self._pods is not None:
            self.prepare()
            assert self._packed is not None
            writes += self._deleted
            store._pod_index.install(self._packed)
            self._pods, self._packed = store._pod_index.build(), None
        self._seen = set()
        return writes
