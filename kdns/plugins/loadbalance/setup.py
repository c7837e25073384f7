"""The ``loadbalance`` directive: round_robin (weighted and prefer are warned about)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile import goparse
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.errors import CorefileError
from kdns.corefile.setup import SetupContext, where

PREFER_WHY = "every address of an answer rotates; no subnet is moved first"


WEIGHTED_WHY = "answers rotate round_robin; the weight file is not read"


@dataclass(frozen=True, slots=True)
class LoadbalanceConfig:
    NAME: ClassVar[str] = "loadbalance"

    policy: str = "round_robin"  # or "weighted"
    weight_file: str = ""
    reload: float = 30.0
    prefer: tuple[str, ...] = ()


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
