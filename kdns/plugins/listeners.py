"""``health``, ``ready`` and ``prometheus``: the HTTP endpoints kubelet and Prometheus use.

Process-wide in effect (one listener per distinct address), but configured per block
like CoreDNS. Addresses must be ``host:port`` (Go's net.SplitHostPort), with CoreDNS's
defaults: ``:8080``, ``:8181`` and ``localhost:9153``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile import goparse
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.errors import CorefileError
from kdns.corefile.setup import SetupContext, once, stanzas, where

HEALTH_ADDR = ":8080"
READY_ADDR = ":8181"
PROMETHEUS_ADDR = "localhost:9153"
RUNTIME_METRICS_WHY = "the Go runtime metrics it adds are not exported yet"


@dataclass(frozen=True, slots=True)
class HealthConfig:
    NAME: ClassVar[str] = "health"

    addr: str = HEALTH_ADDR
    lameduck: float = 0.0


@dataclass(frozen=True, slots=True)
class ReadyConfig:
    NAME: ClassVar[str] = "ready"

    addr: str = READY_ADDR
    monitor: str = "until-ready"  # or "continuously"


@dataclass(frozen=True, slots=True)
class PrometheusConfig:
    NAME: ClassVar[str] = "prometheus"

    addr: str = PROMETHEUS_ADDR
    runtime_metrics: bool = False


def _addr(d: Dispenser, default: str) -> str:
    args = d.remaining_args()
    if len(args) > 1:
        raise d.arg_err()
    if not args:
        return default
    goparse.split_host_port(args[0])
    return args[0]


def parse_health(d: Dispenser, ctx: SetupContext) -> list[HealthConfig]:
    """Not once-per-block: a later ``health`` line overrides an earlier one."""
    addr, lameduck = "", 0.0
    for _ in stanzas(d):
        addr = _addr(d, "")
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


def parse_ready(d: Dispenser, ctx: SetupContext) -> list[ReadyConfig]:
    config = ReadyConfig()
    for _ in once(d):
        addr = _addr(d, READY_ADDR)
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


def parse_prometheus(d: Dispenser, ctx: SetupContext) -> list[PrometheusConfig]:
    config = PrometheusConfig()
    for _ in once(d):
        addr = _addr(d, PROMETHEUS_ADDR)
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
