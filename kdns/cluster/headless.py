"""The answers of a headless service's names, encoded in one pass over its endpoints.

A headless service of thousands of endpoints answers its own name (and each SRV port
name) with thousands of records. :meth:`Resolver.answer` builds them as record objects
and encodes them once per question, several times over per name: tens of milliseconds
per question at 5,000 endpoints, each a step no query can interrupt. Here one pass over
the endpoints encodes each one's records once, as position-independent pieces (the
owner is the question's pointer, the SRV target written out in full, as
:func:`wire.build` writes them), and yields every :data:`CHUNK` endpoints, so the
compiler's time budget applies inside the pass. The answers are the resolver's byte for
byte (tests/unit/cluster/test_headless_encoder.py compares them); any name outside the
shapes handled here (no endpoint matches, an address that is not an IP) returns None
and the caller asks the resolver.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Generator, Iterable

from kdns.cluster import resolver as resolver_
from kdns.dns import wire

CHUNK = 256
"""Endpoint entries encoded between two chances for the compiler to stop."""

Entry = tuple[str, int, str]
"""(address, port, target name): one of the resolver's ``_Entry`` values."""

_FIXED = struct.Struct("!HHIH")
_PORT = struct.Struct("!H")
_QUESTION = b"\xc0\x0c"  # the owner of every record named as the question
_PRIORITY = b"\x00\x00"


def encode(
    qname: str,
    entries: Iterable[Entry],
    ttl: int,
    soa: wire.RR,
) -> Generator[None, None, dict[int, wire.Answer] | None]:
    """The answers by type (0 for the default: NODATA) of ``qname``, a name whose
    records are ``entries`` in the resolver's order, or None when the resolver must
    answer it instead; yields every :data:`CHUNK` entries.

    The name exists (there is an entry), so every other type is NODATA with the SOA;
    A and AAAA list each address once, SRV lists each (target, port) once with the
    weight of CoreDNS's ``backend_lookup.SRV`` and each target's address as additional
    data.
    """
    pointers = wire._owner_encoder(qname)
    address_rr = {
        wire.A: _FIXED.pack(wire.A, wire.CLASS_IN, ttl, 4),
        wire.AAAA: _FIXED.pack(wire.AAAA, wire.CLASS_IN, ttl, 16),
    }
    addresses: dict[int, list[bytes]] = {wire.A: [], wire.AAAA: []}
    seen_ip: set[str] = set()
    # The SRV records, split where the weight goes (known once every entry is counted):
    # [head 0, tail 0 + head 1, ..., tail n-1], joined by the weight.
    srv_parts: list[bytes] = []
    srv_sizes: list[int] = []
    extra: list[bytes] = []
    seen_srv: set[tuple[str, int]] = set()
    seen_extra: set[tuple[str, str]] = set()
    tails: dict[str, bytes] = {}
    # The last entry's address and target, encoded: a host's ports come one after the
    # other. (Dictionaries of every address and target made tens of thousands of
    # objects to free, milliseconds in one step.)
    last_ip: str | None = None
    last_target: str | None = None
    kind, rdata, target_wire, owner = 0, b"", b"", b""
    glue = b""
    total = 0
    for ip, port, target in entries:
        total += 1
        if total % CHUNK == 0:
            yield
        if ip != last_ip:
            kind = resolver_._host_type(ip)
            if kind == wire.CNAME:
                return None  # a name to chase: the resolver's job
            rdata, last_ip = resolver_._address_rdata(ip), ip
        if ip not in seen_ip:
            seen_ip.add(ip)
            addresses[kind].append(_QUESTION + address_rr[kind] + rdata)
        if port == -1:
            continue  # no port: no SRV record, no additional address
        if target != last_target:
            target_wire = resolver_._name_wire(target, tails)
            owner, last_target = pointers.get(target) or target_wire, target
        if (target, port) not in seen_srv:
            seen_srv.add((target, port))
            size = 6 + len(target_wire)
            srv_parts.append(glue + _QUESTION + _FIXED.pack(wire.SRV, wire.CLASS_IN, ttl, size))
            glue = _PORT.pack(port) + target_wire
            srv_sizes.append(12 + size)
        if (target, ip) not in seen_extra:
            seen_extra.add((target, ip))
            extra.append(owner + address_rr[kind] + rdata)
    if not total:
        return None  # NXDOMAIN (or fallthrough): the resolver's rules
    # Freeing the pass's tens of thousands of keys, and each join of a large answer,
    # take milliseconds: each its own step.
    del seen_ip, seen_srv, seen_extra
    yield
    nodata = wire.build(qname, wire.NOERROR, authority=[soa])
    node: dict[int, wire.Answer] = {0: nodata}
    for qtype, records in addresses.items():
        node[qtype] = _full(records, [len(r) for r in records], 0, []) if records else nodata
    if srv_sizes:
        large = total >= CHUNK
        if large:
            yield
        srv_parts.append(glue)
        weight = _PRIORITY + _PORT.pack(max(1, math.floor(100.0 / (100 * total) * 100)))
        srv = weight.join(srv_parts)
        del srv_parts
        if large:
            yield
        node[wire.SRV] = _full([srv], srv_sizes, len(extra), extra)
    else:
        node[wire.SRV] = nodata
    return node


def _full(answer: list[bytes], sizes: list[int], count: int, extra: list[bytes]) -> wire.Answer:
    """What :func:`wire.build` makes of these encoded records."""
    return wire.Answer(
        wire.NOERROR,
        (len(sizes), 0, count),
        b"".join(answer + extra),
        struct.pack(f"!{len(sizes)}H", *sizes),
    )


def port_name_answers(
    service: dict[int, wire.Answer],
    qname: str,
    index: resolver_.ServiceIndex,
    want_port: str,
    want_proto: str,
    soa: wire.RR,
) -> dict[int, wire.Answer] | None:
    """The answers of the port name ``qname`` from its service name's, when every
    endpoint's every port is this one (a service of one port, the usual case): then its
    records are the service name's, byte for byte, since every record is owned by the
    question and no SRV target is a name inside ``qname``. None otherwise."""
    match = resolver_._match_port
    for eps in index.slices:
        if eps.address_type == "FQDN":
            continue  # no entries
        for port in eps.ports or resolver_._NO_PORTS:
            if not match(want_port, port.name, want_proto, port.protocol):
                return None
    # The one name below qname that a target could be: <proto label>.<service>.
    if qname.split(".", 2)[1] in index.hosts:
        return None
    nodata = wire.build(qname, wire.NOERROR, authority=[soa])
    default = service[0]
    return {qtype: nodata if answer is default else answer for qtype, answer in service.items()}
