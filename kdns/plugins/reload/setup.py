"""``reload [INTERVAL [JITTER]]``: how often the Corefile is re-read.

Process-wide, and CoreDNS reads only the first ``reload`` line of a block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile import goparse
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.errors import CorefileError
from kdns.corefile.setup import SetupContext

DEFAULT_INTERVAL = 30.0
DEFAULT_JITTER = 15.0
MIN_INTERVAL = 2.0
MIN_JITTER = 1.0


@dataclass(frozen=True, slots=True)
class ReloadConfig:
    """``jitter`` is already capped at interval/2; the poller draws +-jitter/2 per tick."""

    NAME: ClassVar[str] = "reload"

    interval: float = DEFAULT_INTERVAL
    jitter: float = DEFAULT_JITTER


def parse(d: Dispenser, ctx: SetupContext) -> list[ReloadConfig]:
    d.next()
    args = d.remaining_args()
    if len(args) > 2:
        raise d.arg_err()
    interval = goparse.parse_duration(args[0]) if args else DEFAULT_INTERVAL
    if interval < MIN_INTERVAL:
        raise CorefileError(
            f"interval value must be greater or equal to {goparse.format_duration(MIN_INTERVAL)}"
        )
    jitter = goparse.parse_duration(args[1]) if len(args) > 1 else DEFAULT_JITTER
    if jitter != 0 and jitter < MIN_JITTER:
        raise CorefileError(
            f"jitter value must be greater or equal to {goparse.format_duration(MIN_JITTER)}"
        )
    return [ReloadConfig(interval, min(jitter, interval / 2))]
