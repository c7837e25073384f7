"""Local mode: clusterIPs for the Services of a manifests folder, sticky across restarts.

Without an API server kdns is the authority for the addresses, but it never writes
to the folder: the assignment is recomputed from scratch on every load, from the
Services themselves, and kept stable by the :mod:`store`. The order of the passes is
what makes that stable:

1. addresses written in manifests are claimed first (the repair loop's rules);
2. every Service that has a preferred address (its remembered one, an address
   ``reserve``\\ d for it, network+1 for ``default/kubernetes``) holds it, so
3. the dynamic picks that follow, in namespace/name order, cannot take it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from kdns import objects
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

    for service in pending:
        mine = held.pop(service.key, [])
        pool.release(mine)
        try:
            got = dualstack.allocate_preferring(pool, dualstack.Request.from_service(service), mine)
        except (errors.Invalid, errors.InternalError) as exc:
            failures[service.key] = str(exc)
            cluster_ips[service.key] = ()
            families[service.key] = ()
            continue
        cluster_ips[service.key] = got.cluster_ips
        families[service.key] = got.ip_families

    if memory is not None:
        memory.put_many(
            {
                key: ips
                for key, ips in cluster_ips.items()
                if ips and ips != ("None",) and key not in _contested(problems)
            }
        )
    return Result(cluster_ips, families, tuple(problems), failures, pool)


def _contested(problems: Iterable[repair.Problem]) -> set[Key]:
    """Services whose written addresses could not be claimed: not worth remembering."""
    return {(p.namespace, p.name) for p in problems}
