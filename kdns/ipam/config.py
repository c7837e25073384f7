"""The ``clusterip`` Corefile directive: service CIDRs, reserved addresses, store, webhook.

See ``Corefile.compat/clusterip.md``. Tokens arrive already lexed by the Corefile
parser; this module only gives them meaning and refuses what the README does not
describe, with a message that names the offending token.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from kdns.ipam import allocator, dualstack, iprange

DEFAULT_CIDR = "10.96.0.0/12"  # kubeadm's --service-cidr default
DEFAULT_WEBHOOK_PATH = "/allocate"
# The allocator's election and claim Leases: a namespace of kdns's own, not kube-system,
# where the controller-manager's and scheduler's election Leases live and where every
# component with a Role on Leases could take them over (deploy/components/clusterip).
DEFAULT_LEASE_NAMESPACE = "kdns-system"
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class Reservation:
    """An address dynamic picks never take; ``owner`` (namespace, name) gets it unasked."""

    ip: str
    owner: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ClusterIPConfig:
    cidrs: tuple[str, ...] = (DEFAULT_CIDR,)
    reservations: tuple[Reservation, ...] = ()
    store: str = ""  # "" keeps allocations in memory only
    webhook: str = DEFAULT_WEBHOOK_PATH
    lease_namespace: str = DEFAULT_LEASE_NAMESPACE

    def ranges(self) -> tuple[iprange.Range, ...]:
        return tuple(iprange.Range.parse(cidr) for cidr in self.cidrs)

    def pool(self, random_source: random.Random | None = None) -> dualstack.Pool:
        """A fresh, empty pool for these ranges (one shared random source)."""
        source = random_source if random_source is not None else random.Random()
        built = []
        for rng in self.ranges():
            reserved = [r.ip for r in self.reservations if iprange.family_of(r.ip) == rng.family]
            built.append(allocator.Allocator(rng, reserved=reserved, random_source=source))
        return dualstack.Pool(built)

    def owned(self, key: tuple[str, str]) -> tuple[str, ...]:
        """The reserved addresses set aside for one Service."""
        return tuple(r.ip for r in self.reservations if r.owner == key)


def _owner(token: str) -> tuple[str, str]:
    namespace, _, name = token.partition("/")
    if not namespace or not name or "/" in name:
        raise ValueError(
            f"clusterip: reserve: {token!r} is neither an IP address nor NAMESPACE/NAME"
        )
    return (namespace, name)


def _namespace(token: str) -> str:
    """A namespace name as the API server accepts it, refused here rather than by a 404."""
    if not _DNS1123_LABEL.fullmatch(token):
        raise ValueError(f"clusterip: leases: {token!r} is not a valid namespace name")
    return token


def _reserve(args: Sequence[str], ranges: Sequence[iprange.Range]) -> list[Reservation]:
    if not args:
        raise ValueError("clusterip: reserve needs at least one address")
    addresses: list[str] = []
    owner: tuple[str, str] | None = None
    for i, token in enumerate(args):
        try:
            parsed = ipaddress.ip_address(token)
        except ValueError:
            if i != len(args) - 1 or not addresses:
                raise ValueError(
                    f"clusterip: reserve: {token!r} is not an IP address"
                    + (" (NAMESPACE/NAME comes last)" if "/" in token else "")
                ) from None
            owner = _owner(token)
            continue
        text = str(parsed)
        home = [r for r in ranges if r.family == iprange.family_of(text)]
        if not home or not home[0].contains(int(parsed)):
            raise ValueError(
                f"clusterip: reserve: {text} is not a usable address of "
                + (" or ".join(r.cidr for r in ranges))
            )
        addresses.append(text)
    if owner is not None:
        families = [iprange.family_of(a) for a in addresses]
        if len(set(families)) != len(families):
            raise ValueError("clusterip: reserve: an owner gets at most one address per IP family")
    return [Reservation(a, owner) for a in addresses]


def parse_clusterip(args: list[str], block: list[list[str]]) -> ClusterIPConfig:
    """Read ``clusterip [CIDR [CIDR]] { reserve ...; store PATH; webhook PATH; leases NS }``.

    ``args`` are the tokens after the directive name on its line; ``block`` is one list
    of tokens per line inside the braces (empty when there is no block).
    """
    if len(args) > 2:
        raise ValueError(
            f"clusterip: at most two service CIDRs (one per IP family), got {len(args)}"
        )
    cidrs = tuple(args) if args else (DEFAULT_CIDR,)
    try:
        ranges = tuple(iprange.Range.parse(cidr) for cidr in cidrs)
    except ValueError as exc:
        raise ValueError(f"clusterip: {exc}") from None
    if len(ranges) == 2 and ranges[0].family == ranges[1].family:
        raise ValueError(f"clusterip: {cidrs[0]} and {cidrs[1]} must be of different IP families")
    reservations: list[Reservation] = []
    store = ""
    webhook = DEFAULT_WEBHOOK_PATH
    leases = DEFAULT_LEASE_NAMESPACE
    seen: set[str] = set()
    for line in block:
        if not line:
            continue
        option, rest = line[0], line[1:]
        if option == "reserve":
            reservations.extend(_reserve(rest, ranges))
            continue
        if option not in ("store", "webhook", "leases"):
            raise ValueError(f"clusterip: unknown property {option!r}")
        if option in seen:
            raise ValueError(f"clusterip: {option} given twice")
        seen.add(option)
        if len(rest) != 1:
            raise ValueError(f"clusterip: {option} takes exactly one argument, got {len(rest)}")
        if option == "store":
            store = rest[0]
        elif option == "leases":
            leases = _namespace(rest[0])
        else:
            if not rest[0].startswith("/"):
                raise ValueError(f"clusterip: webhook path {rest[0]!r} must start with '/'")
            webhook = rest[0]
    taken: dict[str, Reservation] = {}
    owners: dict[tuple[str, str], set[str]] = {}
    for reservation in reservations:
        if reservation.ip in taken:
            raise ValueError(f"clusterip: reserve: {reservation.ip} reserved twice")
        taken[reservation.ip] = reservation
        if reservation.owner is not None:
            families = owners.setdefault(reservation.owner, set())
            family = iprange.family_of(reservation.ip)
            if family in families:
                namespace, name = reservation.owner
                raise ValueError(
                    f"clusterip: reserve: {namespace}/{name} owns two {family} addresses"
                )
            families.add(family)
    return ClusterIPConfig(
        cidrs=tuple(r.cidr for r in ranges),
        reservations=tuple(reservations),
        store=store,
        webhook=webhook,
        lease_namespace=leases,
    )
