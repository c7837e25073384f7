"""Server keys and zone arguments: ``[SCHEME://]ZONE[:PORT]`` and reverse CIDR shorthand.

One grammar serves block keys (``10.0.0.0/17:53 {``) and plugin zone arguments
(``kubernetes cluster.local 10.0.0.0/8``, ``fallthrough in-addr.arpa``), as in CoreDNS's
``plugin/normalize.go``. Validation follows miekg/dns's ``IsDomainName``, which accepts
almost any byte (``}`` is a fine label) but not empty labels or oversized names.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kdns.corefile.errors import CorefileError

DNS, TLS, QUIC, GRPC, HTTPS, HTTPS3, UNIX = "dns", "tls", "quic", "grpc", "https", "https3", "unix"
_SCHEMES = (TLS, DNS, QUIC, GRPC, HTTPS3, HTTPS, UNIX)
DEFAULT_PORTS = {TLS: "853", QUIC: "853", GRPC: "443", HTTPS: "443", HTTPS3: "443"}
_ATOI = re.compile(r"[+-]?[0-9]+")
_DDD = re.compile(r"[0-9]{3}")
_CIDR = re.compile(r"[0-9A-Fa-f.:]+/[0-9]{1,3}")


@dataclass(frozen=True, slots=True)
class ZoneAddr:
    """One zone a block serves, on one transport and port (ports stay text, as in CoreDNS)."""

    transport: str
    zone: str
    port: str

    def __str__(self) -> str:
        return f"{self.transport}://{self.zone}:{self.port}"


def split_transport(text: str) -> tuple[str, str]:
    """``tls://example.org`` -> (``tls``, ``example.org``); no scheme means ``dns``."""
    for scheme in _SCHEMES:
        prefix = scheme + "://"
        if text.startswith(prefix):
            return scheme, text[len(prefix) :]
    return DNS, text


def fqdn(name: str) -> str:
    return name if _is_fqdn(name) else name + "."


def _is_fqdn(name: str) -> bool:
    if not name.endswith("."):
        return False
    # A trailing "\." is an escaped dot, not the root: count the backslashes before it.
    stripped = name[:-1]
    slashes = len(stripped) - len(stripped.rstrip("\\"))
    return slashes % 2 == 0


def is_domain_name(name: str) -> bool:
    """miekg/dns IsDomainName: no empty labels, labels < 64 octets, wire length <= 255."""
    if not name:
        return False
    data = fqdn(name).encode("utf-8", errors="surrogateescape")
    off = 0
    begin = 0
    was_dot = False
    i = 0
    while i < len(data):
        ch = data[i]
        if ch == 0x5C:  # backslash
            if off + 1 > 256:
                return False
            if _DDD.match(data[i + 1 : i + 4].decode("latin-1")):
                i += 3
                begin += 3
            else:
                i += 1
                begin += 1
            was_dot = False
        elif ch == 0x2E:  # dot
            if i == 0 and len(data) > 1:
                return False
            if was_dot:
                return False
            was_dot = True
            label = i - begin
            if label >= 64:
                return False
            off += 1 + label
            if off > 256:
                return False
            begin = i + 1
        else:
            was_dot = False
        i += 1
    return True


def split_host_port(text: str) -> tuple[list[str], str]:
    """Zone(s) and port of a scheme-less key; CIDRs become their reverse zones.

    The port is the text after the last ``:`` when it parses as an integer, so a reverse
    IPv6 CIDR keeps its colons (``fd00::/8:53`` -> port 53).
    """
    host, port = text, ""
    colon = text.rfind(":")
    if colon == len(text) - 1:
        raise CorefileError(f'expecting data after last colon: "{text}"')
    if colon != -1 and _ATOI.fullmatch(text[colon + 1 :]):
        port = str(int(text[colon + 1 :]))
        host = text[:colon]
    if len(host.encode("utf-8", errors="surrogateescape")) > 255:
        raise CorefileError(f"specified zone is too long: {len(host.encode())} > 255")
    if not is_domain_name(host):
        raise CorefileError(f"zone is not a valid domain name: {host}")
    if not _CIDR.fullmatch(host):
        return [host], port  # a bare IP is a name, not a CIDR (Go's ParseCIDR needs /N)
    try:
        network = ipaddress.ip_network(host, strict=False)
    except ValueError:
        return [host], port
    if host[0] == ":" or (host[0] == "0" and ":" in host):
        raise CorefileError(f"invalid CIDR {host}")
    return reverse_zones(network), port


def reverse_zones(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
    """The reverse zones covering a network: whole octets (v4) or nibbles (v6).

    A prefix off the boundary expands into every zone one boundary down
    (10.0.0.0/17 -> 128 /24 zones), as CoreDNS's cidr.Split does.
    """
    step = 8 if network.version == 4 else 4
    boundary = -(-network.prefixlen // step) * step
    subnets = [network] if boundary == network.prefixlen else network.subnets(new_prefix=boundary)
    zones: list[str] = []
    for subnet in subnets:
        labels = subnet.network_address.reverse_pointer.split(".")
        # reverse_pointer names the full address: drop the labels below the prefix.
        drop = (network.max_prefixlen - boundary) // step
        zones.append(".".join(labels[drop:]) + ".")
    return zones


def inspect_key(key: str, dns_port: int) -> list[ZoneAddr]:
    """A block key to the zone addresses it serves; raises with CoreDNS's message."""
    transport, rest = split_transport(key)
    hosts, port = split_host_port(rest)
    for host in hosts:
        split_host_port(fqdn(host))  # fqdn can push a name over the limits
    if port == "":
        port = str(dns_port) if transport == DNS else DEFAULT_PORTS.get(transport, "")
    return [ZoneAddr(transport, fqdn(host).lower(), port) for host in hosts]


def normalize_exact(text: str) -> list[str]:
    """``plugin.Host(x).NormalizeExact()``: lower-cased FQDN zone(s); [] if invalid."""
    _, rest = split_transport(text)
    try:
        hosts, _ = split_host_port(rest)
    except CorefileError:
        return []
    return [fqdn(h).lower() for h in hosts]


def origins(args: Sequence[str], keys: Iterable[str]) -> list[str]:
    """Zones from a plugin's arguments, else the block's keys (OriginsFromArgsOrServerBlock).

    Invalid arguments are dropped silently, as CoreDNS does.
    """
    if not args:
        return [normalize_exact(k)[0] for k in keys if normalize_exact(k)]
    zones: list[str] = []
    for arg in args:
        zones.extend(normalize_exact(arg))
    return zones


def is_reverse(zone: str) -> bool:
    """dnsutil.IsReverse: strictly below in-addr.arpa. or ip6.arpa."""
    return zone.endswith(".in-addr.arpa.") or zone.endswith(".ip6.arpa.")


def is_sub_domain(parent: str, child: str) -> bool:
    """Whether ``child`` is ``parent`` or below it (both FQDN, case-insensitive)."""
    parent, child = parent.lower(), child.lower()
    return parent == "." or child == parent or child.endswith("." + parent)
