"""The ``prometheus`` directive: the metrics endpoint's address (CoreDNS's syntax)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile.dispenser import Dispenser
from kdns.corefile.setup import SetupContext, listen_address, once

PROMETHEUS_ADDR = "localhost:9153"


@dataclass(frozen=True, slots=True)
class PrometheusConfig:
    NAME: ClassVar[str] = "prometheus"

    addr: str = PROMETHEUS_ADDR
    runtime_metrics: bool = False
    """CoreDNS 1.12+: the Go runtime's metrics; in kdns Python's (kdns.plugins.prometheus.build)."""


def parse_prometheus(d: Dispenser, ctx: SetupContext) -> list[PrometheusConfig]:
    config = PrometheusConfig()
    for _ in once(d):
        addr = listen_address(d, PROMETHEUS_ADDR)
        runtime = False
        while d.next_block():
            if d.val() == "runtime_metrics":
                if d.remaining_args():
                    raise d.arg_err()
                runtime = True
            else:
                raise d.err(f"unknown property '{d.val()}'")
        config = PrometheusConfig(addr, runtime)
    return [config]
