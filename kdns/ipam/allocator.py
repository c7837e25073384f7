"""Allocation from one service CIDR, following kube-apiserver's IPAddress allocator.

Dynamic picks start at a random point of the upper (dynamic) band and scan forward
with wrap-around, so replicas and restarts rarely collide and the static band stays
free for addresses people write into manifests (KEP-3070). Only when the dynamic
band is full does a pick fall back to the static band, again from a random start.

Reserved addresses are never taken by a dynamic pick but may be requested by name,
which is how the DNS service keeps its well-known ``.10``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from kdns.ipam import errors, iprange


class Allocator:
    """The used addresses of one :class:`iprange.Range`, in memory, without I/O.

    Per-band counters of blocked addresses (used or reserved) make "is this band full"
    O(1), so a scan only runs when it is certain to find a free address, and stops
    after at most (blocked + 1) steps even in a /64.
    """

    __slots__ = ("_blocked", "_random", "_used", "range", "reserved")

    def __init__(
        self,
        ip_range: iprange.Range,
        *,
        reserved: Iterable[str] = (),
        random_source: random.Random | None = None,
    ) -> None:
        self.range = ip_range
        self._random = random_source if random_source is not None else random.Random()
        self._used: set[int] = set()
        held: set[int] = set()
        for address in reserved:
            value = ip_range.to_int(address)
            if value is None or not ip_range.contains(value):
                raise ValueError(f"reserved address {address} is not usable in {ip_range}")
            held.add(value)
        self.reserved = frozenset(held)
        self._blocked = [0, 0]  # [static band, dynamic band]
        for value in self.reserved:
            self._blocked[self._band(value)] += 1

    def _band(self, value: int) -> int:
        return 0 if self.range.in_static_band(value) else 1

    @property
    def family(self) -> str:
        return self.range.family

    def _parse(self, address: str) -> int:
        value = self.range.to_int(address)
        if value is None and not iprange.is_address(address):
            raise errors.InvalidAddress(address)
        if value is None or not self.range.contains(value):
            raise errors.NotInRange(address, self.range.cidr)
        return value

    def allocate(self, address: str) -> str:
        """Claim a specific address (reserved ones included); returns its canonical text."""
        value = self._parse(address)
        if value in self._used:
            raise errors.AlreadyAllocated()
        self._take(value)
        return self.range.to_text(value)

    def _take(self, value: int) -> None:
        self._used.add(value)
        if value not in self.reserved:
            self._blocked[self._band(value)] += 1

    def allocate_next(self) -> str:
        """Pick a free, unreserved address: dynamic band first, then static, else full."""
        r = self.range
        if r.dynamic_size == 0:
            raise errors.RangeFull()
        value = self._scan(r.dynamic_first, r.dynamic_size, band=1)
        if value is None and r.static_size:
            value = self._scan(r.first, r.static_size, band=0)
        if value is None:
            raise errors.RangeFull()
        self._take(value)
        return r.to_text(value)

    def _scan(self, first: int, size: int, *, band: int) -> int | None:
        if self._blocked[band] >= size:
            return None
        value = first + self._random.randrange(size)
        end = first + size
        for _ in range(size):
            if value not in self._used and value not in self.reserved:
                return value
            value += 1
            if value == end:
                value = first
        return None  # unreachable while the counters are right; kept as a bound

    def release(self, address: str) -> None:
        """Give an address back; a free, foreign or unparsable one is a no-op."""
        value = self.range.to_int(address)
        if value is None or value not in self._used:
            return
        self._used.remove(value)
        if value not in self.reserved:
            self._blocked[self._band(value)] -= 1

    def has(self, address: str) -> bool:
        value = self.range.to_int(address)
        return value is not None and value in self._used

    def is_free(self, address: str) -> bool:
        """Usable here and not allocated (reserved addresses count as free)."""
        value = self.range.to_int(address)
        return value is not None and self.range.contains(value) and value not in self._used

    def snapshot(self) -> tuple[str, ...]:
        """The used addresses, in address order."""
        return tuple(self.range.to_text(value) for value in sorted(self._used))

    @property
    def used(self) -> int:
        return len(self._used)

    @property
    def static_used(self) -> int:
        return sum(1 for value in self._used if self.range.in_static_band(value))

    @property
    def reserved_free(self) -> int:
        """Reserved addresses nobody holds yet: not free for dynamic picks."""
        return sum(1 for value in self.reserved if value not in self._used)

    @property
    def free(self) -> int:
        """Addresses a dynamic pick could still take."""
        return self.range.size - self._blocked[0] - self._blocked[1]
