"""The ``whoami`` directive: no options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile.dispenser import Dispenser
from kdns.corefile.setup import SetupContext, no_args, stanzas


@dataclass(frozen=True, slots=True)
class WhoamiConfig:
    NAME: ClassVar[str] = "whoami"


def parse_whoami(d: Dispenser, ctx: SetupContext) -> list[WhoamiConfig]:
    for _ in stanzas(d):
        no_args(d)
    return [WhoamiConfig()]
