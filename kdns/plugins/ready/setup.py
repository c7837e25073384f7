"""The ``ready`` directive: the readiness endpoint's address (CoreDNS's syntax)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile.dispenser import Dispenser
from kdns.corefile.setup import SetupContext, listen_address, once

READY_ADDR = ":8181"


@dataclass(frozen=True, slots=True)
class ReadyConfig:
    NAME: ClassVar[str] = "ready"

    addr: str = READY_ADDR
    monitor: str = "until-ready"  # or "continuously"


def parse_ready(d: Dispenser, ctx: SetupContext) -> list[ReadyConfig]:
    config = ReadyConfig()
    for _ in once(d):
        addr = listen_address(d, READY_ADDR)
        monitor = "until-ready"
        while d.next_block():
            if d.val() != "monitor":
                raise d.err(f"unknown property '{d.val()}'")
            args = d.remaining_args()
            if len(args) != 1 or args[0] not in ("until-ready", "continuously"):
                raise d.arg_err()
            monitor = args[0]
        config = ReadyConfig(addr, monitor)
    return [config]
