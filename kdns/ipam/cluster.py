"""Cluster mode: the allocator behind ``/allocate``, fed by the informer cache.

In a cluster the API server is the authority and kdns only proposes addresses, so the
allocator keeps no state it could not rebuild: the pool is rebuilt from the Services in
the store (the repair loop's rules, :func:`repair.rebuild`) whenever the store changed,
plus the addresses claimed in the last ``ttl`` seconds that the cache cannot show yet.

Sticky addresses come from the same cache: the store tells its subscribers that
something changed (not what), so the subscription only marks the view dirty and the
next look (an allocation, a status read, or the periodic tick) compares the Services
with the ones seen before. A Service that vanished with addresses is remembered by
namespace/name; when a Service of that name is created again while the addresses are
free, it gets them back. Every replica keeps this memory, so a new leader has it too.

Picks are proposals until claimed (:mod:`claims`): the leader claims each address
before answering, and on a refusal marks it taken and picks again.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kdns.cluster import objects, store
from kdns.ipam import admission, claims, config, dualstack, errors, leader, repair, status

log = logging.getLogger(__name__)

Key = tuple[str, str]

MAX_ATTEMPTS = 16
"""Picks per request before giving up: each refused one is blocked, so this only runs
out when the cache is far behind the API server; then "no opinion" is the right answer."""
NOBODY: Key = ("", "")
MEMORY_SIZE = 65536
"""Deleted Services remembered for stickiness, oldest forgotten first."""


class ClusterAllocator:
    """The pool, the sticky memory and the claim step for one cluster's store."""

    def __init__(
        self,
        cfg: config.ClusterIPConfig,
        cache: store.Store,
        *,
        claimer: claims.Claims | None = None,
        elector: leader.Elector | None = None,
        ttl: float = claims.DEFAULT_TTL,
        random_source: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        memory_size: int = MEMORY_SIZE,
    ) -> None:
        self.cfg = cfg
        self.store = cache
        self.claimer = claimer
        self.elector = elector
        self.ttl = ttl
        self._random = random_source if random_source is not None else random.Random()
        self._clock = clock
        self._memory_size = memory_size
        self.memory: collections.OrderedDict[Key, tuple[str, ...]] = collections.OrderedDict()
        self._seen: dict[Key, objects.Service] = {}
        # address -> (clock() deadline, the Service it was picked for; NOBODY when refused)
        self._held: dict[str, tuple[float, Key]] = {}
        self._changed = True
        self._pool_stale = True
        self._pool = cfg.pool(self._random)
        self.problems: list[repair.Problem] = []
        self._lock = asyncio.Lock()
        cache.subscribe(self._on_change)

    # -- the view of the cache ----------------------------------------------------------

    def _on_change(self) -> None:
        self._changed = True  # cheap: called synchronously on every store write

    def refresh(self) -> None:
        """Catch up with the store: remember vanished Services, mark the pool stale."""
        if not self._changed:
            return
        self._changed = False
        self._pool_stale = True
        current = self.store.services
        for key, old in self._seen.items():
            if key not in current and repair.holds_addresses(old):
                self.memory[key] = old.cluster_ips
                self.memory.move_to_end(key)
        for key in [k for k in self.memory if k in current]:
            del self.memory[key]
        while len(self.memory) > self._memory_size:
            self.memory.popitem(last=False)
        self._seen = dict(current)

    def pool(self) -> dualstack.Pool:
        """The pool as the cache and the recent claims make it (rebuilt only if stale)."""
        self.refresh()
        now = self._clock()
        for address in [a for a, (deadline, _) in self._held.items() if deadline <= now]:
            del self._held[address]
            self._pool_stale = True  # an expired hold must free its address
        if self._pool_stale:
            pool = self.cfg.pool(self._random)
            self.problems = repair.rebuild(pool, self.store.services.values())
            for address, (_, key) in list(self._held.items()):
                if key in self.store.services_with_ip(address):
                    del self._held[address]  # cached now: the Service itself holds it
                    continue
                owner = pool.owner_of(address)
                if owner is not None and owner.is_free(address):
                    owner.allocate(address)
            self._pool, self._pool_stale = pool, False
        return self._pool

    def _hold(self, addresses: Sequence[str], key: Key = NOBODY) -> None:
        """Keep addresses taken for ``ttl`` seconds (or until cached), in the current pool too."""
        deadline = self._clock() + self.ttl
        for address in addresses:
            self._held[address] = (deadline, key)
            owner = self._pool.owner_of(address)
            if owner is not None and owner.is_free(address):
                owner.allocate(address)

    def preferred(self, key: Key) -> tuple[str, ...]:
        """What this Service gets if free: its remembered addresses, then its reserved ones."""
        return self.memory.get(key, ()) + self.cfg.owned(key)

    def _unhold_own(self, pool: dualstack.Pool, key: Key) -> tuple[str, ...]:
        """Give back what an earlier call picked for the same Service (a retried webhook
        call, a delete and create within ``ttl``), so this call may pick it again."""
        mine = tuple(a for a, (_, owner) in self._held.items() if owner == key)
        for address in mine:
            del self._held[address]
        pool.release(mine)
        return mine

    # -- state for the webhook ----------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self.store.synced

    @property
    def leading(self) -> bool:
        """Allowed to pick: the elected replica, or the only one when there is no election."""
        return self.elector is None or self.elector.is_leader

    def leader_address(self) -> str | None:
        return None if self.elector is None else self.elector.leader_address()

    # -- allocation ----------------------------------------------------------------------

    async def allocate(
        self, service: Mapping[str, Any], *, dry_run: bool = False
    ) -> dict[str, Any] | None:
        """The spec fields to add to a Service being created, or None if it needs none.

        Raises :class:`errors.InvalidService` / :class:`errors.InternalError` (the API server
        will say the same) and the claim client's errors. A dry run picks from the same
        pool and gives the address straight back: no claim, no hold.
        """
        meta = service.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        async with self._lock:
            if dry_run:
                pool = self.pool()
                fields = admission.fields_to_set(pool, service, self.preferred(key))
                if fields is not None:
                    pool.release(fields["clusterIPs"])
                return fields
            preferred: tuple[str, ...] = ()
            if key[1]:  # generateName: no name yet, nothing to remember it by
                preferred = self._unhold_own(self.pool(), key) + self.preferred(key)
            for _ in range(MAX_ATTEMPTS):
                pool = self.pool()
                fields = admission.fields_to_set(pool, service, preferred)
                if fields is None:
                    return None
                picked: list[str] = list(fields["clusterIPs"])
                refused = await self._claim_all(picked, key)
                if refused is None:
                    self._hold(picked, key)
                    return fields
                # The pool still holds every pick: keep the refused one blocked for a
                # while (someone holds it that the cache does not show yet), free the rest.
                pool.release([a for a in picked if a != refused])
                self._hold([refused])
            raise errors.InternalError(
                f"failed to allocate a serviceIP: {MAX_ATTEMPTS} picks were all claimed elsewhere"
            )

    async def _claim_all(self, picked: Sequence[str], key: Key) -> str | None:
        """Claim every address or none; returns the first refused address, None if all held."""
        if self.claimer is None:
            return None
        granted: list[str] = []
        for address in picked:
            outcome = await self.claimer.claim(address, key)
            if not outcome.granted:
                log.info(
                    "clusterip: %s for %s/%s is held by %s; picking again",
                    address,
                    key[0],
                    key[1],
                    outcome.holder or "another claim",
                )
                for done in granted:
                    await self.claimer.release(done, key)
                return address
            granted.append(address)
        return None

    # -- status ---------------------------------------------------------------------------

    def status(self) -> tuple[status.RangeStatus, ...]:
        """Per range, as ``kdns ipam status`` shows for manifests (cache plus recent claims)."""
        return status.pool_status(self.pool())

    def status_text(self) -> str:
        if not self.synced:
            return "service cache not synced yet\n"
        return status.render_text(self.status())

    def status_json(self) -> str:
        return status.render_json(self.status())

    # -- background -----------------------------------------------------------------------

    async def run(self, tick: float = 1.0) -> None:
        """Keep the sticky memory current, take part in the election, collect claims."""
        async with asyncio.TaskGroup() as group:
            if self.elector is not None:
                group.create_task(self.elector.run(), name="ipam-leader-election")
            group.create_task(self._tick(tick), name="ipam-refresh")

    async def _tick(self, tick: float) -> None:
        collected = self._clock()
        while True:
            await asyncio.sleep(tick)
            self.refresh()
            if self.claimer is None or not self.leading:
                continue
            if self._clock() - collected < self.ttl / 2:
                continue
            collected = self._clock()
            try:
                live = await self.claimer.collect()
            except Exception as exc:  # a transient API error must not stop the ticks
                log.warning("clusterip: collecting expired claims failed: %s", exc)
                continue
            async with self._lock:
                for address, key in live:
                    if address not in self._held:
                        self._hold([address], key)
