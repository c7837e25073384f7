"""``bind ADDRESS|INTERFACE... { except ADDRESS|INTERFACE... }``: which IPs a block listens on.

All ``bind`` lines of a block merge. Interface names expand to their addresses when the
config is loaded (and again on reload), as CoreDNS does; a name that is neither an IP nor
an interface is an error.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile import goparse
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.errors import CorefileError
from kdns.corefile.setup import SetupContext, stanzas

InterfaceAddrs = Callable[[str], list[str] | None]


@dataclass(frozen=True, slots=True)
class BindConfig:
    NAME: ClassVar[str] = "bind"

    addresses: tuple[str, ...]  # as written, merged over all lines
    excepts: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()  # resolved listen IPs, minus excepts, deduplicated


def parse(d: Dispenser, ctx: SetupContext) -> list[BindConfig]:
    return [parse_with(d, interface_addresses)]


def parse_with(d: Dispenser, lookup: InterfaceAddrs) -> BindConfig:
    """Parse and resolve with an injectable interface lookup (tests, other hosts)."""
    written: list[str] = []
    excepts_written: list[str] = []
    hosts: list[str] = []
    for _ in stanzas(d):
        addrs = d.remaining_args()
        if not addrs:
            raise CorefileError("at least one address or interface name is expected")
        excepts: list[str] = []
        while d.next_block():
            if d.val() != "except":
                raise CorefileError(f'invalid option "{d.val()}"')
            excepts = d.remaining_args()
            if not excepts:
                raise CorefileError("at least one address or interface name is expected")
        ips = _list_ips(addrs, lookup)
        skip = _list_ips(excepts, lookup)
        hosts.extend(ip for ip in ips if ip not in skip and ip not in hosts)
        written.extend(addrs)
        excepts_written.extend(excepts)
    return BindConfig(tuple(written), tuple(excepts_written), tuple(hosts))


def _list_ips(args: list[str], lookup: InterfaceAddrs) -> list[str]:
    out: list[str] = []
    for arg in args:
        found = lookup(arg)
        if found is not None:
            out.extend(found)
        elif goparse.parse_ip(arg) is not None:
            out.append(arg)
        else:
            raise CorefileError(f'not a valid IP address or interface name: "{arg}"')
    return out


def interface_addresses(name: str) -> list[str] | None:
    """The IPs of a network interface, or None when no interface has that name.

    IPv6 link-local addresses get their ``%iface`` zone, as Go's net.Interface.Addrs.
    """
    try:
        names = {n for _, n in socket.if_nameindex()}
    except OSError:
        return None
    if name not in names:
        return None
    addrs: list[str] = []
    v4 = _ipv4_address(name)
    if v4:
        addrs.append(v4)
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 6 and fields[5] == name:
                    raw = bytes.fromhex(fields[0])
                    ip = socket.inet_ntop(socket.AF_INET6, raw)
                    addrs.append(f"{ip}%{name}" if ip.startswith("fe80:") else ip)
    except OSError:
        pass
    return addrs


def _ipv4_address(name: str) -> str | None:
    if os.name != "posix":
        return None
    import fcntl

    siocgifaddr = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), siocgifaddr, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])
