"""Rebuild allocator state from existing Services, as kube-apiserver's repair loop does.

State is never trusted from anywhere but the Services themselves: after a restart or
a relist, every address a Service holds is claimed again. Addresses that cannot be
claimed are skipped and reported, never "fixed" by rewriting the Service; the
operator recreates it, exactly as the API server's events ask.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kdns.cluster import objects
from kdns.ipam import dualstack, errors, iprange

INVALID = "ClusterIPNotValid"
OUT_OF_RANGE = "ClusterIPOutOfRange"
DUPLICATE = "ClusterIPAlreadyAllocated"


@dataclass(frozen=True, slots=True)
class Problem:
    """One address that could not be claimed; ``reason`` is the API server's event reason."""

    namespace: str
    name: str
    ip: str
    reason: str
    message: str


def holds_addresses(service: objects.Service) -> bool:
    return not service.is_external_name and not service.headless and bool(service.cluster_ips)


def rebuild(pool: dualstack.Pool, services: Iterable[objects.Service]) -> list[Problem]:
    """Claim every address the Services hold, in namespace/name order (etcd's list order).

    The first Service in that order keeps a contested address; later ones are reported.
    """
    problems: list[Problem] = []
    for service in sorted(services, key=lambda s: s.key):
        if not holds_addresses(service):
            continue
        who = f"{service.namespace}/{service.name}"
        for address in service.cluster_ips:
            try:
                family = iprange.family_of(address)
            except ValueError:
                problems.append(
                    Problem(
                        service.namespace,
                        service.name,
                        address,
                        INVALID,
                        f"the cluster IP {address} for service {who} is not a valid IP; "
                        "please recreate",
                    )
                )
                continue
            owner = pool.by_family.get(family)
            if owner is None:
                problems.append(
                    Problem(
                        service.namespace,
                        service.name,
                        address,
                        OUT_OF_RANGE,
                        f"the cluster IP [{family}]:{address} for service {who} is not within "
                        f"any configured service CIDR; please recreate",
                    )
                )
                continue
            try:
                owner.allocate(address)
            except errors.AlreadyAllocated:
                problems.append(
                    Problem(
                        service.namespace,
                        service.name,
                        address,
                        DUPLICATE,
                        f"the cluster IP [{family}]:{address} for service {who} was assigned "
                        "to multiple services; please recreate",
                    )
                )
            except errors.NotInRange:
                problems.append(
                    Problem(
                        service.namespace,
                        service.name,
                        address,
                        OUT_OF_RANGE,
                        f"the cluster IP [{family}]:{address} for service {who} is not within "
                        f"the service CIDR {owner.range}; please recreate",
                    )
                )
    return problems
