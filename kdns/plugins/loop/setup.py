"""The ``loop`` directive: no options; the probe itself is in :mod:`kdns.plugins.loop.probe`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile import keys
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.setup import SetupContext, no_args, once


@dataclass(frozen=True, slots=True)
class LoopConfig:
    """The probe goes to ``zone``: the first zone of the block."""

    NAME: ClassVar[str] = "loop"

    zone: str = "."


def parse_loop(d: Dispenser, ctx: SetupContext) -> list[LoopConfig]:
    zone = "."
    for _ in once(d):
        no_args(d)
        if ctx.keys:
            zones = keys.normalize_exact(ctx.keys[0])
            zone = zones[0] if zones else "."
    return [LoopConfig(zone)]
