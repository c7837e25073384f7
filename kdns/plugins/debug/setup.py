"""``debug``: CoreDNS's switch for debug output, no arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile.dispenser import Dispenser
from kdns.corefile.setup import SetupContext, no_args, stanzas


@dataclass(frozen=True, slots=True)
class DebugConfig:
    NAME: ClassVar[str] = "debug"


def parse(d: Dispenser, ctx: SetupContext) -> list[DebugConfig]:
    for _ in stanzas(d):
        no_args(d)
    return [DebugConfig()]
