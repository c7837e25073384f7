"""A cluster at Kubernetes' limits, and the API emulator serving it from its own process.

Two uses:

* a library of the cluster's layout (which IP each Service, endpoint and Pod has, which
  Services are headless), so :mod:`memory_scale` can say what every sampled name must
  answer without asking the emulator;
* ``python benchmarks/scale_cluster.py --services 10000 --endpoints-per-service 15
  --pods 150000``: the API emulator (``tests.apiemu``) seeded in bulk in its own
  process, printing one JSON line with its URLs once it serves, then driven through its
  ``/_emu/`` side channel (compact, cut watches, down, up) until it is terminated.

Seeding goes through the emulator's public ``put_many`` in batches, in process (no
HTTP round trip per object), and then compacts the log, as a freshly started API
server has no history to replay. Every object's list encoding is made once up front,
so the first list kdns sends is not slowed by the emulator's JSON encoding.

The objects are shaped as a real cluster's (labels, ownerReferences, conditions,
targetRef, nodeName and zone, container ports, pod conditions), without
``managedFields``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import ipaddress
import json
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

Obj = dict[str, Any]

SERVICE_BASE = int(ipaddress.IPv4Address("10.96.0.0"))
POD_BASE = int(ipaddress.IPv4Address("10.128.0.0"))
NODES = 5_000
ZONES = ("zone-a", "zone-b", "zone-c")
CREATED = "2026-01-01T00:00:00Z"


def apiemu() -> ModuleType:
    """The API emulator package: the one place that knows where it lives."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        import tests.support.apiemu as module  # type: ignore[import-not-found]
    except ImportError:
        import tests.apiemu as module  # type: ignore[no-redef]
    return module


@dataclass(frozen=True, slots=True)
class Layout:
    """Which object has which name and address: a pure function of the sizes."""

    services: int = 10_000
    endpoints_per_service: int = 15
    pods: int = 0
    namespaces: int = 100
    headless_every: int = 10
    """Every n-th Service is headless (its A records are its endpoints); 0: none."""

    # -- names ---------------------------------------------------------------------
    def namespace(self, n: int) -> str:
        return f"ns-{n % self.namespaces}"

    @staticmethod
    def service_name(n: int) -> str:
        return f"svc-{n}"

    def headless(self, n: int) -> bool:
        return self.headless_every > 0 and n % self.headless_every == self.headless_every - 1

    # -- addresses -----------------------------------------------------------------
    @staticmethod
    def service_ip(n: int) -> str:
        return str(ipaddress.IPv4Address(SERVICE_BASE + 16 + n))

    @staticmethod
    def pod_ip(p: int) -> str:
        """Pod number ``p``; the first services x endpoints_per_service pods back the
        endpoints (pod ``n * E + k`` is endpoint ``k`` of Service ``n``)."""
        return str(ipaddress.IPv4Address(POD_BASE + 2 + p))

    def endpoint_ips(self, n: int) -> list[str]:
        per = self.endpoints_per_service
        return [self.pod_ip(n * per + k) for k in range(per)]

    def pod_name(self, p: int) -> str:
        per = self.endpoints_per_service
        if per and p < self.services * per:
            return f"{self.service_name(p // per)}-7c9f8d6b5-{p % per:05x}"
        return f"batch-{p}-{p % 997:05x}"

    def pod_namespace(self, p: int) -> str:
        per = self.endpoints_per_service
        if per and p < self.services * per:
            return self.namespace(p // per)
        return self.namespace(p)

    # -- objects -------------------------------------------------------------------
    def namespace_obj(self, i: int) -> Obj:
        name = f"ns-{i}"
        return {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }

    def service_obj(self, n: int) -> Obj:
        name, ns = self.service_name(n), self.namespace(n)
        ip = "None" if self.headless(n) else self.service_ip(n)
        spec: Obj = {
            "type": "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster",
            "sessionAffinity": "None",
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
        }
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": name,
                "namespace": ns,
                "creationTimestamp": CREATED,
                "labels": {
                    "app.kubernetes.io/name": name,
                    "app.kubernetes.io/part-of": f"team-{n % 37}",
                },
                "annotations": {"owner": f"team-{n % 37}@example.com"},
            },
            "spec": spec,
            "status": {"loadBalancer": {}},
        }

    def slice_obj(self, n: int) -> Obj:
        name, ns = self.service_name(n), self.namespace(n)
        per = self.endpoints_per_service
        endpoints = [
            {
                "addresses": [ip],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": f"node-{(n * per + k) % NODES}",
                "zone": ZONES[(n * per + k) % len(ZONES)],
                "targetRef": {
                    "kind": "Pod",
                    "name": self.pod_name(n * per + k),
                    "namespace": ns,
                    "uid": f"00000000-0000-4000-8000-{n * per + k:012d}",
                },
            }
            for k, ip in enumerate(self.endpoint_ips(n))
        ]
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-x7k2p",
                "namespace": ns,
                "creationTimestamp": CREATED,
                "generateName": f"{name}-",
                "labels": {
                    "kubernetes.io/service-name": name,
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                },
                "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": CREATED},
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "name": name,
                        "blockOwnerDeletion": True,
                        "controller": True,
                        "uid": f"00000000-0000-4000-9000-{n:012d}",
                    }
                ],
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }

    def pod_obj(self, p: int) -> Obj:
        name, ns, ip = self.pod_name(p), self.pod_namespace(p), self.pod_ip(p)
        app = name.rsplit("-", 2)[0]
        node = f"node-{p % NODES}"
        conditions = [
            {"type": t, "status": "True", "lastTransitionTime": CREATED}
            for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
        ]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": ns,
                "creationTimestamp": CREATED,
                "generateName": f"{app}-7c9f8d6b5-",
                "labels": {"app.kubernetes.io/name": app, "pod-template-hash": "7c9f8d6b5"},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": f"{app}-7c9f8d6b5",
                        "blockOwnerDeletion": True,
                        "controller": True,
                        "uid": f"00000000-0000-4000-a000-{p:012d}",
                    }
                ],
            },
            "spec": {
                "nodeName": node,
                "restartPolicy": "Always",
                "dnsPolicy": "ClusterFirst",
                "serviceAccountName": "default",
                "terminationGracePeriodSeconds": 30,
                "containers": [
                    {
                        "name": "app",
                        "image": "registry.example.com/app:1.4.2",
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                        "imagePullPolicy": "IfNotPresent",
                    }
                ],
            },
            "status": {
                "phase": "Running",
                "hostIP": f"192.168.{(p % NODES) // 250}.{(p % NODES) % 250 + 1}",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "qosClass": "Burstable",
                "startTime": CREATED,
                "conditions": conditions,
            },
        }

    def objects(self) -> Iterator[Obj]:
        for i in range(self.namespaces):
            yield self.namespace_obj(i)
        for n in range(self.services):
            yield self.service_obj(n)
            if self.endpoints_per_service:
                yield self.slice_obj(n)
        for p in range(self.pods):
            yield self.pod_obj(p)


def add_layout_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument(
        "--endpoints-per-service",
        type=int,
        default=15,
        help="endpoints in each Service's one EndpointSlice",
    )
    parser.add_argument(
        "--pods",
        type=int,
        default=0,
        help="Pods in the API (the first services x endpoints back the "
        "endpoints); only a `pods verified` kdns watches them",
    )
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument(
        "--headless-every", type=int, default=10, help="every n-th Service is headless (0: none)"
    )


def layout_of(args: argparse.Namespace) -> Layout:
    return Layout(
        args.services, args.endpoints_per_service, args.pods, args.namespaces, args.headless_every
    )


# -- the emulator process -----------------------------------------------------------------


def serve_pages_fast(emu_mod: ModuleType, store: Any) -> None:
    """Make the emulator's paged lists cost O(page), as kube-apiserver's watch cache does.

    The emulator sorts every object of a resource, and reads every key, for each page;
    at 150,000 Pods that is ~0.3 s a page and 100 s for a list, so the benchmark would
    time the emulator, not kdns. This keeps, per resource, the sorted list of entries
    (each carrying its key as a plain attribute) until the next write to it, and hands
    the emulator's own ``entries`` every request it cannot answer from that (a list at an
    older revision). Only the store's public ``entries`` and ``subscribe`` are used.
    """
    base = importlib.import_module(f"{emu_mod.__name__}.store").Entry

    class KeyedEntry(base):  # type: ignore[misc, valid-type]
        __slots__ = ("key",)

    original = store.entries
    cache: dict[Any, list[Any]] = {}

    def forget(event: Any) -> None:
        cache.pop(event.resource, None)

    def entries(resource: Any, at: int | None = None) -> list[Any]:
        if at is not None and at < store.revision:
            return list(original(resource, at))
        found = cache.get(resource)
        if found is None:
            found = []
            for entry in original(resource):
                keyed = KeyedEntry(entry.obj)
                keyed.key = entry.key
                keyed._item = entry.item_json()
                found.append(keyed)
            cache[resource] = found
        return list(found)

    store.subscribe(forget)
    store.entries = entries


async def _serve(args: argparse.Namespace) -> None:
    emu_mod = apiemu()
    resources = importlib.import_module(f"{emu_mod.__name__}.resources")
    layout = layout_of(args)
    started = time.perf_counter()
    async with emu_mod.serving(
        port=args.port, control_port=args.control_port, bookmark_interval=args.bookmark_interval
    ) as emu:
        batch: list[Obj] = []
        count = 0
        for obj in layout.objects():
            batch.append(obj)
            if len(batch) >= 2_000:
                emu.put_many(batch)
                count += len(batch)
                batch = []
                await asyncio.sleep(0)
        emu.put_many(batch)
        count += len(batch)
        emu.compact()
        serve_pages_fast(emu_mod, emu.store)
        encoded = 0
        for version, kind in (
            ("v1", "Namespace"),
            ("v1", "Service"),
            ("v1", "Pod"),
            ("discovery.k8s.io/v1", "EndpointSlice"),
        ):
            for entry in emu.store.entries(resources.by_kind(version, kind)):
                encoded += len(entry.item_json())
        print(
            json.dumps(
                {
                    "url": emu.url,
                    "control": emu.control_url,
                    "objects": count,
                    "list_bytes": encoded,
                    "seed_seconds": round(time.perf_counter() - started, 2),
                }
            ),
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_layout_arguments(parser)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--bookmark-interval", type=float, default=60.0)
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
