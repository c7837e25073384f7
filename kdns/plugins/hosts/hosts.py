"""The ``hosts`` plugin: answers from an /etc/hosts-style file and inline Corefile lines.

Behaviour follows CoreDNS's ``plugin/hosts`` (hostsfile.go, hosts.go), which k3s
(NodeHosts) and minikube (``host.minikube.internal``) rely on:

- a line is ``IP NAME...``; ``#`` starts a comment; IPv6 zones (``%eth0``) are dropped;
  an IPv4-mapped IPv6 address counts as IPv4 (Go's ``To4``); names become lower-case
  FQDNs and only names inside the plugin's zones are kept; a leftmost ``*`` label is a
  wildcard for exactly one more label (exact names win, per address family);
- file entries come first, inline entries after them; PTRs are generated for exact
  names unless ``no_reverse``;
- a name with records answers A/AAAA authoritatively, NODATA for the family it lacks
  and for every other type (or the next plugin with ``fallthrough_unsupported``);
- an unknown name in the zones goes to the next plugin with ``fallthrough``, else gets
  SERVFAIL: CoreDNS has no SOA to put in an NXDOMAIN, so it answers SERVFAIL, and a
  drop-in must too;
- PTR queries are answered whatever the zones; an unknown address always goes on.

Answers are compiled when the data is (re)read: every answer whose records are all
owned by the query name is a chain of compression pointers to the question, so its
bytes do not depend on the name and one :class:`wire.Answer` serves every name with
the same addresses. A query is one or two dictionary lookups.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Gauge

from kdns.dns import names, wire
from kdns.plugins.hosts.setup import HostsConfig

log = logging.getLogger(__name__)

# Both carry no records, so they fit any question name.
NODATA = wire.build(".", wire.NOERROR)
# What CoreDNS's server writes when a plugin returns SERVFAIL unwritten: not authoritative.
SERVFAIL = wire.build(".", wire.SERVFAIL, authoritative=False)

# A stand-in question name: records it owns are encoded as pointers to the question.
_ANY_NAME = "x."
# Longer fields cannot be names (CoreDNS drops them the same way, hostsfile.go maxFieldSize).
_MAX_FIELD = 1024


@dataclass(slots=True)
class _Parsed:
    """One source (the file or the inline lines) as CoreDNS's ``Map``: insertion-ordered."""

    v4: dict[str, list[bytes]] = field(default_factory=dict)
    v6: dict[str, list[bytes]] = field(default_factory=dict)
    wild4: dict[str, list[bytes]] = field(default_factory=dict)
    wild6: dict[str, list[bytes]] = field(default_factory=dict)
    addr: dict[str, list[str]] = field(default_factory=dict)  # address text -> names

    def __len__(self) -> int:
        """Addresses plus reverse names: what ``coredns_hosts_entries`` counts."""
        maps = (self.v4, self.v6, self.wild4, self.wild6)
        return sum(len(v) for m in maps for v in m.values()) + sum(
            len(v) for v in self.addr.values()
        )


def _parse_ip(text: str) -> tuple[int, bytes, str] | None:
    """(family, packed, canonical text) as Go's ParseIP + To4 see it, or None."""
    text = text.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        mapped = ip.ipv4_mapped
        return 4, mapped.packed, str(mapped)
    return ip.version, ip.packed, str(ip)


def parse(text: str, zones: Sequence[str], reverse: bool) -> _Parsed:
    """Parse hosts-file text, keeping names inside ``zones`` (lower-case FQDNs)."""
    out = _Parsed()
    for line in text.split("\n"):
        cut = line.find("#")
        if cut >= 0:
            line = line[:cut]
        fields = line.split()
        if len(fields) < 2 or len(fields[0]) > _MAX_FIELD:
            continue
        ip = _parse_ip(fields[0])
        if ip is None:
            continue
        family, packed, text_ip = ip
        for raw in fields[1:]:
            if len(raw) > _MAX_FIELD:
                continue
            name = names.fqdn(raw)
            if not any(names.is_subdomain(name, zone) for zone in zones):
                continue
            try:
                names.to_wire(name)  # PTR targets must encode; skip what cannot
            except (names.BadName, UnicodeError):
                continue
            if name.startswith("*."):
                table = out.wild4 if family == 4 else out.wild6
                table.setdefault(name, []).append(packed)
                continue  # wildcards get no PTR
            table = out.v4 if family == 4 else out.v6
            table.setdefault(name, []).append(packed)
            if reverse:
                out.addr.setdefault(text_ip, []).append(name)
    return out


def _wildcard(name: str) -> str:
    """``a.example.org.`` -> ``*.example.org.``; "" when there is no parent to wildcard."""
    rest = name.partition(".")[2]
    return "*." + rest if rest else ""


def _ips(source: _Parsed, family: int, name: str) -> list[bytes]:
    """hostsfile.go lookupStaticHostLocked: the exact name, else its one-label wildcard."""
    exact, wild = (source.v4, source.wild4) if family == 4 else (source.v6, source.wild6)
    found = exact.get(name)
    if found is not None:
        return found
    pattern = _wildcard(name)
    return wild.get(pattern, []) if pattern else []


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """Compiled answers; swapped whole on reload so a lookup never sees half a reload."""

    forward: dict[str, tuple[wire.Answer, wire.Answer]]  # exact name -> (A, AAAA)
    wild: dict[str, tuple[wire.Answer, wire.Answer]]  # "*.parent." -> (A, AAAA)
    ptr: dict[str, wire.Answer]  # reverse name -> PTR answer
    entries: int


class _Builder:
    """Shares one Answer among all names with the same addresses (think ad-block lists)."""

    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        self.cache: dict[tuple[int, tuple[bytes, ...]], wire.Answer] = {}

    def answer(self, qtype: int, ips: Iterable[bytes]) -> wire.Answer:
        # Duplicates are dropped (RFC 2181 5.): CoreDNS would repeat a record listed twice.
        unique = tuple(dict.fromkeys(ips))
        if not unique:
            return NODATA
        key = (qtype, unique)
        built = self.cache.get(key)
        if built is None:
            # Owned by the question name: compression pointers, whatever the name.
            rrs = [wire.RR(_ANY_NAME, qtype, self.ttl, ip) for ip in unique]
            built = self.cache[key] = wire.build(_ANY_NAME, wire.NOERROR, rrs)
        return built


def compile_snapshot(file: _Parsed, inline: _Parsed, ttl: int) -> _Snapshot:
    """File entries first, inline ones after (LookupStaticHostV4/V6, LookupStaticAddr)."""
    b = _Builder(ttl)
    forward: dict[str, tuple[wire.Answer, wire.Answer]] = {}
    for name in dict.fromkeys([*file.v4, *file.v6, *inline.v4, *inline.v6]):
        forward[name] = (
            b.answer(wire.A, [*_ips(file, 4, name), *_ips(inline, 4, name)]),
            b.answer(wire.AAAA, [*_ips(file, 6, name), *_ips(inline, 6, name)]),
        )
    wild: dict[str, tuple[wire.Answer, wire.Answer]] = {}
    for pattern in dict.fromkeys([*file.wild4, *file.wild6, *inline.wild4, *inline.wild6]):
        wild[pattern] = (
            b.answer(wire.A, [*file.wild4.get(pattern, ()), *inline.wild4.get(pattern, ())]),
            b.answer(wire.AAAA, [*file.wild6.get(pattern, ()), *inline.wild6.get(pattern, ())]),
        )
    ptr: dict[str, wire.Answer] = {}
    for address in dict.fromkeys([*file.addr, *inline.addr]):
        targets = dict.fromkeys([*file.addr.get(address, ()), *inline.addr.get(address, ())])
        owner = names.reverse_name(address)
        rrs = [wire.RR(owner, wire.PTR, ttl, wire.rdata_name(t)) for t in targets]
        ptr[owner] = wire.build(owner, wire.NOERROR, rrs)
    return _Snapshot(forward, wild, ptr, len(file) + len(inline))


_GAUGES: weakref.WeakKeyDictionary[CollectorRegistry, tuple[Gauge, Gauge]] = (
    weakref.WeakKeyDictionary()
)


def _gauges(registry: CollectorRegistry) -> tuple[Gauge, Gauge]:
    """One pair of gauges per registry: every hosts instance (one per block) shares them."""
    found = _GAUGES.get(registry)
    if found is None:
        found = _GAUGES[registry] = (
            Gauge(
                "coredns_hosts_entries",
                "The combined number of entries in hosts and Corefile.",
                ["hostsfile"],
                registry=registry,
            ),
            Gauge(
                "coredns_hosts_reload_timestamp_seconds",
                "The timestamp of the last reload of hosts file.",
                registry=registry,
            ),
        )
    return found


class Hosts:
    """One ``hosts`` directive of one server block.

    The constructor reads the file once (CoreDNS's OnStartup). Keep it current with
    either :meth:`run` (a root task) or :meth:`maybe_reload` from a timer, not both.
    A relative path is taken from ``root`` when given (CoreDNS's *root* plugin), else from
    the working directory, as CoreDNS does without *root*.
    """

    def __init__(
        self,
        config: HostsConfig,
        *,
        registry: CollectorRegistry | None = None,
        root: str = "",
    ) -> None:
        self.config = config
        path = config.path
        if root and not os.path.isabs(path):
            path = os.path.join(root, path)
        self.path = path
        self._zones = config.zones
        self._fall = config.fallthrough
        self._fall_unsupported = config.fallthrough_unsupported
        self._gauges = _gauges(registry) if registry is not None else None
        self._inline = parse("\n".join(config.inline), config.zones, not config.no_reverse)
        self._file = _Parsed()
        self._stamp: tuple[int, int] | None = None  # (mtime_ns, size) of the data we hold
        self._unreadable = True  # the Corefile loader already warned about a missing file
        self._snap = compile_snapshot(self._file, self._inline, config.ttl)
        if not self.maybe_reload():
            self._publish(None)

    # -- queries -------------------------------------------------------------------------

    def lookup(self, qname: str, qtype: int) -> wire.Answer | None:
        """The answer for a lower-case absolute ``qname``, or None for the next plugin."""
        snap = self._snap
        if qtype == wire.PTR:
            # Reverse names need not be in the zones; an unknown address always goes on.
            return snap.ptr.get(qname)
        if not self._in(qname, self._zones):
            return None
        pair = snap.forward.get(qname)
        if pair is None:
            pattern = _wildcard(qname)
            if pattern:
                pair = snap.wild.get(pattern)
            if pair is None:
                return None if self._in(qname, self._fall) else SERVFAIL
        if qtype == wire.A:
            return pair[0]
        if qtype == wire.AAAA:
            return pair[1]
        if self._fall_unsupported and self._in(qname, self._fall):
            return None
        return NODATA

    def passes(self, zone: str) -> bool:
        """Whether every name of ``zone`` this table lacks goes on to the next plugin.

        Without ``fallthrough`` the names of its zones it does not hold are SERVFAIL, as
        CoreDNS's hosts answers: a cluster zone inside them never reaches kubernetes.
        """
        for own in self._zones:
            if names.is_subdomain(zone, own):
                inner = zone
            elif names.is_subdomain(own, zone):
                inner = own
            else:
                continue
            if not self._in(inner, self._fall):
                return False
        return True

    def names(self) -> set[str]:
        """Every name with records (wildcards as ``*.parent.``), for overlap checks."""
        snap = self._snap
        return set(snap.forward) | set(snap.wild)

    @staticmethod
    def _in(qname: str, zones: Sequence[str]) -> bool:
        return any(names.is_subdomain(qname, zone) for zone in zones)

    # -- reloading -----------------------------------------------------------------------

    def maybe_reload(self) -> bool:
        """Re-read the file if its mtime or size changed; True when the data was replaced.

        An unreadable file keeps the entries last read (what CoreDNS's readHosts does) and
        is logged once until it is readable again.
        """
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return False
            with open(self.path, "rb") as f:
                raw = f.read()
        except OSError as e:
            if not self._unreadable:
                self._unreadable = True
                if isinstance(e, FileNotFoundError):
                    log.warning("plugin/hosts: File does not exist: %s", self.path)
                else:
                    log.warning("plugin/hosts: Failed to read %s: %s", self.path, e)
            return False
        self._unreadable = False
        text = raw.decode("utf-8", errors="replace")
        self._file = parse(text, self._zones, not self.config.no_reverse)
        self._snap = compile_snapshot(self._file, self._inline, self.config.ttl)
        self._stamp = stamp
        log.debug("plugin/hosts: parsed %s into %d entries", self.path, self._snap.entries)
        self._publish(st.st_mtime_ns / 1e9)
        return True

    def _publish(self, mtime: float | None) -> None:
        if self._gauges is None:
            return
        entries, reloaded = self._gauges
        entries.labels(self.path).set(self._snap.entries)
        if mtime is not None:
            reloaded.set(mtime)  # CoreDNS reports the file's mtime, not the wall clock

    async def run(self) -> None:
        """Poll the file every ``reload`` seconds (never with ``reload 0``); parse off-loop."""
        interval = self.config.reload
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.maybe_reload)
            except Exception:  # a bad read must not end the server's task group
                log.exception("plugin/hosts: reloading %s failed", self.path)
