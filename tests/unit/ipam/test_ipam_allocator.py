"""One range: specific and dynamic picks, bands, reserved addresses, release, full."""

from __future__ import annotations

import ipaddress
import random

import pytest

from kdns.ipam import allocator, errors, iprange


class Scripted(random.Random):
    """A random source that returns scripted offsets, so starts are hand-computable."""

    def __init__(self, *offsets: int) -> None:
        super().__init__(0)
        self.offsets = list(offsets)
        self.asked: list[int] = []

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        assert stop is None
        self.asked.append(start)
        return self.offsets.pop(0) if self.offsets else 0


def make(cidr: str, *offsets: int, reserved: tuple[str, ...] = ()) -> allocator.Allocator:
    return allocator.Allocator(
        iprange.Range.parse(cidr), reserved=reserved, random_source=Scripted(*offsets)
    )


# cidr, usable count (= picks until "range is full")
FULL_CASES = [
    ("10.0.0.0/29", 6),
    ("10.0.0.0/28", 14),
    ("10.0.0.0/24", 254),
    ("10.0.0.0/20", 4094),
    ("fd00::/120", 255),
]


@pytest.mark.parametrize(("cidr", "usable"), FULL_CASES)
def test_allocate_until_full_gives_exactly_the_usable_addresses(cidr: str, usable: int) -> None:
    alloc = allocator.Allocator(iprange.Range.parse(cidr), random_source=random.Random(7))
    got = {alloc.allocate_next() for _ in range(usable)}
    assert len(got) == usable
    rng = alloc.range
    assert all(rng.contains(rng.to_int(a) or -1) for a in got)
    with pytest.raises(errors.RangeFull, match=r"^range is full$"):
        alloc.allocate_next()
    assert alloc.free == 0 and alloc.used == usable


@pytest.mark.parametrize(
    ("cidr", "offset", "expected"),
    [
        ("10.0.0.0/24", 0, "10.0.0.17"),  # dynamic band starts after the 16 static addresses
        ("10.0.0.0/24", 237, "10.0.0.254"),  # last of 238 dynamic addresses
        ("10.0.0.0/28", 0, "10.0.0.1"),  # no static band in a block of 16
        ("10.0.0.0/20", 0, "10.0.1.1"),  # static band of 256
        ("10.96.0.0/12", 5, "10.96.1.6"),
        ("fd00::/120", 0, "fd00::11"),
        ("fd00::/112", 0, "fd00::101"),
        ("fd00::/64", 2**64 - 258, "fd00::ffff:ffff:ffff:ffff"),
    ],
)
def test_dynamic_pick_starts_at_random_offset_of_upper_band(
    cidr: str, offset: int, expected: str
) -> None:
    alloc = make(cidr, offset)
    assert alloc.allocate_next() == expected


def test_random_range_is_the_dynamic_band_size() -> None:
    source = Scripted(0)
    alloc = allocator.Allocator(iprange.Range.parse("10.0.0.0/24"), random_source=source)
    alloc.allocate_next()
    assert source.asked == [238]


def test_scan_goes_forward_and_wraps_around() -> None:
    alloc = make("10.0.0.0/24", 237, 237, 237)
    assert alloc.allocate_next() == "10.0.0.254"
    assert alloc.allocate_next() == "10.0.0.17"  # wrapped to the start of the dynamic band
    assert alloc.allocate_next() == "10.0.0.18"


def test_static_band_only_when_dynamic_band_is_full() -> None:
    alloc = make("10.0.0.0/27", *([0] * 14), 3)
    dynamic = [alloc.allocate_next() for _ in range(14)]
    assert dynamic == [f"10.0.0.{i}" for i in range(17, 31)]
    assert alloc.static_used == 0
    assert alloc.allocate_next() == "10.0.0.4"  # static band, random offset 3
    assert alloc.static_used == 1


def test_specific_allocation_anywhere_usable() -> None:
    alloc = make("10.0.0.0/24")
    assert alloc.allocate("10.0.0.1") == "10.0.0.1"
    assert alloc.allocate("10.0.0.254") == "10.0.0.254"
    assert alloc.allocate("10.0.0.100") == "10.0.0.100"
    assert alloc.snapshot() == ("10.0.0.1", "10.0.0.100", "10.0.0.254")


@pytest.mark.parametrize(
    ("cidr", "address"),
    [
        ("10.0.0.0/24", "10.0.0.0"),  # network
        ("10.0.0.0/24", "10.0.0.255"),  # broadcast
        ("10.0.0.0/24", "10.0.1.1"),
        ("10.0.0.0/24", "fd00::1"),
        ("fd00::/120", "fd00::"),  # IPv6 network address
        ("fd00::/120", "fd00::100"),
    ],
)
def test_not_in_range_with_api_server_wording(cidr: str, address: str) -> None:
    alloc = make(cidr)
    with pytest.raises(errors.NotInRange) as caught:
        alloc.allocate(address)
    assert str(caught.value) == (
        f"the provided IP ({address}) is not in the valid range. The range of valid IPs is {cidr}"
    )


def test_double_allocation_refused() -> None:
    alloc = make("10.0.0.0/29")
    alloc.allocate("10.0.0.3")
    with pytest.raises(errors.AlreadyAllocated, match=r"^provided IP is already allocated$"):
        alloc.allocate("10.0.0.3")
    assert alloc.used == 1


def test_ipv6_allocation_is_canonical() -> None:
    alloc = make("fd00::/112")
    assert alloc.allocate("FD00:0:0:0:0:0:0:00aa") == "fd00::aa"
    with pytest.raises(errors.AlreadyAllocated):
        alloc.allocate("fd00::aa")


def test_release_and_reuse() -> None:
    alloc = make("10.0.0.0/29", *([0] * 7))
    picks = [alloc.allocate_next() for _ in range(6)]
    with pytest.raises(errors.RangeFull):
        alloc.allocate_next()
    alloc.release("10.0.0.4")
    assert alloc.free == 1 and not alloc.has("10.0.0.4")
    assert alloc.allocate_next() == "10.0.0.4"
    assert sorted(picks, key=ipaddress.ip_address) == list(alloc.snapshot())


def test_release_of_free_foreign_or_garbage_is_a_no_op() -> None:
    alloc = make("10.0.0.0/29")
    alloc.allocate("10.0.0.1")
    for address in ("10.0.0.2", "10.0.0.0", "192.168.0.1", "fd00::1", "garbage"):
        alloc.release(address)
    assert alloc.snapshot() == ("10.0.0.1",)


def test_reserved_addresses_never_picked_dynamically() -> None:
    alloc = make("10.0.0.0/29", *([0] * 6), reserved=("10.0.0.1", "10.0.0.5"))
    picks = [alloc.allocate_next() for _ in range(4)]
    assert picks == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.6"]
    assert alloc.free == 0
    with pytest.raises(errors.RangeFull):
        alloc.allocate_next()
    # ...but they can be asked for by name, once.
    assert alloc.allocate("10.0.0.5") == "10.0.0.5"
    with pytest.raises(errors.AlreadyAllocated):
        alloc.allocate("10.0.0.5")
    alloc.release("10.0.0.5")
    assert alloc.free == 0  # back to reserved, still not for dynamic picks


def test_reserved_dns_address_in_static_band_of_slash_12() -> None:
    alloc = make("10.96.0.0/12", reserved=("10.96.0.10",))
    assert alloc.reserved_free == 1
    assert alloc.free == 1048574 - 1
    assert alloc.allocate("10.96.0.10") == "10.96.0.10"
    assert alloc.reserved_free == 0 and alloc.free == 1048574 - 1


def test_reserved_must_be_usable() -> None:
    with pytest.raises(ValueError, match="not usable"):
        make("10.0.0.0/29", reserved=("10.0.0.7",))


def test_large_ranges_pick_without_scanning_everything() -> None:
    alloc = allocator.Allocator(iprange.Range.parse("fd00::/64"), random_source=random.Random(1))
    picks = {alloc.allocate_next() for _ in range(200)}
    assert len(picks) == 200
    first_dynamic = alloc.range.dynamic_first
    assert all((alloc.range.to_int(p) or 0) >= first_dynamic for p in picks)
