"""The ``autopath`` directive: ``autopath [ZONES...] RESOLV-CONF``.

RESOLV-CONF is a resolv.conf whose ``search`` line is the path every client is assumed
to use, or ``@kubernetes``: the path of the client pod's namespace, as the kubelet writes
it, followed by the ``search`` line of kdns's own ``/etc/resolv.conf`` (CoreDNS reads
the same file at startup). Only the last ``autopath`` line of a block counts, as in
CoreDNS.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile import keys, resolvconf
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.errors import CorefileError
from kdns.corefile.setup import SetupContext
from kdns.dns import names

HOST_RESOLV_CONF = "/etc/resolv.conf"
"""Where ``@kubernetes`` reads the search domains it appends (``KDNS_RESOLV_CONF`` overrides
it, so tests can give kdns a node's resolv.conf without touching the machine's)."""


@dataclass(frozen=True, slots=True)
class AutopathConfig:
    NAME: ClassVar[str] = "autopath"

    zones: tuple[str, ...]  # absolute, lower-case; the block's zones by default
    plugin: str = ""  # "kubernetes" for @kubernetes; "" when search comes from a file
    search: tuple[str, ...] = ()  # absolute domains; for @kubernetes, the host's ones


def parse(d: Dispenser, ctx: SetupContext) -> list[AutopathConfig]:
    found: AutopathConfig | None = None
    while d.next():
        args = d.remaining_args()
        if not args:
            raise d.err("no resolv-conf specified")
        resolv = args[-1]
        zones = tuple(dict.fromkeys(keys.origins(args[:-1], ctx.keys)))
        if resolv.startswith("@"):
            plugin = resolv[1:]
            if plugin != "kubernetes":
                raise d.err(f"{plugin} does not implement the AutoPather interface")
            path = os.environ.get("KDNS_RESOLV_CONF", HOST_RESOLV_CONF)
            try:
                search = resolvconf.read(path).search
            except OSError:
                search = ()  # CoreDNS: no host search domains when the file is unreadable
            found = AutopathConfig(zones, plugin, _absolute(search))
        else:
            try:
                conf = resolvconf.read(resolv)
            except OSError as e:
                raise d.err(f"failed to parse {resolv!r}: {e.strerror}") from None
            found = AutopathConfig(zones, "", _absolute(conf.search))
    if found is None:
        raise CorefileError("no resolv-conf specified")
    return [found]


def _absolute(search: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names.fqdn(s).lower() for s in search if s and s != "."))
