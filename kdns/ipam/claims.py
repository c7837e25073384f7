"""Claims on addresses, arbitrated by the API server, that never break the API server's own.

How kube-apiserver claims a ClusterIP (the IPAddress allocator of KEP-1880, the only
one from 1.33 on, ``pkg/registry/core/service/ipallocator/ipallocator.go``): on Service
CREATE it POSTs an ``networking.k8s.io/v1`` IPAddress named after the address, with
``spec.parentRef`` pointing at the Service, and treats *any* AlreadyExists as "provided
IP is already allocated". It never reads the existing object's parentRef. So if kdns
created the IPAddress for the Service it is about to patch, the API server's own create
would get 409 and the Service would be refused with the very address kdns chose for it.
(The repair loop would also treat an IPAddress without a live parent as an orphan.)

kdns therefore creates no IPAddress objects. It only *reads* them: an existing one
means the API server already gave that address away, whatever kdns's cache says yet.

Replicas still need a claim that etcd arbitrates, for the moments when two of them
believe they lead (a paused process whose Lease ran out, a partition). The claim is a
``coordination.k8s.io/v1`` Lease in kdns's own namespace, named after the address
(``kdns-clusterip-10.96.0.20``), holding the Service's ``namespace/name``: a Lease is
an object the API server stores and never interprets, so creating it cannot make any
Service create fail, and a second create of the same name gets 409 from etcd, which is
all the arbitration needed. A claim lives ``ttl`` seconds, long enough for the Service
to be stored and show up in every replica's cache (after which the Service itself
holds the address); expired claims are deleted by the leader.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kdns.cluster.kube import client
from kdns.ipam import leader

log = logging.getLogger(__name__)

PREFIX = "kdns-clusterip-"
LABEL = "kdns.io/clusterip-claim"
IPADDRESS_API = "/apis/networking.k8s.io/v1/ipaddresses"
DEFAULT_TTL = 60.0


def claim_name(address: str) -> str:
    """A Lease name (a DNS subdomain) for an address: dotted IPv4, exploded IPv6."""
    parsed = ipaddress.ip_address(address)
    if parsed.version == 4:
        return PREFIX + str(parsed)
    return PREFIX + parsed.exploded.replace(":", "-")


def address_of(name: str) -> str | None:
    """The address a claim's name stands for (the inverse of :func:`claim_name`)."""
    if not name.startswith(PREFIX):
        return None
    text = name[len(PREFIX) :]
    if "-" in text:
        text = text.replace("-", ":")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def owner_text(owner: tuple[str, str]) -> str:
    return f"{owner[0]}/{owner[1]}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """Whether a Service may have an address, and if not, who holds it."""

    granted: bool
    holder: str = ""  # "apiserver" (an IPAddress exists) or a claim's namespace/name


class Claims:
    """Create, check and collect the claims of one kdns installation."""

    def __init__(
        self,
        rest: leader.Rest,
        namespace: str,
        *,
        ttl: float = DEFAULT_TTL,
        identity: str = "",
        wall: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rest = rest
        self.namespace = namespace
        self.ttl = ttl
        self.identity = identity
        self._wall = wall
        self._clock = clock
        self._warned: set[str] = set()

    def _path(self, address: str = "") -> str:
        return leader.lease_path(self.namespace, claim_name(address) if address else "")

    async def apiserver_holds(self, address: str) -> bool:
        """True when an IPAddress of that name exists: the API server gave it away.

        Unknown (no RBAC, no IPAddress API on an old cluster) counts as not held: the
        API server still refuses a duplicate itself, kdns only loses its early warning.
        """
        try:
            await self.rest.get(f"{IPADDRESS_API}/{address}")
        except leader.NotFound:
            return False
        except (client.ApiError, client.Unreachable) as exc:
            reason = type(exc).__name__
            if reason not in self._warned:
                self._warned.add(reason)
                log.warning("clusterip: cannot read IPAddress objects (%s); relying on claims", exc)
            return False
        return True

    def _lease(self, address: str, owner: tuple[str, str]) -> dict[str, Any]:
        now = leader.microtime(self._wall())
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": claim_name(address),
                "namespace": self.namespace,
                "labels": {LABEL: "true", "app.kubernetes.io/managed-by": "kdns"},
                "annotations": {"kdns.io/address": address, "kdns.io/claimed-by": self.identity},
            },
            "spec": leader.Record(owner_text(owner), round(self.ttl), now, now, 0).spec(),
        }

    def _expired(self, lease: dict[str, Any]) -> bool:
        record = leader.Record.from_lease(lease)
        renewed = leader.parse_microtime(record.renew_time)
        if renewed is None:
            return True
        return self._wall() >= renewed + datetime.timedelta(seconds=record.duration)

    async def claim(self, address: str, owner: tuple[str, str]) -> Outcome:
        """Claim ``address`` for the Service ``owner``; raises only on transport/API errors.

        Granted when the claim is created, or already held by the same Service (the API
        server retried the webhook call), or expired and taken over with a write guarded
        by its resourceVersion.
        """
        if await self.apiserver_holds(address):
            return Outcome(False, "apiserver")
        try:
            await self.rest.create(self._path(), self._lease(address, owner))
            return Outcome(True)
        except leader.Conflict:
            pass
        try:
            existing = await self.rest.get(self._path(address))
        except leader.NotFound:
            return Outcome(False, "")  # collected between our create and get: try another
        holder = leader.Record.from_lease(existing).holder
        if owner[1] and holder == owner_text(owner):
            return Outcome(True)
        if not self._expired(existing):
            return Outcome(False, holder)
        fresh = self._lease(address, owner)
        fresh["metadata"]["resourceVersion"] = existing["metadata"].get("resourceVersion")
        try:
            await self.rest.replace(self._path(address), fresh)
        except (leader.Conflict, leader.NotFound):
            return Outcome(False, holder)
        return Outcome(True)

    async def release(self, address: str, owner: tuple[str, str]) -> None:
        """Drop our claim on an address this request will not use after all."""
        try:
            existing = await self.rest.get(self._path(address))
            if leader.Record.from_lease(existing).holder != owner_text(owner):
                return
            version = existing["metadata"].get("resourceVersion")
            await self.rest.delete(self._path(address), version)
        except (client.ApiError, client.Unreachable) as exc:
            log.info(
                "clusterip: could not release claim on %s (it expires anyway): %s", address, exc
            )

    async def collect(self) -> list[tuple[str, tuple[str, str]]]:
        """Delete expired claims; returns the live ones as (address, Service) for the pool."""
        listing = await self.rest.list(self._path(), {"labelSelector": f"{LABEL}=true"})
        live: list[tuple[str, tuple[str, str]]] = []
        for lease in listing.get("items") or ():
            meta = lease.get("metadata") or {}
            address = address_of(str(meta.get("name") or ""))
            if address is None:
                continue
            if not self._expired(lease):
                namespace, _, name = leader.Record.from_lease(lease).holder.partition("/")
                live.append((address, (namespace, name)))
                continue
            # Gone already, or just taken over: either way not ours to delete.
            with contextlib.suppress(leader.NotFound, leader.Conflict):
                await self.rest.delete(self._path(address), meta.get("resourceVersion"))
        return live
