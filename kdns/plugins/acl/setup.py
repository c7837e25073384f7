"""``acl [ZONES...] { ACTION [type QTYPE...] [net SOURCE...] }`` plus kdns's ``isolate``.

As in CoreDNS each stanza is one rule with its zones (the block's when none are given),
its policies tried in order, the first match deciding. kdns adds one line kind:

    isolate [NAMESPACE...] [namespace_labels SELECTOR]

a client that is a known pod sees only the Services and pods of its own namespace,
of the listed ones and of the namespaces whose labels match SELECTOR (``k=v,k2!=v,k3``);
every other cluster name answers as if it did not exist.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import ClassVar

import dnslib

from kdns.corefile import keys
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.setup import SetupContext, stanzas

ACTIONS = ("allow", "block", "filter", "drop")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a DNS-1123 label
ALL_TYPES = -1  # ``type *`` or no ``type`` section
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ALL_NETS: tuple[Network, ...] = (
    ipaddress.ip_network("0.0.0.0/0"),
    ipaddress.ip_network("::/0"),
)


@dataclass(frozen=True, slots=True)
class Policy:
    action: str
    qtypes: frozenset[int]  # {ALL_TYPES} matches every type
    nets: tuple[Network, ...]


@dataclass(frozen=True, slots=True)
class Selector:
    """An equality-based label selector: ``k=v`` / ``k==v``, ``k!=v``, ``k``, ``!k``."""

    equal: tuple[tuple[str, str], ...] = ()
    unequal: tuple[tuple[str, str], ...] = ()
    exists: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()

    def matches(self, labels: tuple[tuple[str, str], ...]) -> bool:
        have = dict(labels)
        return (
            all(have.get(k) == v for k, v in self.equal)
            and all(have.get(k) != v for k, v in self.unequal)
            and all(k in have for k in self.exists)
            and all(k not in have for k in self.absent)
        )


@dataclass(frozen=True, slots=True)
class Isolation:
    """kdns's namespace visibility for clients known as pods."""

    namespaces: frozenset[str] = frozenset()
    selector: Selector | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    zones: tuple[str, ...]
    policies: tuple[Policy, ...]
    isolation: Isolation | None = None


@dataclass(frozen=True, slots=True)
class AclConfig:
    NAME: ClassVar[str] = "acl"

    rules: tuple[Rule, ...]


def parse(d: Dispenser, ctx: SetupContext) -> list[AclConfig]:
    rules: list[Rule] = []
    for _ in stanzas(d):
        args = d.remaining_args()
        zones = tuple(keys.origins(args, ctx.keys)) if args else _block_zones(ctx)
        policies: list[Policy] = []
        isolation: Isolation | None = None
        while d.next_block():
            action = d.val().lower()
            if action == "isolate":
                if isolation is not None:
                    raise d.err("isolate can only be given once per acl stanza")
                isolation = _isolation(d)
                continue
            if action not in ACTIONS:
                raise d.err(
                    f"unexpected token '{d.val()}'; expect 'allow', 'block', 'filter', "
                    "'drop' or 'isolate'"
                )
            policies.append(_policy(d, action))
        rules.append(Rule(zones, tuple(policies), isolation))
    return [AclConfig(tuple(rules))]


def _block_zones(ctx: SetupContext) -> tuple[str, ...]:
    found: list[str] = []
    for key in ctx.keys:
        found.extend(keys.normalize_exact(key))
    return tuple(found) or (".",)


def _policy(d: Dispenser, action: str) -> Policy:
    qtypes: set[int] = set()
    nets: list[Network] = []
    sections: set[str] = set()
    args = d.remaining_args()
    i = 0
    while i < len(args):
        section = args[i].lower()
        if section not in ("type", "net"):
            raise d.err(f"unexpected token '{args[i]}'; expect 'type | net'")
        j = i + 1
        while j < len(args) and args[j].lower() not in ("type", "net"):
            j += 1
        tokens = args[i + 1 : j]
        if not tokens:
            raise d.err(f"no token specified in '{section}' section")
        sections.add(section)
        for token in tokens:
            if section == "type":
                qtypes.add(_qtype(d, token))
            else:
                nets.extend(_net(d, token))
        i = j
    if "type" not in sections:
        qtypes.add(ALL_TYPES)
    if "net" not in sections:
        nets.extend(ALL_NETS)
    return Policy(action, frozenset(qtypes), tuple(nets))


def _qtype(d: Dispenser, token: str) -> int:
    if token == "*":
        return ALL_TYPES
    if token in dnslib.QTYPE.reverse:  # case-sensitive, as miekg/dns's StringToType
        return int(dnslib.QTYPE.reverse[token])
    raise d.err(f"unexpected token '{token}'; expect legal QTYPE")


def _net(d: Dispenser, token: str) -> tuple[Network, ...]:
    if token == "*":
        return ALL_NETS
    text = token if "/" in token else token + ("/128" if ":" in token else "/32")
    try:
        return (ipaddress.ip_network(text, strict=False),)
    except ValueError:
        raise d.err(f"illegal CIDR notation '{text}'") from None


def _isolation(d: Dispenser) -> Isolation:
    args = d.remaining_args()
    namespaces: list[str] = []
    selector: Selector | None = None
    i = 0
    while i < len(args):
        if args[i] == "namespace_labels":
            if i + 1 >= len(args) or selector is not None:
                raise d.err("namespace_labels takes one SELECTOR, once")
            selector = _selector(d, args[i + 1])
            i += 2
            continue
        if not _NAMESPACE.fullmatch(args[i]):
            raise d.err(f"invalid namespace name '{args[i]}'")
        namespaces.append(args[i].lower())
        i += 1
    return Isolation(frozenset(namespaces), selector)


def _selector(d: Dispenser, text: str) -> Selector:
    equal: list[tuple[str, str]] = []
    unequal: list[tuple[str, str]] = []
    exists: list[str] = []
    absent: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise d.err(f"invalid label selector '{text}'")
        if "!=" in part:
            k, v = part.split("!=", 1)
            unequal.append((k.strip(), v.strip()))
        elif "==" in part or "=" in part:
            k, v = part.split("==", 1) if "==" in part else part.split("=", 1)
            equal.append((k.strip(), v.strip()))
        elif part.startswith("!"):
            absent.append(part[1:].strip())
        elif " in " in part or " notin " in part or "(" in part:
            raise d.err(f"set-based label selector '{part}' is not supported by kdns")
        else:
            exists.append(part)
    if any(not k for k, _ in (*equal, *unequal)) or any(not k for k in (*exists, *absent)):
        raise d.err(f"invalid label selector '{text}'")
    return Selector(tuple(equal), tuple(unequal), tuple(exists), tuple(absent))
