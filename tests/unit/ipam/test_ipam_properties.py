"""Properties of dynamic picks over many random sources and small ranges."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.ipam import allocator, errors, iprange

SMALL = st.sampled_from(
    ["10.0.0.0/29", "10.0.0.0/28", "10.0.0.0/27", "10.0.0.0/26", "fd00::/124", "fd00::/122"]
)


@settings(max_examples=60, deadline=None)
@given(cidr=SMALL, seed=st.integers(0, 2**32), reserved_picks=st.integers(0, 3))
def test_dynamic_picks_until_full(cidr: str, seed: int, reserved_picks: int) -> None:
    rng = iprange.Range.parse(cidr)
    chooser = random.Random(seed ^ 0x5EED)
    reserved = {rng.to_text(rng.first + chooser.randrange(rng.size)) for _ in range(reserved_picks)}
    alloc = allocator.Allocator(rng, reserved=reserved, random_source=random.Random(seed))
    seen: set[str] = set()
    expected = rng.size - len(reserved)
    for _ in range(expected):
        dynamic_left = rng.dynamic_size - sum(
            1 for a in seen | reserved if not rng.in_static_band(rng.to_int(a) or 0)
        )
        pick = alloc.allocate_next()
        value = rng.to_int(pick)
        assert value is not None and rng.contains(value)  # usable
        assert pick not in seen  # unique
        assert pick not in reserved  # never reserved
        if dynamic_left > 0:
            assert not rng.in_static_band(value)  # upper band while it has room
        else:
            assert rng.in_static_band(value)
        seen.add(pick)
    try:
        alloc.allocate_next()
    except errors.RangeFull:
        pass
    else:
        raise AssertionError("picked beyond the usable size")
    assert len(seen) == expected


@settings(max_examples=40, deadline=None)
@given(
    cidr=SMALL,
    seed=st.integers(0, 2**32),
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 63)), max_size=80),
)
def test_counters_agree_with_snapshot(cidr: str, seed: int, ops: list[tuple[bool, int]]) -> None:
    rng = iprange.Range.parse(cidr)
    alloc = allocator.Allocator(rng, random_source=random.Random(seed))
    for take, index in ops:
        address = rng.to_text(rng.first + index % rng.size)
        if take:
            try:
                alloc.allocate(address)
            except errors.AlreadyAllocated:
                assert alloc.has(address)
        else:
            alloc.release(address)
        assert alloc.used == len(alloc.snapshot())
        assert alloc.free == rng.size - alloc.used
        assert alloc.static_used == sum(
            1 for a in alloc.snapshot() if rng.in_static_band(rng.to_int(a) or 0)
        )
