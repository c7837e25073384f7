"""Encoding of prebuilt answers and splicing them into responses.

An :class:`Answer` is everything of a response after the question, already in wire
form, plus the section counts. Owner names equal to the question name, or a suffix of
it, are written as compression pointers into the question (offset 12), so the same
bytes fit any query for that name whatever its letter case: the question is echoed as
the client sent it and the pointers still land on the same labels.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from kdns.dns import names

A = 1
NS = 2
CNAME = 5
SOA = 6
PTR = 12
HINFO = 13
MX = 15
TXT = 16
AAAA = 28
SRV = 33
OPT = 41
IXFR = 251
AXFR = 252
ANY = 255

NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5

CLASS_IN = 1
HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")


@dataclass(frozen=True, slots=True)
class RR:
    """One resource record; ``name`` is absolute and lower-case."""

    name: str
    type: int
    ttl: int
    rdata: bytes


def rdata_a(ip: str) -> bytes:
    return ipaddress.IPv4Address(ip).packed


def rdata_aaaa(ip: str) -> bytes:
    return ipaddress.IPv6Address(ip).packed


def rdata_address(ip: str) -> tuple[int, bytes]:
    """Type and rdata of the address record for ``ip``."""
    addr = ipaddress.ip_address(ip)
    return (AAAA if addr.version == 6 else A), addr.packed


def rdata_name(target: str) -> bytes:
    """CNAME/PTR/NS rdata, uncompressed: simple, and what RFC 3597 asks of new types."""
    return names.to_wire(target)


def rdata_srv(priority: int, weight: int, port: int, target: str) -> bytes:
    return struct.pack("!HHH", priority, weight, port) + names.to_wire(target)


def rdata_txt(*texts: str) -> bytes:
    out = bytearray()
    for text in texts:
        raw = text.encode()
        for i in range(0, max(len(raw), 1), 255):
            chunk = raw[i : i + 255]
            out.append(len(chunk))
            out += chunk
    return bytes(out)


def rdata_soa(
    mname: str, rname: str, serial: int, refresh: int, retry: int, expire: int, minimum: int
) -> bytes:
    return (
        names.to_wire(mname)
        + names.to_wire(rname)
        + struct.pack("!IIIII", serial & 0xFFFFFFFF, refresh, retry, expire, minimum)
    )


def rdata_hinfo(cpu: str, os: str) -> bytes:
    return rdata_txt(cpu) + rdata_txt(os)


class Answer:
    """A response minus header and question: counts, sections, and RR sizes for truncation."""

    __slots__ = (
        "an_sizes",
        "body",
        "chase",
        "counts",
        "counts_opt",
        "fixed",
        "flags",
        "rcode",
        "rotations",
    )

    def __init__(
        self,
        rcode: int,
        counts: tuple[int, int, int],
        body: bytes,
        an_sizes: bytes,
        authoritative: bool = True,
    ):
        self.rcode = rcode
        # The header flag table for this answer, indexed [RD][CD] of the query.
        self.flags: list[list[bytes]] = (FLAGS_AA if authoritative else FLAGS)[rcode]
        self.counts = struct.pack("!HHHH", 1, *counts)
        self.counts_opt = struct.pack("!HHHH", 1, counts[0], counts[1], counts[2] + 1)
        self.body = body
        # The C fast path's view (kdns/server/_fastudp.c), one attribute read per answer:
        # flags by [RD][CD], counts, counts with our OPT, rcode, whether it has answer RRs.
        flags = self.flags
        self.fixed = b"".join(
            (*flags[0], *flags[1], self.counts, self.counts_opt, bytes((rcode, bool(an_sizes))))
        )
        # Sizes of the answer RRs, as 16-bit integers, so a truncated reply can keep whole RRs.
        self.an_sizes = an_sizes
        # loadbalance: bodies with the address records rotated, picked per query; () if off.
        self.rotations: tuple[bytes, ...] = ()
        # An ExternalName's target outside the cluster: with an upstream, its addresses
        # are looked up and added after the CNAME, as CoreDNS does.
        self.chase: str | None = None

    def body_for(self, ident: int) -> bytes:
        """The body to send, rotated by the query ID when ``loadbalance`` prepared rotations."""
        rotations = self.rotations
        return rotations[ident % len(rotations)] if rotations else self.body

    def rotate(self, limit: int = 8) -> None:
        """Prepare rotations of the answer section when it is two or more A or AAAA records.

        CoreDNS's loadbalance shuffles address records per reply; rotating among a few
        prebuilt orders spreads clients the same way without touching bytes per query.
        CNAME chains and SRV sets keep their order, as loadbalance keeps them.
        """
        sizes = struct.unpack(f"!{len(self.an_sizes) // 2}H", self.an_sizes)
        if len(sizes) < 2:
            return
        records = []
        pos = 0
        for size in sizes:
            records.append(self.body[pos : pos + size])
            pos += size
        rest = self.body[pos:]
        types = {r[2:4] for r in records if r[0] & 0xC0 == 0xC0}
        if len(types) != 1 or types.pop() not in (b"\x00\x01", b"\x00\x1c"):
            return
        if any(r[0] & 0xC0 != 0xC0 for r in records):
            return
        count = min(len(records), limit)
        self.rotations = tuple(b"".join(records[k:] + records[:k]) + rest for k in range(count))

    @property
    def ancount(self) -> int:
        return int.from_bytes(self.counts[2:4], "big")


def _owner_encoder(qname: str) -> dict[str, bytes]:
    """Pointers for the question name and each of its suffixes, keyed by text name."""
    pointers: dict[str, bytes] = {}
    labels = qname.rstrip(".").split(".") if qname != "." else []
    offset = 12
    for i, label in enumerate(labels):
        suffix = ".".join(labels[i:]) + "."
        pointers[suffix] = struct.pack("!H", 0xC000 | offset)
        offset += 1 + _wire_length(label)
        if offset > 0x3FFF:
            break
    return pointers


def _wire_length(label: str) -> int:
    """Octets of a text label as :func:`kdns.dns.names.wire_to_text` escapes it (``\\DDD``)."""
    size = 0
    i = 0
    while i < len(label):
        if label[i] == "\\" and label[i + 1 : i + 4].isdigit() and len(label[i + 1 : i + 4]) == 3:
            i += 4
        else:
            i += 1
        size += 1
    return size


def _encode(rr: RR, pointers: dict[str, bytes]) -> bytes:
    owner = pointers.get(rr.name)
    if owner is None:
        owner = names.to_wire(rr.name)
    return owner + _RR_FIXED.pack(rr.type, CLASS_IN, rr.ttl, len(rr.rdata)) + rr.rdata


def build(
    qname: str,
    rcode: int,
    answer: Sequence[RR] = (),
    authority: Sequence[RR] = (),
    additional: Sequence[RR] = (),
    authoritative: bool = True,
) -> Answer:
    """Prebuild the sections of a response to ``qname`` (absolute, lower-case)."""
    pointers = _owner_encoder(qname)
    encoded = [_encode(rr, pointers) for rr in answer]
    rest = [_encode(rr, pointers) for rr in (*authority, *additional)]
    sizes = struct.pack(f"!{len(encoded)}H", *(len(e) for e in encoded))
    return Answer(
        rcode,
        (len(answer), len(authority), len(additional)),
        b"".join(encoded + rest),
        sizes,
        authoritative,
    )


# Header flags by (rcode, RD, CD): QR and AA always set, RD and CD copied from the query
# (what miekg/dns's SetReply does, so clients see what they see from CoreDNS).
def _flags(rcode: int, rd: int, cd: int, aa: bool, tc: bool) -> bytes:
    return bytes((0x80 | (0x04 if aa else 0) | (0x02 if tc else 0) | rd, (cd << 4) | rcode))


FLAGS_AA = [
    [[_flags(rc, rd, cd, True, False) for cd in (0, 1)] for rd in (0, 1)] for rc in range(16)
]
FLAGS = [[[_flags(rc, rd, cd, False, False) for cd in (0, 1)] for rd in (0, 1)] for rc in range(16)]
FLAGS_TC = [
    [[_flags(rc, rd, cd, True, True) for cd in (0, 1)] for rd in (0, 1)] for rc in range(16)
]


def opt_record(udp_size: int, do: bool, ext_rcode: int = 0) -> bytes:
    """Our OPT RR: version 0, our UDP payload size, the DO bit echoed (RFC 3225)."""
    return b"\x00" + struct.pack("!HHBBHH", OPT, udp_size, ext_rcode, 0, 0x8000 if do else 0, 0)


def truncate(
    ident: bytes, rd: int, cd: int, question: bytes, ans: Answer, opt: bytes, limit: int
) -> bytes:
    """Keep as many whole answer RRs as fit, drop authority and additional, set TC."""
    room = limit - 12 - len(question) - len(opt)
    # Only the sizes of the RRs that may fit (each takes at least 11 octets): an answer
    # of 10,000 records costs no more to truncate than one of 50.
    count = max(0, min(len(ans.an_sizes) // 2, room // 11 + 1))
    sizes = struct.unpack_from(f"!{count}H", ans.an_sizes)
    keep = 0
    used = 0
    for size in sizes:
        if used + size > room:
            break
        used += size
        keep += 1
    counts = struct.pack("!HHHH", 1, keep, 0, 1 if opt else 0)
    return ident + FLAGS_TC[ans.rcode][rd][cd] + counts + question + ans.body[:used] + opt
