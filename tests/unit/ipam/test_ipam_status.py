"""Range status: counts, warning levels, text/JSON rendering and kdns_ipam_* gauges."""

from __future__ import annotations

import json
import random

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from kdns.ipam import allocator, config, dualstack, iprange, status


def filled(cidr: str, count: int, reserved: tuple[str, ...] = ()) -> allocator.Allocator:
    alloc = allocator.Allocator(
        iprange.Range.parse(cidr), reserved=reserved, random_source=random.Random(0)
    )
    for _ in range(count):
        alloc.allocate_next()
    return alloc


def test_counts_per_band() -> None:
    alloc = filled("10.0.0.0/24", 10, reserved=("10.0.0.10",))
    alloc.allocate("10.0.0.2")
    s = status.range_status(alloc)
    assert (s.size, s.used, s.free, s.reserved) == (254, 11, 254 - 12, 1)
    assert (s.static_size, s.static_used, s.dynamic_size, s.dynamic_used) == (16, 1, 238, 10)
    assert s.level == status.OK and s.warning == ""


@pytest.mark.parametrize(
    ("taken", "level"),
    # 254 usable: 80 % is 203.2 addresses gone, 95 % is 241.3.
    [(203, status.OK), (204, status.WARNING), (241, status.WARNING), (242, status.CRITICAL)],
)
def test_warning_levels(taken: int, level: str) -> None:
    assert status.range_status(filled("10.0.0.0/24", taken)).level == level


def test_exact_thresholds() -> None:
    assert status.range_status(filled("10.0.0.0/28", 11)).level == status.OK  # 78.6 %
    assert status.range_status(filled("10.0.0.0/28", 12)).level == status.WARNING  # 85.7 %
    assert status.range_status(filled("10.0.0.0/28", 13)).level == status.WARNING  # 92.9 %
    full = status.range_status(filled("10.0.0.0/28", 14))
    assert full.level == status.CRITICAL and full.free == 0
    assert (
        full.warning
        == "service CIDR 10.0.0.0/28 is 100% full (0 of 14 addresses left for new Services)"
    )


def test_reserved_addresses_count_against_free() -> None:
    reserved = tuple(f"10.0.0.{i}" for i in range(1, 13))
    s = status.range_status(filled("10.0.0.0/28", 0, reserved=reserved))
    assert s.used == 0 and s.free == 2 and s.level == status.WARNING


def pool_for_render() -> dualstack.Pool:
    cfg = config.ClusterIPConfig(cidrs=("10.0.0.0/28", "fd00::/120"))
    pool = cfg.pool(random.Random(0))
    for _ in range(12):
        pool.by_family["IPv4"].allocate_next()
    pool.by_family["IPv6"].allocate("fd00::1")
    return pool


def test_render_text() -> None:
    text = status.render_text(status.pool_status(pool_for_render()))
    assert text.splitlines() == [
        "CIDR         FAMILY  SIZE  USED  FREE  RESERVED  STATIC  DYNAMIC  STATE",
        "10.0.0.0/28  IPv4    14    12    2     0         0/0     12/14    warning",
        "fd00::/120   IPv6    255   1     254   0         1/16    0/239    ok",
        "WARNING: service CIDR 10.0.0.0/28 is 86% full (2 of 14 addresses left for new Services)",
    ]


def test_render_json() -> None:
    doc = json.loads(status.render_json(status.pool_status(pool_for_render())))
    first, second = doc["ranges"]
    assert first["cidr"] == "10.0.0.0/28" and first["level"] == "warning"
    assert first["used"] == 12 and first["free"] == 2 and first["ratio"] == pytest.approx(12 / 14)
    assert second["static_used"] == 1 and second["warning"] == ""


def test_gauges_follow_the_pool_at_scrape_time() -> None:
    pool = pool_for_render()
    registry = CollectorRegistry()
    status.publish(registry, lambda: status.pool_status(pool))
    labels = {"cidr": "10.0.0.0/28", "family": "IPv4"}
    assert registry.get_sample_value("kdns_ipam_used", labels) == 12
    assert registry.get_sample_value("kdns_ipam_size", labels) == 14
    pool.by_family["IPv4"].allocate_next()
    assert registry.get_sample_value("kdns_ipam_used", labels) == 13
    assert registry.get_sample_value("kdns_ipam_free", labels) == 1
    v6 = {"cidr": "fd00::/120", "family": "IPv6"}
    assert registry.get_sample_value("kdns_ipam_static_used", v6) == 1
    assert registry.get_sample_value("kdns_ipam_utilization_ratio", labels) == pytest.approx(
        13 / 14
    )
    text = generate_latest(registry).decode()
    assert "# TYPE kdns_ipam_dynamic_used gauge" in text
