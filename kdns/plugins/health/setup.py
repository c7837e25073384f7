"""The ``health`` directive: the liveness endpoint's address and lameduck (CoreDNS's syntax)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile import goparse
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.errors import CorefileError
from kdns.corefile.setup import SetupContext, listen_address, stanzas

HEALTH_ADDR = ":8080"


@dataclass(frozen=True, slots=True)
class HealthConfig:
    NAME: ClassVar[str] = "health"

    addr: str = HEALTH_ADDR
    lameduck: float = 0.0


def parse_health(d: Dispenser, ctx: SetupContext) -> list[HealthConfig]:
    """Not once-per-block: a later ``health`` line overrides an earlier one."""
    addr, lameduck = "", 0.0
    for _ in stanzas(d):
        addr = listen_address(d, "")
        while d.next_block():
            if d.val() != "lameduck":
                raise d.arg_err()
            args = d.remaining_args()
            if len(args) != 1:
                raise d.arg_err()
            try:
                lameduck = goparse.parse_duration(args[0])
            except CorefileError as e:
                raise CorefileError(
                    f"unable to parse lameduck duration value: '{args[0]}' : {e}"
                ) from None
    return [HealthConfig(addr or HEALTH_ADDR, lameduck)]
