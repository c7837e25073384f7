"""Directives with (almost) no options: ``loop``, ``whoami``, ``loadbalance``, ``manifests``.

Also the pass-through for kdns directives whose parser lives in another module
(``envinject``, ``clusterip``): their tokens are kept as written, per stanza.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile import goparse, keys
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.errors import CorefileError
from kdns.corefile.setup import ParseFunc, SetupContext, no_args, once, stanzas, where

PREFER_WHY = "every address of an answer rotates; no subnet is moved first"
WEIGHTED_WHY = "answers rotate round_robin; the weight file is not read"


@dataclass(frozen=True, slots=True)
class LoopConfig:
    """The probe goes to ``zone``: the first zone of the block."""

    NAME: ClassVar[str] = "loop"

    zone: str = "."


@dataclass(frozen=True, slots=True)
class WhoamiConfig:
    NAME: ClassVar[str] = "whoami"


@dataclass(frozen=True, slots=True)
class LoadbalanceConfig:
    NAME: ClassVar[str] = "loadbalance"

    policy: str = "round_robin"  # or "weighted"
    weight_file: str = ""
    reload: float = 30.0
    prefer: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ManifestsConfig:
    """kdns: serve the Kubernetes YAML in ``dir`` (relative to the Corefile's folder)."""

    NAME: ClassVar[str] = "manifests"

    dir: str


@dataclass(frozen=True, slots=True)
class RawDirective:
    """Tokens of a directive parsed elsewhere: one (args, block lines) pair per stanza."""

    name: str
    stanzas: tuple[tuple[tuple[str, ...], tuple[tuple[str, ...], ...]], ...]


def parse_loop(d: Dispenser, ctx: SetupContext) -> list[LoopConfig]:
    zone = "."
    for _ in once(d):
        no_args(d)
        if ctx.keys:
            zones = keys.normalize_exact(ctx.keys[0])
            zone = zones[0] if zones else "."
    return [LoopConfig(zone)]


def parse_whoami(d: Dispenser, ctx: SetupContext) -> list[WhoamiConfig]:
    for _ in stanzas(d):
        no_args(d)
    return [WhoamiConfig()]


def parse_loadbalance(d: Dispenser, ctx: SetupContext) -> list[LoadbalanceConfig]:
    """Only the first ``loadbalance`` line counts, as in CoreDNS."""
    if not d.next():
        raise d.arg_err()
    args = d.remaining_args()
    if not args or args[0] == "round_robin":
        if len(args) > 1:
            raise d.err(f"unknown property for {args[0]}")
        prefer: list[str] = []
        while d.next_block():
            if d.val() != "prefer":
                raise d.err(f"unknown property '{d.val()}'")
            at = where(d)
            cidrs = d.remaining_args()
            if not cidrs:
                raise d.arg_err()
            prefer.extend(cidrs)
            ctx.not_acted_on("loadbalance", at, "prefer", PREFER_WHY)
        return [LoadbalanceConfig(prefer=tuple(prefer))]
    if args[0] != "weighted":
        raise CorefileError(f"unknown policy: {args[0]}")
    at = where(d)
    if len(args) < 2:
        raise d.err("missing weight file argument")
    if len(args) > 2:
        raise d.err("unexpected argument(s)")
    reload = 30.0
    while d.next_block():
        if d.val() != "reload":
            raise d.err(f"unknown property '{d.val()}'")
        values = d.remaining_args()
        if not values:
            raise d.err("reload duration value is missing")
        if len(values) > 1:
            raise d.err("unexpected argument")
        try:
            reload = goparse.parse_duration(values[0])
        except CorefileError:
            raise d.err(f"invalid reload duration '{values[0]}'") from None
    ctx.not_acted_on("loadbalance", at, "weighted", WEIGHTED_WHY)
    return [LoadbalanceConfig("weighted", args[1], reload)]


def parse_manifests(d: Dispenser, ctx: SetupContext) -> list[ManifestsConfig]:
    config: ManifestsConfig | None = None
    for _ in once(d):
        args = d.remaining_args()
        if len(args) != 1:
            raise d.arg_err()
        path = args[0]
        if not os.path.isabs(path):
            path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(d.file())), path))
        config = ManifestsConfig(path)
    assert config is not None
    return [config]


def raw(name: str) -> ParseFunc:
    """A parser that keeps ``name``'s tokens for a parser registered later."""

    def parse_raw(d: Dispenser, ctx: SetupContext) -> list[RawDirective]:
        return [RawDirective(name, tuple(_stanza_lines(d)))]

    return parse_raw


def _stanza_lines(
    d: Dispenser,
) -> list[tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]]:
    out = []
    for _ in stanzas(d):
        args = tuple(d.remaining_args())
        lines: list[tuple[str, ...]] = []
        while d.next_block():
            lines.append((d.val(), *d.remaining_args()))
        out.append((args, tuple(lines)))
    return out
