"""The index ``pods verified`` reads: which namespaces have a pod with an address.

At 150,000 Pods a dict per pod and per address cost ~157 bytes a pod (22 MiB): an int
key, a 4-byte ``bytes``, and two dict slots. Most pods have one IPv4 address that no
other pod has, so those live *packed*: sorted ``array`` columns, 24 bytes a pod,
searched with :func:`bisect.bisect_left`. What does not pack (IPv6 and dual-stack pods,
addresses several pods share, such as host-network pods on a node) and what changed
since the columns were built lives *loose*, in dicts, as the whole index did before.
A pod deleted or changed is voided in the columns (its key and address put in the
``gone`` sets) and, if it still exists, written loose. The columns are rebuilt from
both tiers when the loose tier outgrows a fraction of them, and from scratch by a
relist (:class:`Build`), so a relist never holds the dicts of every pod.

Rebuilding the columns (a *fold*) sorts every pod: ~0.5 s at 150,000 pods, which on the
event loop would stall every DNS query. Under a running loop a fold therefore packs in
a worker thread (:class:`Fold`), from copies of what it reads, while the live index
keeps answering and journals the writes made meanwhile; the loop then installs the
result and replays the journal in one step that costs what changed meanwhile, not
what the index holds. Without a loop (unit tests, tools) the fold runs in place.

A pod is known by ``hash((namespace, name))`` (64 bits, per process), not by its
name: two pods whose keys collide (odds about 1e-9 at 150,000 pods) would share an
entry, as they shared one before.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import itertools
import logging
import sys
import threading
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

from kdns.cluster import objects

log = logging.getLogger(__name__)

PodIPs = bytes | tuple[bytes, ...]
"""A pod's packed address (or addresses, dual-stack)."""
Loose = dict[bytes, str | dict[str, int]]
"""packed address -> the namespace of the one pod that has it, or how many pods of each
namespace have it."""


def key_of(namespace: str, name: str) -> int:
    return hash((namespace, name))


def packed_ips(ips: Iterable[str]) -> PodIPs:
    packed = tuple(objects.address_key(ip) for ip in ips)
    return packed[0] if len(packed) == 1 else packed


def _each(ips: PodIPs) -> tuple[bytes, ...]:
    return (ips,) if isinstance(ips, bytes) else ips


def _add(index: Loose, ip: bytes, ns: str) -> None:
    have = index.get(ip)
    if have is None:
        index[ip] = ns
    elif isinstance(have, str):
        counts = {have: 1}
        counts[ns] = counts.get(ns, 0) + 1
        index[ip] = counts
    else:
        have[ns] = have.get(ns, 0) + 1


def _remove(index: Loose, ip: bytes, ns: str) -> None:
    have = index.get(ip)
    if isinstance(have, str):
        if have == ns:
            del index[ip]
    elif have is not None and ns in have:
        have[ns] -= 1
        if not have[ns]:
            del have[ns]
        if len(have) == 1 and sum(have.values()) == 1:
            index[ip] = next(iter(have))
        elif not have:
            del index[ip]


class Build:
    """A new index filled by a relist, pod by pod; :meth:`PodIndex.swap` takes it."""

    def __init__(self, names: list[str], numbers: dict[str, int]) -> None:
        self.names, self._numbers = names, numbers
        self.keys, self.ips, self.spaces = array("q"), array("I"), array("I")
        self.loose: dict[int, tuple[str, PodIPs]] = {}

    def put(self, namespace: str, key: int, ips: PodIPs) -> None:
        if isinstance(ips, bytes) and len(ips) == 4:
            self.keys.append(key)
            self.ips.append(int.from_bytes(ips, "big"))
            self.spaces.append(_number(self.names, self._numbers, namespace))
        else:
            self.loose[key] = (namespace, ips)

    def pack(self) -> Packed:
        """The columns, sorted: CPU-bound, touching nothing but this build (a relist
        runs it in a thread, so the event loop answers meanwhile)."""
        return _pack(self)


_NUMBERING = threading.Lock()
"""Held while a namespace gets its number: a fold's thread and the loop (a relist's
pages) may number namespaces at once, and a number must name one namespace."""


def _number(names: list[str], numbers: dict[str, int], namespace: str) -> int:
    number = numbers.get(namespace)
    if number is None:
        with _NUMBERING:
            number = numbers.get(namespace)
            if number is None:
                # The name first: whoever reads the number finds its name.
                names.append(sys.intern(namespace))
                number = numbers[namespace] = len(names) - 1
    return number


class Fold:
    """A fold in flight: the index as it was when the fold began, and what changed since.

    The columns are replaced, never changed in place, so the fold keeps the ones it
    read; the loose tier and the ``gone`` set change with every write, so it reads
    copies (at 150,000 pods a fold begins with ~37,000 loose pods: a few milliseconds).
    Every write made while it runs is journalled, the last one per pod winning (its
    namespace and addresses, or None once deleted): :meth:`PodIndex.end_fold` replays
    the journal onto the packed result."""

    __slots__ = ("_build", "_columns", "_gone", "_loose", "future", "journal")

    def __init__(self, index: PodIndex) -> None:
        self._build = index.build()
        self._columns = index._keys, index._key_ips, index._key_spaces
        self._gone = set(index._gone_keys)
        self._loose = dict(index._loose)
        self.journal: dict[int, tuple[str, PodIPs] | None] = {}
        self.future: asyncio.Future[Packed] | None = None
        """The thread packing it, when one does."""

    def pack(self) -> Packed:
        """The index folded into fresh columns: CPU-bound, and reading only what the
        fold holds, so a thread runs it while the loop writes to the live index."""
        build, gone = self._build, self._gone
        keys, ips, spaces = build.keys, build.ips, build.spaces
        # The columns' namespace numbers are the build's too: they share the names.
        for key, ip, space in zip(*self._columns, strict=True):
            if key not in gone:
                keys.append(key)
                ips.append(ip)
                spaces.append(space)
        for key, (ns, pod_ips) in self._loose.items():
            build.put(ns, key, pod_ips)
        return build.pack()


class PodIndex:
    """Addresses -> namespaces, and pod keys -> addresses (to update and delete)."""

    COMPACT_MIN = 4096
    """The loose tier is folded into the columns after this many writes since they were
    built, or a quarter as many as there are pods, whichever is more: at 150,000 pods
    a fold takes ~0.5 s (in a thread, under a loop), so it comes once per ~37,000 pod
    changes, and the loose tier costs ~6 MiB more than the columns would (more while a
    fold runs). Writes are counted, not loose pods: pods that never pack (IPv6,
    dual-stack, shared addresses) stay loose after a fold, and a dual-stack cluster's
    every pod would otherwise call for a fold at every write."""

    def __init__(self) -> None:
        self._names: list[str] = []
        self._numbers: dict[str, int] = {}
        # Packed: sorted by key, and sorted by address (each address once).
        self._keys, self._key_ips, self._key_spaces = array("q"), array("I"), array("I")
        self._ips, self._ip_spaces = array("I"), array("I")
        self._gone_keys: set[int] = set()
        self._gone_ips: set[int] = set()
        # Loose: key -> (namespace, addresses); address -> namespace(s).
        self._loose: dict[int, tuple[str, PodIPs]] = {}
        self._loose_ips: Loose = {}
        self._writes = 0
        """Writes since the columns were built."""
        self._fold: Fold | None = None
        """The fold in flight, if any: writes are journalled for it."""

    # -- reading -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._keys) - len(self._gone_keys) + len(self._loose)

    def _packed_at(self, key: int) -> int:
        """Where ``key`` sits in the key columns, -1 if it is not there (or voided)."""
        keys = self._keys
        i = bisect.bisect_left(keys, key)
        if i < len(keys) and keys[i] == key and key not in self._gone_keys:
            return i
        return -1

    def _packed_namespace(self, ip: bytes) -> str | None:
        if len(ip) != 4:
            return None
        value = int.from_bytes(ip, "big")
        ips = self._ips
        i = bisect.bisect_left(ips, value)
        if i < len(ips) and ips[i] == value and value not in self._gone_ips:
            return self._names[self._ip_spaces[i]]
        return None

    def has(self, namespace: str, name: str) -> bool:
        key = key_of(namespace, name)
        return key in self._loose or self._packed_at(key) >= 0

    def namespaces(self, ip: bytes) -> dict[str, int]:
        """How many pods of each namespace have this address."""
        counts: dict[str, int] = {}
        packed = self._packed_namespace(ip)
        if packed is not None:
            counts[packed] = 1
        loose = self._loose_ips.get(ip)
        if isinstance(loose, str):
            counts[loose] = counts.get(loose, 0) + 1
        elif loose is not None:
            for ns, count in loose.items():
                counts[ns] = counts.get(ns, 0) + count
        return counts

    def namespace(self, ip: bytes) -> str | None:
        """The namespace of the one pod with this address; None when none or several."""
        packed = self._packed_namespace(ip)
        loose = self._loose_ips.get(ip)
        if packed is None:
            return loose if isinstance(loose, str) else None
        return packed if loose is None else None

    def has_ip(self, namespace: str, ip: bytes) -> bool:
        if self._packed_namespace(ip) == namespace:
            return True
        loose = self._loose_ips.get(ip)
        return loose == namespace if isinstance(loose, str) else bool(loose and namespace in loose)

    def get(self, key: int) -> tuple[str, PodIPs] | None:
        loose = self._loose.get(key)
        if loose is not None:
            return loose
        i = self._packed_at(key)
        if i < 0:
            return None
        return self._names[self._key_spaces[i]], self._key_ips[i].to_bytes(4, "big")

    # -- writing -------------------------------------------------------------------

    def put(self, namespace: str, name: str, ips: PodIPs) -> bool:
        """This pod has these addresses now; True if that changed anything."""
        key = key_of(namespace, name)
        old = self.get(key)
        if old is not None and old[1] == ips:
            return False
        self._write(key, old, sys.intern(namespace), ips)
        self._maybe_fold()
        return True

    def delete(self, namespace: str, name: str) -> bool:
        key = key_of(namespace, name)
        old = self.get(key)
        if old is None:
            return False
        self._erase(key, old)
        self._maybe_fold()
        return True

    def delete_key(self, key: int) -> None:
        old = self.get(key)
        if old is not None:
            self._erase(key, old)

    def _write(self, key: int, old: tuple[str, PodIPs] | None, ns: str, ips: PodIPs) -> None:
        if old is not None:
            self._drop(key, *old)
        self._loose[key] = (ns, ips)
        for ip in _each(ips):
            _add(self._loose_ips, ip, ns)
        self._writes += 1
        if self._fold is not None:
            self._fold.journal[key] = (ns, ips)

    def _erase(self, key: int, old: tuple[str, PodIPs]) -> None:
        self._drop(key, *old)
        self._writes += 1
        if self._fold is not None:
            self._fold.journal[key] = None

    def _drop(self, key: int, ns: str, ips: PodIPs) -> None:
        if self._loose.pop(key, None) is not None:
            for ip in _each(ips):
                _remove(self._loose_ips, ip, ns)
            return
        assert isinstance(ips, bytes)  # a packed pod: one IPv4 address, no other pod's
        self._gone_keys.add(key)
        self._gone_ips.add(int.from_bytes(ips, "big"))

    # -- folds ---------------------------------------------------------------------

    def _maybe_fold(self) -> None:
        if self._fold is None and self._writes > max(self.COMPACT_MIN, len(self) // 4):
            self._start_fold()

    def _start_fold(self) -> None:
        """Fold in the default executor (where a relist packs too); in place when no
        loop runs here, or when its executor is shut down (the loop is ending)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.compact()
            return
        fold = self.begin_fold()
        try:
            fold.future = loop.run_in_executor(None, fold.pack)
        except RuntimeError:
            self.compact()
            return
        fold.future.add_done_callback(functools.partial(self._packed, fold))

    def _packed(self, fold: Fold, future: asyncio.Future[Packed]) -> None:
        if self._fold is not fold:
            return  # a relist (or a compact) came first
        if future.cancelled() or future.exception() is not None:
            self._fold = None  # the live index is whole: the next write folds again
            if not future.cancelled():
                log.error("pod index: a fold failed", exc_info=future.exception())
            return
        self.end_fold(fold, future.result())

    def begin_fold(self) -> Fold:
        """Start a fold: writes are journalled until :meth:`end_fold` (or a relist)."""
        self._fold = Fold(self)
        return self._fold

    def end_fold(self, fold: Fold, packed: Packed) -> bool:
        """Install what ``fold`` packed and replay the writes made since it began;
        False (and nothing done) if a relist or a compact has superseded it."""
        if self._fold is not fold:
            return False
        self._fold = None
        self._install(packed)
        for key, now in fold.journal.items():
            old = self.get(key)
            if now is None:
                if old is not None:
                    self._erase(key, old)
            elif old != now:
                self._write(key, old, *now)
        self._maybe_fold()
        return True

    @property
    def folding(self) -> asyncio.Future[Packed] | None:
        """The thread packing the fold in flight, if one is."""
        return self._fold.future if self._fold is not None else None

    def compact(self) -> None:
        """Fold the loose tier into freshly built columns, in place (any fold in
        flight is dropped)."""
        self.install(Fold(self).pack())

    # -- relists -------------------------------------------------------------------

    def build(self) -> Build:
        return Build(self._names, self._numbers)

    def relist(self) -> Build:
        """A build for a relist, which supersedes any fold in flight: the relist's
        index replaces everything the fold would have installed."""
        self._fold = None
        return self.build()

    def deleted_by(self, packed: Packed) -> int:
        """How many pods held now ``packed`` does not hold. Reads the index without
        changing it: a relist counts this off the event loop, with :meth:`Build.pack`."""
        new_keys, new_loose = packed.keys, packed.loose
        gone, deleted = self._gone_keys, 0
        for key in itertools.chain((k for k in self._keys if k not in gone), self._loose):
            if key not in new_loose:
                i = bisect.bisect_left(new_keys, key)
                deleted += i == len(new_keys) or new_keys[i] != key
        return deleted

    def install(self, packed: Packed) -> None:
        """Replace everything with what ``packed`` holds (any fold in flight is dropped)."""
        self._fold = None
        self._install(packed)

    def _install(self, packed: Packed) -> None:
        self._keys, self._key_ips, self._key_spaces = packed.keys, packed.key_ips, packed.key_spaces
        self._ips, self._ip_spaces = packed.ips, packed.ip_spaces
        self._gone_keys, self._gone_ips = set(), set()
        self._writes = 0
        self._loose, self._loose_ips = packed.loose, packed.loose_ips


@dataclass(slots=True)
class Packed:
    """The columns and loose tier :meth:`Build.pack` made, for :meth:`PodIndex.install`."""

    keys: array[int]
    key_ips: array[int]
    key_spaces: array[int]
    ips: array[int]
    ip_spaces: array[int]
    loose: dict[int, tuple[str, PodIPs]]
    loose_ips: Loose


RUN = 1 << 14
"""How many numbers one C call of :func:`_sort` orders at most before merging."""


def _sort(values: list[int]) -> None:
    """Sort in place, in steps that each hold the GIL briefly.

    A worker thread (a fold, a relist) sorts while the event loop answers queries, and
    the loop waits for the GIL as long as one C call of the thread lasts: one sort of
    150,000 numbers is ~40 ms. So runs of :data:`RUN` numbers (~2.5 ms each) are
    sorted, then merged pairwise (a sort of two sorted runs is a linear merge): the
    longest step is the last merge, ~10 ms at 150,000 pods, for a few tens of ms more
    CPU per sort."""
    size, width = len(values), RUN
    for i in range(0, size, width):
        values[i : i + width] = sorted(values[i : i + width])
    while width < size:
        for i in range(width, size, 2 * width):
            values[i - width : i + width] = sorted(values[i - width : i + width])
        width *= 2


_OFFSET = 1 << 63
"""Added to a (signed 64-bit) key so that it sorts as a non-negative number."""


def _pack(build: Build) -> Packed:
    """Sort the columns; pods whose address another pod has too go loose.

    Two sorts of numbers that carry their position (``value << shift | position``),
    not positions by a key function (:func:`_sort`): ~0.45 s for 150,000 pods. Only one
    such list of numbers (~6 MiB at 150,000 pods) is alive at a time: a relist's peak
    is its size."""
    keys, ips, spaces, loose = build.keys, build.ips, build.spaces, build.loose
    shift = max(1, len(keys).bit_length())
    mask = (1 << shift) - 1
    # By key: the last put of a key wins (its position sorts last); a key put loose too
    # stays loose.
    by_key = [(key + _OFFSET) << shift | pos for pos, key in enumerate(keys)]
    _sort(by_key)
    last = len(by_key) - 1
    order = array("I", (v & mask for i, v in enumerate(by_key)
                        if i == last or by_key[i + 1] >> shift != v >> shift))  # fmt: skip
    del by_key
    if loose:
        order = array("I", (pos for pos in order if keys[pos] not in loose))
    # By address: an address several pods have is counted loose.
    by_ip = [ips[pos] << shift | pos for pos in order]
    _sort(by_ip)
    shared: set[int] = set()
    for i in range(1, len(by_ip)):
        if by_ip[i - 1] >> shift == by_ip[i] >> shift:
            shared.update((by_ip[i - 1] & mask, by_ip[i] & mask))
    names = build.names
    for pos in shared:
        loose[keys[pos]] = (names[spaces[pos]], ips[pos].to_bytes(4, "big"))
    single = [v & mask for v in by_ip if v & mask not in shared] if shared else None
    ip_positions = single if single is not None else [v & mask for v in by_ip]
    del by_ip
    ip_column = array("I", (ips[pos] for pos in ip_positions))
    ip_spaces = array("I", (spaces[pos] for pos in ip_positions))
    del ip_positions, single
    if shared:
        order = array("I", (pos for pos in order if pos not in shared))
    loose_ips: Loose = {}
    for ns, pod_ips in loose.values():
        for each in _each(pod_ips):
            _add(loose_ips, each, ns)
    return Packed(
        array("q", (keys[pos] for pos in order)),
        array("I", (ips[pos] for pos in order)),
        array("I", (spaces[pos] for pos in order)),
        ip_column,
        ip_spaces,
        loose,
        loose_ips,
    )
