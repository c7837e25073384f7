"""Domain names as kdns handles them: lower-case text with a trailing dot, and wire form.

The hot path keys everything by the lower-cased wire form of the question name, so
conversions live here, together with the address <-> name mappings the Kubernetes DNS
specification defines (dashed IPs, reverse names).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Container

from kdns import errors as kdns_errors


class BadName(kdns_errors.ProtocolError, ValueError):
    """The text is not a valid domain name."""


def fqdn(name: str) -> str:
    """Lower-cased, absolute form: ``Web.Default`` -> ``web.default.``."""
    name = name.lower()
    return name if name.endswith(".") else name + "."


def to_wire(name: str) -> bytes:
    """Encode a text name (absolute or not) as uncompressed wire labels."""
    name = name.rstrip(".")
    if not name:
        return b"\x00"
    out = bytearray()
    for label in name.split("."):
        raw = label.encode("ascii", "strict") if label.isascii() else label.encode("idna")
        if not raw or len(raw) > 63:
            raise BadName(name)
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > 255:
        raise BadName(name)
    return bytes(out)


def wire_labels(wire: bytes) -> list[bytes] | None:
    """Split an uncompressed wire name into its labels; None when it is not well formed."""
    labels: list[bytes] = []
    pos = 0
    end = len(wire)
    while pos < end:
        size = wire[pos]
        if size == 0:
            return labels if pos == end - 1 else None
        if size > 63 or pos + 1 + size > end:
            return None
        labels.append(wire[pos + 1 : pos + 1 + size])
        pos += 1 + size
    return None


def wire_to_text(wire: bytes) -> str:
    """Lower-cased text form of a wire name; labels holding dots or odd bytes stay escaped."""
    labels = wire_labels(wire)
    if labels is None:
        raise BadName(repr(wire))
    # Common case in one pass: printable labels with no dot or backslash inside (the
    # joined text then holds exactly the separating dots), as the per-label loop gives.
    text = b".".join(labels).decode("latin-1").lower()
    if text.count(".") == len(labels) - 1 and "\\" not in text and text.isprintable():
        return text + "."
    parts = []
    for label in labels:
        text = label.decode("latin-1").lower()
        if "." in text or "\\" in text or not text.isprintable():
            text = "".join(c if c.isalnum() or c in "-_*" else f"\\{ord(c):03d}" for c in text)
        parts.append(text)
    return ".".join(parts) + "."


def dashed(ip: str) -> str:
    """The endpoint/pod label for an address, as CoreDNS writes it: ``10-1-2-3``, ``fd00--1``."""
    return ip.replace(".", "-") if "." in ip else ip.replace(":", "-")


def undashed(label: str) -> str | None:
    """The address a pod label names (CoreDNS's rule), or None when it names none."""
    if label.count("-") == 3 and "--" not in label:
        text = label.replace("-", ".")
    else:
        text = label.replace("-", ":")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def reverse_name(ip: str) -> str:
    """``10.0.0.1`` -> ``1.0.0.10.in-addr.arpa.``; IPv6 as full nibbles under ip6.arpa."""
    return ipaddress.ip_address(ip).reverse_pointer + "."


def address_of_reverse(name: str) -> str | None:
    """The address a full reverse name stands for, or None for partial or malformed names."""
    name = name.rstrip(".").lower()
    if name.endswith(".in-addr.arpa"):
        parts = name[: -len(".in-addr.arpa")].split(".")
        if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
            return None
        try:
            return str(ipaddress.IPv4Address(".".join(reversed(parts))))
        except ValueError:
            return None
    if name.endswith(".ip6.arpa"):
        nibbles = name[: -len(".ip6.arpa")].split(".")
        if len(nibbles) != 32 or not all(len(n) == 1 and n in "0123456789abcdef" for n in nibbles):
            return None
        digits = "".join(reversed(nibbles))
        groups = ":".join(digits[i : i + 4] for i in range(0, 32, 4))
        return str(ipaddress.IPv6Address(groups))
    return None


def is_subdomain(name: str, zone: str) -> bool:
    """Both absolute and lower-case; the root zone contains every name."""
    return zone == "." or name == zone or name.endswith("." + zone)


def family(ip: str) -> int:
    """4 or 6."""
    return 6 if ":" in ip else 4


def wire_zone(name: bytes, zones: Container[bytes]) -> bytes | None:
    """The longest zone of ``zones`` (lower-case wire names) holding ``name``, or None.

    ``name`` is a lower-case, uncompressed wire name; the root zone ``b"\\x00"`` holds
    every name. None too when ``name`` is not well formed up to the zone (a label over
    63 octets, a pointer, over 255 octets). One set probe per label, no text: for the
    query path.
    """
    pos = 0
    end = len(name)
    if end > 255:
        return None
    while pos < end:
        suffix = name[pos:] if pos else name
        if suffix in zones:
            return suffix
        size = name[pos]
        if size > 63:
            return None
        pos += 1 + size
    return None


# -- walking names inside a message ---------------------------------------------------------
# The one implementation of the label walk: the handler, forward, cache and log call these.
# Errors are BadName (a ValueError): a label over 63 octets or of a reserved type, a name
# that runs past the message, over 255 octets, or a compression loop.

MAX_HOPS = 128  # compression pointers followed before a name counts as a loop


def name_end(msg: bytes, pos: int = 12) -> int:
    """Offset just past the uncompressed wire name at ``pos`` (a question's name: the
    first name of a message cannot be compressed, so a pointer is an error here)."""
    start = pos
    n = len(msg)
    while pos < n:
        size = msg[pos]
        if size == 0:
            if pos + 1 - start > 255:
                raise BadName("name over 255 octets")
            return pos + 1
        if size > 63:
            raise BadName("compression pointer or reserved label type")
        pos += 1 + size
    raise BadName("name runs past the message")


def skip_name(msg: bytes, pos: int) -> int:
    """Offset just past the name at ``pos``, which may end in a compression pointer."""
    n = len(msg)
    for _ in range(MAX_HOPS):
        if pos >= n:
            break
        size = msg[pos]
        if size == 0:
            return pos + 1
        if size & 0xC0 == 0xC0:
            if pos + 2 > n:
                break
            return pos + 2
        if size > 63:
            raise BadName("reserved label type")
        pos += 1 + size
    raise BadName("name runs past the message")


def read_name(msg: bytes, pos: int) -> bytes:
    """The name at ``pos`` as uncompressed wire labels, compression pointers followed."""
    out = bytearray()
    n = len(msg)
    for _ in range(MAX_HOPS):
        if pos >= n:
            break
        size = msg[pos]
        if size & 0xC0 == 0xC0:
            if pos + 2 > n:
                break
            pos = ((size & 0x3F) << 8) | msg[pos + 1]
            continue
        if size > 63:
            raise BadName("reserved label type")
        out.append(size)
        if size == 0:
            if len(out) > 255:
                raise BadName("name over 255 octets")
            return bytes(out)
        if pos + 1 + size > n:
            break
        out += msg[pos + 1 : pos + 1 + size]
        pos += 1 + size
    raise BadName("name runs past the message or loops")
