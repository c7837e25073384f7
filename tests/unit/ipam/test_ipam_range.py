"""Range arithmetic: usable addresses and KEP-3070 bands, computed by hand."""

from __future__ import annotations

import pytest

from kdns.ipam import iprange

# cidr, usable, static band, first usable, last usable, first dynamic
CASES = [
    ("10.0.0.0/29", 6, 0, "10.0.0.1", "10.0.0.6", "10.0.0.1"),
    ("10.0.0.0/28", 14, 0, "10.0.0.1", "10.0.0.14", "10.0.0.1"),
    ("10.0.0.0/27", 30, 16, "10.0.0.1", "10.0.0.30", "10.0.0.17"),
    ("10.0.0.0/24", 254, 16, "10.0.0.1", "10.0.0.254", "10.0.0.17"),
    ("10.0.0.0/20", 4094, 256, "10.0.0.1", "10.0.15.254", "10.0.1.1"),
    ("10.96.0.0/12", 1048574, 256, "10.96.0.1", "10.111.255.254", "10.96.1.1"),
    ("fd00::/120", 255, 16, "fd00::1", "fd00::ff", "fd00::11"),
    ("fd00::/112", 65535, 256, "fd00::1", "fd00::ffff", "fd00::101"),
    ("fd00::/64", 2**64 - 1, 256, "fd00::1", "fd00::ffff:ffff:ffff:ffff", "fd00::101"),
    ("10.0.0.0/30", 2, 0, "10.0.0.1", "10.0.0.2", "10.0.0.1"),
    ("fd00::/127", 1, 0, "fd00::1", "fd00::1", "fd00::1"),
]


@pytest.mark.parametrize(("cidr", "usable", "static", "first", "last", "dynamic"), CASES)
def test_sizes_and_bands(
    cidr: str, usable: int, static: int, first: str, last: str, dynamic: str
) -> None:
    rng = iprange.Range.parse(cidr)
    assert rng.size == usable
    assert rng.static_size == static
    assert rng.dynamic_size == usable - static
    assert rng.to_text(rng.first) == first
    assert rng.to_text(rng.last) == last
    assert rng.to_text(rng.dynamic_first) == dynamic


@pytest.mark.parametrize(
    ("block", "expected"),
    [(1, 0), (16, 0), (32, 16), (256, 16), (512, 32), (4096, 256), (2**20, 256), (2**64, 256)],
)
def test_static_band_formula(block: int, expected: int) -> None:
    assert iprange.static_band_size(block) == expected


@pytest.mark.parametrize(
    ("cidr", "message"),
    [
        ("fd00::/63", "shortest allowed prefix length for service CIDR is 64, got 63"),
        ("10.0.0.0/31", "has no usable addresses"),
        ("10.0.0.0/32", "has no usable addresses"),
        ("fd00::1/128", "has no usable addresses"),
        ("10.0.0.0/33", "invalid service CIDR"),
        ("banana", "invalid service CIDR"),
    ],
)
def test_refused_ranges(cidr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        iprange.Range.parse(cidr)


def test_host_bits_are_masked_like_the_sloppy_parser() -> None:
    assert iprange.Range.parse("10.96.0.10/12").cidr == "10.96.0.0/12"


def test_contains_excludes_network_and_broadcast() -> None:
    rng = iprange.Range.parse("192.168.1.0/24")
    network, broadcast = rng.to_int("192.168.1.0"), rng.to_int("192.168.1.255")
    assert network is not None and broadcast is not None
    assert not rng.contains(network)
    assert not rng.contains(broadcast)
    assert rng.to_int("fd00::1") is None  # other family
    assert rng.to_int("nope") is None


def test_ipv6_last_address_is_usable() -> None:
    rng = iprange.Range.parse("fd00::/120")
    last = rng.to_int("fd00::ff")
    assert last is not None and rng.contains(last)
