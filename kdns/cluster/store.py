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
from typing import TypeVar

from kdns.cluster import objects

SvcKey = tuple[str, str]
K = TypeVar("K")
V = TypeVar("V")


def _index_add(index: dict[str, set[K]], ip: str, key: K) -> None:
    index.setdefault(ip, set()).add(key)


def _index_remove(index: dict[str, set[K]], ip: str, key: K) -> None:
    keys = index.get(ip)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[ip]


class Store:
    """Objects by key, with the reverse indexes CoreDNS keeps (SvcIndexReverse, EpIndexReverse)."""

    def __init__(self) -> None:
        self.services: dict[SvcKey, objects.Service] = {}
        self.slices: dict[SvcKey, objects.EndpointSlice] = {}
        self.namespaces: dict[str, objects.Namespace] = {}
        self.pods: dict[SvcKey, objects.Pod] = {}
        self._services_by_ns: dict[str, dict[str, objects.Service]] = {}
        self._slices_by_service: dict[SvcKey, dict[str, objects.EndpointSlice]] = {}
        self._service_ips: dict[str, set[SvcKey]] = {}
        self._endpoint_ips: dict[str, set[SvcKey]] = {}
        self._dirty_services: set[SvcKey] = set()
        self._dirty_namespaces: set[str] = set()
        self._listeners: list[Callable[[], None]] = []
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

    def services_with_ip(self, ip: str) -> list[SvcKey]:
        return sorted(self._service_ips.get(ip, ()))

    def services_with_endpoint_ip(self, ip: str) -> list[SvcKey]:
        return sorted(self._endpoint_ips.get(ip, ()))

    def has_namespace(self, name: str) -> bool:
        return name in self.namespaces

    # -- change tracking -----------------------------------------------------------

    def subscribe(self, listener: Callable[[], None]) -> None:
        """``listener`` is called (synchronously, cheaply) after writes that changed DNS data."""
        self._listeners.append(listener)

    def take_dirty(self) -> tuple[set[SvcKey], set[str]]:
        services, namespaces = self._dirty_services, self._dirty_namespaces
        self._dirty_services, self._dirty_namespaces = set(), set()
        return services, namespaces

    def requeue(self, services: Iterable[SvcKey]) -> None:
        """Give back dirty keys a compiler took but did not get to."""
        self._dirty_services.update(services)

    def _changed(self) -> None:
        self.generation += 1
        self.modified = int(time.time())
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
        old = self.services.get(svc.key)
        if old == svc:
            return False
        if old is not None:
            self._unindex_service(old)
        self.services[svc.key] = svc
        self._services_by_ns.setdefault(svc.namespace, {})[svc.name] = svc
        for ip in svc.cluster_ips:
            if ip != "None":
                _index_add(self._service_ips, ip, svc.key)
        self._dirty_services.add(svc.key)
        self._changed()
        return True

    def delete_service(self, namespace: str, name: str) -> bool:
        old = self.services.pop((namespace, name), None)
        if old is None:
            return False
        self._unindex_service(old)
        self._dirty_services.add(old.key)
        self._changed()
        return True

    def _unindex_service(self, svc: objects.Service) -> None:
        by_name = self._services_by_ns.get(svc.namespace)
        if by_name is not None:
            by_name.pop(svc.name, None)
            if not by_name:
                del self._services_by_ns[svc.namespace]
        for ip in svc.cluster_ips:
            _index_remove(self._service_ips, ip, svc.key)

    def put_slice(self, eps: objects.EndpointSlice) -> bool:
        old = self.slices.get(eps.key)
        if old == eps:
            return False
        if old is not None:
            self._unindex_slice(old)
        self.slices[eps.key] = eps
        owner = (eps.namespace, eps.service)
        self._slices_by_service.setdefault(owner, {})[eps.name] = eps
        for endpoint in eps.endpoints:
            for ip in endpoint.addresses:
                _index_add(self._endpoint_ips, ip, owner)
        self._dirty_services.add(owner)
        self._changed()
        return True

    def delete_slice(self, namespace: str, name: str) -> bool:
        old = self.slices.pop((namespace, name), None)
        if old is None:
            return False
        self._unindex_slice(old)
        self._dirty_services.add((old.namespace, old.service))
        self._changed()
        return True

    def _unindex_slice(self, eps: objects.EndpointSlice) -> None:
        owner = (eps.namespace, eps.service)
        by_name = self._slices_by_service.get(owner)
        if by_name is not None:
            by_name.pop(eps.name, None)
            if not by_name:
                del self._slices_by_service[owner]
        # Another slice of the same service may hold the same address: re-add what remains.
        remaining = {ip for s in self.slices_of(*owner) for e in s.endpoints for ip in e.addresses}
        for endpoint in eps.endpoints:
            for ip in endpoint.addresses:
                if ip not in remaining:
                    _index_remove(self._endpoint_ips, ip, owner)

    def put_namespace(self, ns: objects.Namespace) -> bool:
        if self.namespaces.get(ns.name) == ns:
            return False
        self.namespaces[ns.name] = ns
        self._dirty_namespaces.add(ns.name)
        self._changed()
        return True

    def delete_namespace(self, name: str) -> bool:
        if self.namespaces.pop(name, None) is None:
            return False
        self._dirty_namespaces.add(name)
        self._changed()
        return True

    def put_pod(self, pod: objects.Pod) -> bool:
        if self.pods.get(pod.key) == pod:
            return False
        self.pods[pod.key] = pod
        return True

    def delete_pod(self, namespace: str, name: str) -> bool:
        return self.pods.pop((namespace, name), None) is not None

    # -- whole-state replacement (a re-list, a reloaded manifests folder) ------------

    def replace(
        self,
        services: Iterable[objects.Service] | None = None,
        slices: Iterable[objects.EndpointSlice] | None = None,
        namespaces: Iterable[objects.Namespace] | None = None,
        pods: Iterable[objects.Pod] | None = None,
    ) -> int:
        """Make the given kinds equal to these objects; returns how many writes it took.

        Diffing instead of swapping keeps a re-list cheap when little changed, and
        still deletes what vanished while the watch was down (nothing is lost on 410).
        """
        writes = 0
        if namespaces is not None:
            wanted_ns = {ns.name: ns for ns in namespaces}
            for name in [n for n in self.namespaces if n not in wanted_ns]:
                writes += self.delete_namespace(name)
            for ns in wanted_ns.values():
                writes += self.put_namespace(ns)
        if services is not None:
            wanted = {svc.key: svc for svc in services}
            for key in [k for k in self.services if k not in wanted]:
                writes += self.delete_service(*key)
            for svc in wanted.values():
                writes += self.put_service(svc)
        if slices is not None:
            wanted_slices = {eps.key: eps for eps in slices}
            for key in [k for k in self.slices if k not in wanted_slices]:
                writes += self.delete_slice(*key)
            for eps in wanted_slices.values():
                writes += self.put_slice(eps)
        if pods is not None:
            wanted_pods = {pod.key: pod for pod in pods}
            for key in [k for k in self.pods if k not in wanted_pods]:
                writes += self.delete_pod(*key)
            for pod in wanted_pods.values():
                writes += self.put_pod(pod)
        return writes
