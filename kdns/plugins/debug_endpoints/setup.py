"""``debug_endpoints [ADDRESS]``: kdns's inventory for ``kdns explain`` and ``kdns ipam``.

``/debug/kdns/snapshot`` is the whole cache (every Service, selector, label, endpoint
pod name and node name) and ``/debug/kdns/ipam`` the allocator's ranges. DNS alone
reveals none of that (no AXFR, no wildcard), so neither is served unless the operator
asks, and then on loopback by default, like CoreDNS's ``pprof`` (``localhost:6053``):
reach it with ``kubectl port-forward``. An address that is not loopback is allowed,
because the operator said so, and warned about.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile import goparse
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.errors import CorefileError
from kdns.corefile.setup import SetupContext, once

NAME = "debug_endpoints"
DEFAULT_ADDR = "127.0.0.1:6053"
# What ``kdns explain --server`` and ``kdns ipam status --server`` read without a URL:
# the default address, brought to the laptop by ``kubectl port-forward ... 6053``.
DEFAULT_URL = f"http://{DEFAULT_ADDR}"


@dataclass(frozen=True, slots=True)
class DebugEndpointsConfig:
    NAME: ClassVar[str] = NAME

    addr: str = DEFAULT_ADDR


def parse(d: Dispenser, ctx: SetupContext) -> list[DebugEndpointsConfig]:
    config = DebugEndpointsConfig()
    for _ in once(d):
        args = d.remaining_args()
        if len(args) > 1:
            raise d.arg_err()
        addr = args[0] if args else DEFAULT_ADDR
        host = _check(addr)
        if not is_loopback(host):
            ctx.warn(
                NAME,
                f"{addr} is not loopback: anyone who can reach it reads every Service, "
                "label, endpoint pod and node name",
            )
        config = DebugEndpointsConfig(addr)
    return [config]


def _check(addr: str) -> str:
    """``host:port`` with a numeric port, as Go's net.Listen takes it; returns the host."""
    host, port = goparse.split_host_port(addr)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CorefileError(f"address {addr}: invalid port {port!r}")
    return host


def is_loopback(host: str) -> bool:
    """Only loopback addresses and ``localhost`` keep the inventory inside the pod."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
