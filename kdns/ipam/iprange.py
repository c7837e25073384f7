"""A service CIDR and the arithmetic of its usable addresses and bands.

Addresses are handled as integers: offsets, band edges and scans are then plain
arithmetic, and a /64 costs no more than a /29.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPv4 = "IPv4"
IPv6 = "IPv6"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# KEP-3070: min(max(MIN, block/STEP), MAX) addresses from network+1 form the static band.
STATIC_MIN = 16
STATIC_MAX = 256
STATIC_STEP = 16


def family_of(address: str) -> str:
    """``IPv4`` or ``IPv6``; ValueError when the text is no IP address."""
    return IPv6 if ipaddress.ip_address(address).version == 6 else IPv4


def is_address(text: str) -> bool:
    """Whether the text is an IP address of either family (surrounding blanks allowed)."""
    try:
        ipaddress.ip_address(text.strip())
    except ValueError:
        return False
    return True


def static_band_size(block_size: int) -> int:
    """KEP-3070's offset, counted from the block size (network and broadcast included).

    A block of 16 addresses or fewer has no static band: reserving one would leave
    almost nothing for dynamic picks.
    """
    if block_size <= STATIC_MIN:
        return 0
    return min(max(STATIC_MIN, block_size // STATIC_STEP), STATIC_MAX)


@dataclass(frozen=True, slots=True)
class Range:
    """One service CIDR, as the IPAddress-based allocator accepts it.

    Usable addresses run from network+1 to the broadcast address minus one (IPv4) or
    to the last address (IPv6 has no broadcast). The static band is the first
    ``static_size`` usable addresses; the dynamic band is the rest.
    """

    network: Network

    @classmethod
    def parse(cls, cidr: str) -> Range:
        """Read a CIDR; host bits are masked off, as kube-apiserver's sloppy parser does."""
        try:
            network = ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError as exc:
            raise ValueError(f"invalid service CIDR {cidr!r}: {exc}") from None
        if network.version == 6 and network.prefixlen < 64:
            raise ValueError(
                f"shortest allowed prefix length for service CIDR is 64, got {network.prefixlen}"
            )
        result = cls(network)
        if result.size <= 0:
            raise ValueError(f"service CIDR {network} has no usable addresses")
        return result

    @property
    def cidr(self) -> str:
        return str(self.network)

    @property
    def family(self) -> str:
        return IPv6 if self.network.version == 6 else IPv4

    @property
    def block_size(self) -> int:
        return self.network.num_addresses

    @property
    def first(self) -> int:
        return int(self.network.network_address) + 1

    @property
    def last(self) -> int:
        broadcast = int(self.network.broadcast_address)
        return broadcast - 1 if self.network.version == 4 else broadcast

    @property
    def size(self) -> int:
        """Usable addresses (2^h - 2 for IPv4, 2^h - 1 for IPv6)."""
        return max(0, self.last - self.first + 1)

    @property
    def static_size(self) -> int:
        return min(static_band_size(self.block_size), self.size)

    @property
    def dynamic_first(self) -> int:
        return self.first + self.static_size

    @property
    def dynamic_size(self) -> int:
        return self.size - self.static_size

    def contains(self, value: int) -> bool:
        """Whether the address (as an integer of this family) is usable here."""
        return self.first <= value <= self.last

    def in_static_band(self, value: int) -> bool:
        return self.first <= value < self.dynamic_first

    def to_int(self, address: str) -> int | None:
        """The address as an integer, or None when it is unparsable or of the other family."""
        try:
            parsed = ipaddress.ip_address(address.strip())
        except ValueError:
            return None
        if parsed.version != self.network.version:
            return None
        return int(parsed)

    def to_text(self, value: int) -> str:
        """Canonical text (RFC 5952 for IPv6), the form the API server stores."""
        if self.network.version == 6:
            return str(ipaddress.IPv6Address(value))
        return str(ipaddress.IPv4Address(value))

    def __str__(self) -> str:
        return self.cidr
