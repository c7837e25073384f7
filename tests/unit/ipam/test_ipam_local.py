"""Local mode: repair of written addresses, the SQLite store, restarts and recreation."""

from __future__ import annotations

import pathlib
import random
import sqlite3

import pytest

from kdns.cluster import objects
from kdns.ipam import config, dualstack, local, repair, store

CFG = config.ClusterIPConfig(
    cidrs=("10.96.0.0/24", "fd00:10:96::/120"),
    reservations=(
        config.Reservation("10.96.0.10", ("kube-system", "kube-dns")),
        config.Reservation("fd00:10:96::a", ("kube-system", "kube-dns")),
    ),
)


def svc(
    namespace: str,
    name: str,
    *ips: str,
    policy: str = "",
    families: tuple[str, ...] = (),
    type_: str = "ClusterIP",
) -> objects.Service:
    return objects.Service(
        namespace=namespace,
        name=name,
        type=type_,
        cluster_ips=tuple(ips),
        external_name="example.com" if type_ == "ExternalName" else "",
        ports=(),
        selector=(("app", name),),
        publish_not_ready=False,
        ip_families=families,
        ip_family_policy=policy,
    )


def folder() -> list[objects.Service]:
    return [
        svc("default", "kubernetes"),
        svc("kube-system", "kube-dns"),
        svc("default", "web"),
        svc("default", "db", policy="PreferDualStack"),
        svc("default", "pinned", "10.96.0.50"),
        svc("default", "headless", "None"),
        svc("default", "external", type_="ExternalName"),
        *[svc("apps", f"s{i}") for i in range(20)],
    ]


def test_repair_skips_and_reports_like_the_repair_loop() -> None:
    pool = CFG.pool(random.Random(1))
    problems = repair.rebuild(
        pool,
        [
            svc("default", "a", "10.96.0.20"),
            svc("default", "b", "10.96.0.20"),
            svc("default", "c", "10.97.0.1"),
            svc("default", "d", "bogus"),
            svc("default", "e", "10.96.0.255"),
            svc("default", "f", "2001:db8::1"),
            svc("default", "g", "None"),
        ],
    )
    assert [(p.name, p.reason) for p in problems] == [
        ("b", repair.DUPLICATE),
        ("c", repair.OUT_OF_RANGE),
        ("d", repair.INVALID),
        ("e", repair.OUT_OF_RANGE),
        ("f", repair.OUT_OF_RANGE),
    ]
    assert problems[0].message == (
        "the cluster IP [IPv4]:10.96.0.20 for service default/b was assigned to multiple "
        "services; please recreate"
    )
    assert problems[1].message == (
        "the cluster IP [IPv4]:10.97.0.1 for service default/c is not within the service CIDR "
        "10.96.0.0/24; please recreate"
    )
    assert problems[2].message == (
        "the cluster IP bogus for service default/d is not a valid IP; please recreate"
    )
    assert pool.by_family["IPv4"].snapshot() == ("10.96.0.20",)


def test_assign_fills_only_missing_addresses() -> None:
    result = local.assign(CFG, folder(), random_source=random.Random(5))
    ips = result.cluster_ips
    assert ips[("default", "kubernetes")] == ("10.96.0.1",)
    assert ips[("kube-system", "kube-dns")] == ("10.96.0.10",)
    assert ips[("default", "pinned")] == ("10.96.0.50",)
    assert ips[("default", "headless")] == ("None",)
    assert ips[("default", "external")] == ()
    db = ips[("default", "db")]
    assert len(db) == 2 and db[1].startswith("fd00:10:96::")
    assert result.families[("default", "db")] == ("IPv4", "IPv6")
    assigned = [a for key, v in ips.items() for a in v if a != "None"]
    assert len(assigned) == len(set(assigned))
    assert not result.errors and not result.problems


def test_restart_keeps_every_address(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "state" / "ipam.db"
    with store.Store(path) as memory:
        first = local.assign(CFG, folder(), memory, random.Random(1)).cluster_ips
    with store.Store(path) as memory:  # a new process, another random source
        again = local.assign(CFG, list(reversed(folder())), memory, random.Random(999)).cluster_ips
    assert again == first


def test_deleted_then_recreated_service_gets_its_old_address(tmp_path: pathlib.Path) -> None:
    with store.Store(tmp_path / "ipam.db") as memory:
        first = local.assign(CFG, folder(), memory, random.Random(1)).cluster_ips
        without = [s for s in folder() if s.name != "web"]
        local.assign(CFG, without, memory, random.Random(2))
        back = local.assign(CFG, folder(), memory, random.Random(3)).cluster_ips
    assert back[("default", "web")] == first[("default", "web")]


def test_recreated_service_whose_address_was_taken_gets_a_new_one(
    tmp_path: pathlib.Path,
) -> None:
    with store.Store(tmp_path / "ipam.db") as memory:
        old = local.assign(CFG, folder(), memory, random.Random(1)).cluster_ips[("default", "web")]
        without = [s for s in folder() if s.name != "web"]
        thief = svc("default", "thief", *old)
        local.assign(CFG, [*without, thief], memory, random.Random(2))
        later = local.assign(CFG, [*folder(), thief], memory, random.Random(3)).cluster_ips
        assert later[("default", "thief")] == old
        assert later[("default", "web")] != old
        assert memory.get(("default", "web")) == later[("default", "web")]


def test_remembered_addresses_are_not_stolen_by_earlier_services() -> None:
    """A Service earlier in name order must not pick an address another remembers."""
    memory = store.Store(":memory:")
    cfg = config.ClusterIPConfig(cidrs=("10.0.0.0/29",))
    memory.put(("z", "last"), ["10.0.0.3"])
    services = [svc("a", f"s{i}") for i in range(5)] + [svc("z", "last")]
    for seed in range(10):
        result = local.assign(cfg, services, memory, random.Random(seed))
        assert result.cluster_ips[("z", "last")] == ("10.0.0.3",)
    memory.close()


def test_range_exhaustion_is_reported_per_service() -> None:
    cfg = config.ClusterIPConfig(cidrs=("10.0.0.0/29",))
    result = local.assign(cfg, [svc("a", f"s{i}") for i in range(8)], None, random.Random(0))
    assert len(result.errors) == 2
    assert set(result.errors.values()) == {
        "Internal error occurred: failed to allocate a serviceIP: range is full"
    }
    assert sum(1 for v in result.cluster_ips.values() if v) == 6


def test_store_one_owner_per_address() -> None:
    with store.Store(":memory:") as memory:
        memory.put(("a", "x"), ["10.0.0.1", "fd00::1"])
        memory.put(("b", "y"), ["10.0.0.1"])
        assert memory.get(("a", "x")) == ("fd00::1",)
        assert memory.get(("b", "y")) == ("10.0.0.1",)
        memory.forget(("b", "y"))
        assert memory.all() == {("a", "x"): ("fd00::1",)}


def test_failed_write_rolls_back(tmp_path: pathlib.Path) -> None:
    with store.Store(tmp_path / "ipam.db") as memory:
        memory.put(("a", "x"), ["10.0.0.1"])
        with pytest.raises(sqlite3.IntegrityError):
            memory.put_many({("b", "y"): ("10.0.0.2",), ("c", "z"): (None,)})  # type: ignore[dict-item]
        assert memory.all() == {("a", "x"): ("10.0.0.1",)}


def test_preferring_ignores_preferences_for_explicit_requests() -> None:
    pool = CFG.pool(random.Random(0))
    got = dualstack.allocate_preferring(
        pool, dualstack.Request("default", "x", cluster_ips=("10.96.0.77",)), ["10.96.0.78"]
    )
    assert got.cluster_ips == ("10.96.0.77",)
