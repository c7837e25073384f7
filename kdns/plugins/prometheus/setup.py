"""The ``prometheus`` directive: the metrics endpoint's address (CoreDNS's syntax)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile.dispenser import Dispenser
from kdns.corefile.setup import SetupContext, listen_address, once, where

PROMETHEUS_ADDR = "localhost:9153"


RUNTIME_METRICS_WHY = "the Go runtime metrics it adds are not exported yet"


@dataclass(frozen=True, slots=True)
class PrometheusConfig:
    NAME: ClassVar[str] = "prometheus"

    addr: str = PROMETHEUS_ADDR
    runtime_metrics: bool = False


def parse_prometheus(d: Dispenser, ctx: SetupContext) -> list[PrometheusConfig]:
    config = PrometheusConfig()
    for _ in once(d):
        addr = listen_address(d, PROMETHEUS_ADDR)
        runtime = False
        while d.next_block():
            if d.val() == "runtime_metrics":
                if d.remaining_args():
                    raise d.arg_err()
                ctx.not_acted_on("prometheus", where(d), "runtime_metrics", RUNTIME_METRICS_WHY)
                runtime = True
            else:
                raise d.err(f"unknown property '{d.val()}'")
        config = PrometheusConfig(addr, runtime)
    return [config]
