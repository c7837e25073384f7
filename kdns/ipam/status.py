"""How full each service CIDR is: for ``kdns ipam status`` and for Prometheus.

A range that runs out fails Service creation cluster-wide, and it fills silently;
hence warnings well before: at 80 % and at 95 % of the addresses a dynamic pick could
ever take (reserved addresses count as taken, since no dynamic pick gets them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass

from prometheus_client import registry as prom_registry
from prometheus_client.core import GaugeMetricFamily, Metric

from kdns.ipam import allocator, dualstack

WARNING_RATIO = 0.80
CRITICAL_RATIO = 0.95

OK = "ok"
WARNING = "warning"
CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class RangeStatus:
    cidr: str
    family: str
    size: int  # usable addresses
    used: int  # allocated, reserved ones included
    free: int  # still available to dynamic picks
    reserved: int
    static_size: int
    static_used: int
    dynamic_size: int
    dynamic_used: int

    @property
    def ratio(self) -> float:
        """Share of the range no dynamic pick can take any more."""
        return 1.0 - self.free / self.size if self.size else 1.0

    @property
    def level(self) -> str:
        if self.ratio >= CRITICAL_RATIO:
            return CRITICAL
        if self.ratio >= WARNING_RATIO:
            return WARNING
        return OK

    @property
    def warning(self) -> str:
        """A sentence for an operator, "" when all is well."""
        if self.level == OK:
            return ""
        return (
            f"service CIDR {self.cidr} is {self.ratio:.0%} full "
            f"({self.free} of {self.size} addresses left for new Services)"
        )


def range_status(alloc: allocator.Allocator) -> RangeStatus:
    rng = alloc.range
    static_used = alloc.static_used
    return RangeStatus(
        cidr=rng.cidr,
        family=rng.family,
        size=rng.size,
        used=alloc.used,
        free=alloc.free,
        reserved=len(alloc.reserved),
        static_size=rng.static_size,
        static_used=static_used,
        dynamic_size=rng.dynamic_size,
        dynamic_used=alloc.used - static_used,
    )


def pool_status(pool: dualstack.Pool) -> tuple[RangeStatus, ...]:
    return tuple(range_status(a) for a in pool.allocators)


def render_text(statuses: Iterable[RangeStatus]) -> str:
    """An aligned table followed by one WARNING/CRITICAL line per range in trouble."""
    rows = [("CIDR", "FAMILY", "SIZE", "USED", "FREE", "RESERVED", "STATIC", "DYNAMIC", "STATE")]
    notes: list[str] = []
    for s in statuses:
        rows.append(
            (
                s.cidr,
                s.family,
                str(s.size),
                str(s.used),
                str(s.free),
                str(s.reserved),
                f"{s.static_used}/{s.static_size}",
                f"{s.dynamic_used}/{s.dynamic_size}",
                s.level,
            )
        )
        if s.warning:
            notes.append(f"{s.level.upper()}: {s.warning}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines + notes) + "\n"


def render_json(statuses: Iterable[RangeStatus]) -> str:
    ranges = [
        {**asdict(s), "ratio": round(s.ratio, 6), "level": s.level, "warning": s.warning}
        for s in statuses
    ]
    return json.dumps({"ranges": ranges}, indent=2, sort_keys=True) + "\n"


class StatusCollector(prom_registry.Collector):
    """Gauges computed at scrape time from a status source, so nothing can go stale."""

    def __init__(self, source: Callable[[], Sequence[RangeStatus]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        labels = ["cidr", "family"]
        specs: list[tuple[str, str, Callable[[RangeStatus], float]]] = [
            ("kdns_ipam_size", "Usable addresses of the service CIDR.", lambda s: s.size),
            ("kdns_ipam_used", "Allocated addresses.", lambda s: s.used),
            ("kdns_ipam_free", "Addresses still available to dynamic picks.", lambda s: s.free),
            ("kdns_ipam_reserved", "Reserved addresses.", lambda s: s.reserved),
            (
                "kdns_ipam_static_size",
                "Size of the static band (KEP-3070).",
                lambda s: s.static_size,
            ),
            (
                "kdns_ipam_static_used",
                "Allocated addresses in the static band.",
                lambda s: s.static_used,
            ),
            ("kdns_ipam_dynamic_size", "Size of the dynamic band.", lambda s: s.dynamic_size),
            (
                "kdns_ipam_dynamic_used",
                "Allocated addresses in the dynamic band.",
                lambda s: s.dynamic_used,
            ),
            (
                "kdns_ipam_utilization_ratio",
                "Share of the range dynamic picks can no longer take.",
                lambda s: s.ratio,
            ),
        ]
        statuses = self._source()
        for name, doc, value in specs:
            family = GaugeMetricFamily(name, doc, labels=labels)
            for s in statuses:
                family.add_metric([s.cidr, s.family], value(s))
            yield family


def publish(
    registry: prom_registry.CollectorRegistry, source: Callable[[], Sequence[RangeStatus]]
) -> StatusCollector:
    """Register the ``kdns_ipam_*`` gauges for ``source`` (e.g. ``lambda: pool_status(p)``)."""
    collector = StatusCollector(source)
    registry.register(collector)
    return collector
