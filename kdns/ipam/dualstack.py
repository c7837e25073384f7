"""ClusterIPs for a whole Service: ipFamilyPolicy, ipFamilies and requested clusterIPs.

This mirrors kube-apiserver's create path (``initIPFamilyFields`` then
``allocClusterIPs`` in ``pkg/registry/core/service/storage/alloc.go``, with the
checks of ``ValidateServiceClusterIPsRelatedFields``): the same defaults, the same
refusals with the same texts, and the same all-or-nothing outcome, so a Service that
kdns accepts is one the API server would accept with the same addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kdns.cluster import objects
from kdns.ipam import allocator, errors, iprange

SINGLE_STACK = "SingleStack"
PREFER_DUAL_STACK = "PreferDualStack"
REQUIRE_DUAL_STACK = "RequireDualStack"
POLICIES = (PREFER_DUAL_STACK, REQUIRE_DUAL_STACK, SINGLE_STACK)
FAMILIES = (iprange.IPv4, iprange.IPv6)
NONE = "None"

KUBERNETES_SERVICE = ("default", "kubernetes")


@dataclass(frozen=True, slots=True)
class Request:
    """What a Service CREATE asks for; the fields the allocation rules read."""

    namespace: str
    name: str
    type: str = "ClusterIP"
    cluster_ips: tuple[str, ...] = ()
    ip_families: tuple[str, ...] = ()
    ip_family_policy: str = ""  # "" when unset
    has_selector: bool = True
    cluster_ip: str | None = None  # spec.clusterIP when known apart from clusterIPs

    @classmethod
    def from_service(cls, service: objects.Service) -> Request:
        return cls(
            namespace=service.namespace,
            name=service.name,
            type=service.type,
            cluster_ips=service.cluster_ips,
            ip_families=service.ip_families,
            ip_family_policy=service.ip_family_policy,
            has_selector=bool(service.selector),
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def headless(self) -> bool:
        return bool(self.cluster_ips) and self.cluster_ips[0] == NONE


@dataclass(frozen=True, slots=True)
class Assignment:
    """The spec fields to set: clusterIPs (clusterIP is the first), families, policy."""

    cluster_ips: tuple[str, ...]
    ip_families: tuple[str, ...]
    ip_family_policy: str

    @property
    def cluster_ip(self) -> str:
        return self.cluster_ips[0] if self.cluster_ips else ""


class Pool:
    """The allocators of a cluster, at most one per family; the first is the default family.

    Like ``--service-cluster-ip-range``: one CIDR, or two of different families.
    """

    __slots__ = ("allocators", "by_family", "default_family")

    def __init__(self, allocators: Sequence[allocator.Allocator]) -> None:
        if not 1 <= len(allocators) <= 2:
            raise ValueError("service CIDRs: must hold one or two entries")
        if len(allocators) == 2 and allocators[0].family == allocators[1].family:
            raise ValueError("service CIDRs: the two entries must be of different IP families")
        self.allocators = tuple(allocators)
        self.by_family = {a.family: a for a in allocators}
        self.default_family = allocators[0].family

    @property
    def dual_stack(self) -> bool:
        return len(self.allocators) == 2

    def owner_of(self, address: str) -> allocator.Allocator | None:
        """The allocator of the address's family, if that family is configured."""
        try:
            return self.by_family.get(iprange.family_of(address))
        except ValueError:
            return None

    def release(self, addresses: Iterable[str]) -> None:
        for address in addresses:
            if address and address != NONE:
                found = self.owner_of(address)
                if found is not None:
                    found.release(address)


def _other(family: str) -> str:
    return iprange.IPv6 if family == iprange.IPv4 else iprange.IPv4


def _ip_error(address: str) -> str | None:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
    return None


def _validate(request: Request, policy: str) -> list[errors.FieldError]:
    """The subset of ValidateServiceClusterIPsRelatedFields a create can trip over."""
    found: list[errors.FieldError] = []
    ips = request.cluster_ips
    if request.cluster_ip is not None:
        if request.cluster_ip:
            if not ips:
                found.append(errors.FieldError("spec.clusterIPs", "Required value"))
            elif ips[0] != request.cluster_ip:
                found.append(
                    errors.FieldError(
                        "spec.clusterIPs",
                        "Invalid value",
                        list(ips),
                        "first value must match `clusterIP`",
                    )
                )
        elif ips:
            found.append(
                errors.FieldError(
                    "spec.clusterIPs",
                    "Invalid value",
                    list(ips),
                    "must be empty when `clusterIP` is not specified",
                )
            )
    seen: set[str] = set()
    for i, family in enumerate(request.ip_families):
        if family not in FAMILIES:
            found.append(
                errors.FieldError(
                    f"spec.ipFamilies[{i}]",
                    "Unsupported value",
                    family,
                    'supported values: "IPv4", "IPv6"',
                )
            )
        if family in seen:
            found.append(errors.FieldError(f"spec.ipFamilies[{i}]", "Duplicate value", family))
        seen.add(family)
    if policy not in POLICIES:
        found.append(
            errors.FieldError(
                "spec.ipFamilyPolicy",
                "Unsupported value",
                policy,
                'supported values: "PreferDualStack", "RequireDualStack", "SingleStack"',
            )
        )
    bad_ip = False
    for i, address in enumerate(ips):
        if i == 0 and address == NONE:
            if len(ips) > 1:
                bad_ip = True
                found.append(
                    errors.FieldError(
                        "spec.clusterIPs",
                        "Invalid value",
                        list(ips),
                        "'None' must be the first and only value",
                    )
                )
            continue
        message = _ip_error(address)
        if message:
            bad_ip = True
            found.append(
                errors.FieldError(f"spec.clusterIPs[{i}]", "Invalid value", address, message)
            )
    if len(ips) > 2:
        found.append(
            errors.FieldError(
                "spec.clusterIPs", "Invalid value", list(ips), "may only hold up to 2 values"
            )
        )
    if bad_ip:
        return found
    if len(ips) > 1 and len({iprange.family_of(a) for a in ips}) != len(ips):
        found.append(
            errors.FieldError(
                "spec.clusterIPs",
                "Invalid value",
                list(ips),
                "may specify no more than one IP for each IP family",
            )
        )
    if not request.headless:
        for i, (address, family) in enumerate(zip(ips, request.ip_families, strict=False)):
            if family in FAMILIES and iprange.family_of(address) != family:
                found.append(
                    errors.FieldError(
                        f"spec.clusterIPs[{i}]",
                        "Invalid value",
                        address,
                        f"expected an {family} value as indicated by `ipFamilies[{i}]`",
                    )
                )
    return found


def resolve(pool: Pool, request: Request) -> Assignment:
    """Default and check policy and families, allocating nothing (``initIPFamilyFields``).

    The returned ``cluster_ips`` are the request's, unchanged.
    """
    if request.type == "ExternalName":
        return Assignment((), (), "")
    policy = request.ip_family_policy
    if not policy:
        headless_selectorless = request.headless and not request.has_selector
        policy = REQUIRE_DUAL_STACK if headless_selectorless else SINGLE_STACK
    problems = _validate(request, policy)
    if problems:
        raise errors.InvalidService(request.name, problems)

    if policy == SINGLE_STACK:
        if len(request.cluster_ips) == 2:
            problems.append(
                errors.FieldError(
                    "spec.ipFamilyPolicy",
                    "Invalid value",
                    policy,
                    "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs "
                    "are specified",
                )
            )
        if len(request.ip_families) == 2:
            problems.append(
                errors.FieldError(
                    "spec.ipFamilyPolicy",
                    "Invalid value",
                    policy,
                    "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families "
                    "are specified",
                )
            )
    families = list(request.ip_families)
    for i, address in enumerate(request.cluster_ips):
        if address == NONE:
            break
        family = iprange.family_of(address)
        if i >= len(families):
            if family not in pool.by_family:
                problems.append(
                    errors.FieldError(
                        f"spec.clusterIPs[{i}]",
                        "Invalid value",
                        list(request.cluster_ips),
                        f"{family} is not configured on this cluster",
                    )
                )
            else:
                families.append(family)
    if problems:
        raise errors.InvalidService(request.name, problems)

    if request.headless and not request.has_selector:
        if not families:
            families = [pool.default_family]
        if len(families) < 2 and policy != SINGLE_STACK:
            families.append(_other(families[0]))
        return Assignment(request.cluster_ips, tuple(families), policy)

    if policy == REQUIRE_DUAL_STACK and not pool.dual_stack:
        problems.append(
            errors.FieldError(
                "spec.ipFamilyPolicy",
                "Invalid value",
                policy,
                "this cluster is not configured for dual-stack services",
            )
        )
    for i, family in enumerate(families):
        if family not in pool.by_family:
            problems.append(
                errors.FieldError(
                    f"spec.ipFamilies[{i}]",
                    "Invalid value",
                    family,
                    "not configured on this cluster",
                )
            )
    if problems:
        raise errors.InvalidService(request.name, problems)
    if not families:
        families = [pool.default_family]
    if policy != SINGLE_STACK and len(families) == 1 and pool.dual_stack:
        families.append(_other(families[0]))
    return Assignment(request.cluster_ips, tuple(families), policy)


def allocate(pool: Pool, request: Request) -> Assignment:
    """Allocate the Service's clusterIPs, or raise and leave nothing allocated.

    Requested addresses are claimed as given; missing ones are dynamic picks, except
    that ``default/kubernetes`` first tries network+1 of the range, as the API server's
    own bootstrap does.
    """
    resolved = resolve(pool, request)
    if request.type == "ExternalName" or request.headless:
        return resolved
    wanted = list(request.cluster_ips)
    while len(wanted) < len(resolved.ip_families):
        wanted.append("")  # a marker, as alloc.go pads clusterIPs
    taken: list[tuple[allocator.Allocator, str]] = []
    result: list[str] = []
    try:
        for family, address in zip(resolved.ip_families, wanted, strict=False):
            chosen = pool.by_family[family]
            if address:
                try:
                    got = chosen.allocate(address)
                except errors.AllocationError as exc:
                    raise errors.InvalidService(
                        request.name,
                        [
                            errors.FieldError(
                                "spec.clusterIPs",
                                "Invalid value",
                                wanted,
                                f"failed to allocate IP {address}: {exc}",
                            )
                        ],
                    ) from None
            else:
                got = _pick(chosen, request.key)
            taken.append((chosen, got))
            result.append(got)
    except BaseException:
        for owner, address in taken:
            owner.release(address)
        raise
    return Assignment(tuple(result), resolved.ip_families, resolved.ip_family_policy)


def _pick(chosen: allocator.Allocator, key: tuple[str, str]) -> str:
    if key == KUBERNETES_SERVICE:
        first = chosen.range.to_text(chosen.range.first)
        if chosen.is_free(first):
            return chosen.allocate(first)
    try:
        return chosen.allocate_next()
    except errors.AllocationError as exc:
        raise errors.InternalError(f"failed to allocate a serviceIP: {exc}") from None


def allocate_preferring(pool: Pool, request: Request, preferred: Sequence[str]) -> Assignment:
    """Allocate, first trying ``preferred`` addresses for a Service that asks for none.

    This is how stickiness works (the previous addresses of the same namespace/name):
    the preferred addresses that match the resolved families, in family order, are
    requested as if the Service had named them; if that fails (taken, out of range,
    another family), the Service is allocated as if nothing were preferred.
    """
    if request.cluster_ips or not preferred or request.type == "ExternalName":
        return allocate(pool, request)
    resolved = resolve(pool, request)
    by_family: dict[str, str] = {}
    for address in preferred:
        try:
            by_family.setdefault(iprange.family_of(address), address)
        except ValueError:
            continue
    claim: list[str] = []
    for family in resolved.ip_families:
        if family not in by_family:
            break
        claim.append(by_family[family])
    if claim:
        sticky = Request(
            namespace=request.namespace,
            name=request.name,
            type=request.type,
            cluster_ips=tuple(claim),
            ip_families=resolved.ip_families,
            ip_family_policy=resolved.ip_family_policy,
            has_selector=request.has_selector,
        )
        try:
            return allocate(pool, sticky)
        except (errors.InvalidService, errors.InternalError):
            pass
    return allocate(pool, request)
