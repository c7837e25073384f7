"""Local mode: clusterIPs for the Services of a manifests folder, sticky across restarts.

Without an API server kdns is the authority for the addresses, but it never writes
to the folder: the assignment is recomputed from scratch on every load, from the
Services themselves, and kept stable by the :mod:`store`. The order of the passes is
what makes that stable:

1. addresses written in manifests are claimed first (the repair loop's rules);
2. every Service that has a preferred address (its remembered one, an address
   ``reserve``\\ d for it, network+1 for ``default/kubernetes``) holds it, so
3. the dynamic picks that follow, in namespace/name order, cannot take it.

Several kdns processes may share one folder and one store. Each pick of step 3 is then
granted by the store (:meth:`store.Store.claim`), one write transaction per Service: an
address the store gives another present Service is marked taken here and the pick
moves on, and an address the store already gives this Service wins over this process's
own pick. Processes thus agree on every address whatever their interleaving.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from kdns.cluster import objects
from kdns.ipam import config, dualstack, errors, repair, store

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Result:
    """The clusterIPs per Service key (every input Service), plus what went wrong."""

    cluster_ips: dict[Key, tuple[str, ...]]
    families: dict[Key, tuple[str, ...]]
    problems: tuple[repair.Problem, ...] = ()
    errors: dict[Key, str] = field(default_factory=dict)
    pool: dualstack.Pool | None = None  # the state after assignment, for status


def _preferred(
    cfg: config.ClusterIPConfig, remembered: Iterable[str], key: Key, pool: dualstack.Pool
) -> list[str]:
    wanted = list(remembered) + list(cfg.owned(key))
    if key == dualstack.KUBERNETES_SERVICE:
        wanted += [a.range.to_text(a.range.first) for a in pool.allocators]
    return wanted


def assign(
    cfg: config.ClusterIPConfig,
    services: Iterable[objects.Service],
    memory: store.Store | None = None,
    random_source: random.Random | None = None,
) -> Result:
    """Assign clusterIPs to the Services that have none; remember every assignment."""
    pool = cfg.pool(random_source)
    listed = sorted(services, key=lambda s: s.key)
    problems = repair.rebuild(pool, listed)
    remembered = memory.all() if memory is not None else {}

    cluster_ips: dict[Key, tuple[str, ...]] = {}
    families: dict[Key, tuple[str, ...]] = {}
    failures: dict[Key, str] = {}
    pending: list[objects.Service] = []
    for service in listed:
        if service.is_external_name:
            cluster_ips[service.key] = ()
            families[service.key] = ()
        elif service.cluster_ips:
            cluster_ips[service.key] = service.cluster_ips
            families[service.key] = service.ip_families
        else:
            pending.append(service)

    held: dict[Key, list[str]] = {}
    for service in pending:
        for address in _preferred(cfg, remembered.get(service.key, ()), service.key, pool):
            owner = pool.owner_of(address)
            if owner is None or not owner.is_free(address):
                continue
            if any(owner.range.to_int(h) is not None for h in held.get(service.key, ())):
                continue  # one held address per family
            owner.allocate(address)
            held.setdefault(service.key, []).append(address)

    live = {service.key for service in listed}
    for service in pending:
        mine = held.pop(service.key, [])
        pool.release(mine)
        try:
            got = _claim(pool, service, mine, memory, live, held)
        except (errors.InvalidService, errors.InternalError) as exc:
            failures[service.key] = str(exc)
            cluster_ips[service.key] = ()
            families[service.key] = ()
            continue
        cluster_ips[service.key] = got.cluster_ips
        families[service.key] = got.ip_families

    if memory is not None:
        claimed = {service.key for service in pending}
        memory.put_many(
            {
                key: ips
                for key, ips in cluster_ips.items()
                if ips and ips != ("None",) and key not in claimed | _contested(problems)
            }
        )
    return Result(cluster_ips, families, tuple(problems), failures, pool)


def _claim(
    pool: dualstack.Pool,
    service: objects.Service,
    preferred: list[str],
    memory: store.Store | None,
    live: set[Key],
    held: dict[Key, list[str]],
) -> dualstack.Assignment:
    """Allocate in the pool, then have the store grant it; a lost address is another's.

    The store is read again inside the write transaction: what it records for this
    Service now (another process's grant) wins over this process's older snapshot. An
    address lost to a present Service is kept allocated here, filed under its holder in
    ``held`` so that the holder finds it when its own turn comes.
    """
    request = dualstack.Request.from_service(service)
    if memory is None:
        return dualstack.allocate_preferring(pool, request, preferred)
    settled = _already_granted(pool, request, memory)
    if settled is not None:
        return settled
    with memory.transaction():
        current = list(memory.get(service.key))
        if current and all(_free(pool, ip) for ip in current):
            preferred = current
        # Every lost round blocks at least one address some present Service holds.
        for _ in range(2 * len(live) + 1):
            got = dualstack.allocate_preferring(pool, request, preferred)
            lost = memory.claim(service.key, got.cluster_ips, live) if got.cluster_ips else {}
            if not lost:
                return got
            pool.release(got.cluster_ips)
            for ip, holder in lost.items():
                owner = pool.owner_of(ip)
                if owner is not None:
                    owner.allocate(ip)
                    held.setdefault(holder, []).append(ip)
            preferred = [ip for ip in preferred if ip not in lost]
    raise errors.InternalError("failed to allocate a serviceIP: the store refused every claim")


def _already_granted(
    pool: dualstack.Pool, request: dualstack.Request, memory: store.Store
) -> dualstack.Assignment | None:
    """A reload's common case without a write lock: the store already grants the pick.

    Safe as a plain read because a claim never takes an address from a present Service.
    """
    current = memory.get(request.key)
    if not current or not all(_free(pool, ip) for ip in current):
        return None
    got = dualstack.allocate_preferring(pool, request, current)
    if got.cluster_ips == current:
        return got
    pool.release(got.cluster_ips)
    return None


def _free(pool: dualstack.Pool, address: str) -> bool:
    owner = pool.owner_of(address)
    return owner is not None and owner.is_free(address)


def _contested(problems: Iterable[repair.Problem]) -> set[Key]:
    """Services whose written addresses could not be claimed: not worth remembering."""
    return {(p.namespace, p.name) for p in problems}
