"""``hosts [FILE [ZONES...]] { INLINE...; ttl; no_reverse; reload; fallthrough }``.

Lines in the block that are not options are inline /etc/hosts entries, but only *before*
``fallthrough``: after it CoreDNS reports them as ``unknown property``. A missing file is
a warning, not an error (k3s's NodeHosts may not exist yet).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile import goparse, keys
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.errors import CorefileError
from kdns.corefile.setup import SetupContext, fall_zones, no_args, once

DEFAULT_PATH = "/etc/hosts"


@dataclass(frozen=True, slots=True)
class HostsConfig:
    NAME: ClassVar[str] = "hosts"

    path: str
    zones: tuple[str, ...]
    inline: tuple[str, ...] = ()  # "IP NAME..." lines, as written
    ttl: int = 3600
    reload: float = 5.0  # 0: never re-read the file
    no_reverse: bool = False
    fallthrough: tuple[str, ...] = ()
    fallthrough_unsupported: bool = False


def parse(d: Dispenser, ctx: SetupContext) -> list[HostsConfig]:
    config: HostsConfig | None = None
    for _ in once(d):
        config = _stanza(d, ctx)
    assert config is not None
    return [config]


def _stanza(d: Dispenser, ctx: SetupContext) -> HostsConfig:
    args = d.remaining_args()
    path = DEFAULT_PATH
    if args:
        path, args = args[0], args[1:]
        if not os.path.exists(path):
            ctx.warn("hosts", f"File does not exist: {path}")
        elif os.path.isdir(path):
            ctx.warn("hosts", f'Hosts file "{path}" is a directory')
    zones = tuple(keys.origins(args, ctx.keys))
    inline: list[str] = []
    opts: dict[str, object] = {}
    fall: tuple[str, ...] = ()
    while d.next_block():
        option = d.val()
        if option == "fallthrough":
            fall = fall_zones(d.remaining_args())
        elif option == "fallthrough_unsupported":
            no_args(d)
            opts["fallthrough_unsupported"] = True
        elif option == "no_reverse":
            no_args(d)
            opts["no_reverse"] = True
        elif option == "ttl":
            ttl_args = d.remaining_args()
            if not ttl_args:
                raise d.err("ttl needs a time in second")
            try:
                ttl = goparse.atoi(ttl_args[0])
            except CorefileError:
                raise d.err("ttl needs a number of second") from None
            if not 0 < ttl <= 65535:
                raise d.err("ttl provided is invalid")
            opts["ttl"] = ttl
        elif option == "reload":
            reload_args = d.remaining_args()
            if len(reload_args) != 1:
                raise d.err("reload needs a duration (zero seconds to disable)")
            try:
                reload = goparse.parse_duration(reload_args[0])
            except CorefileError:
                raise d.err(f"invalid duration for reload '{reload_args[0]}'") from None
            if reload < 0:
                raise d.err(f"invalid negative duration for reload '{reload_args[0]}'")
            opts["reload"] = reload
        elif not fall:
            inline.append(" ".join([option, *d.remaining_args()]))
        else:
            raise d.err(f"unknown property '{option}'")
    return HostsConfig(
        path=path,
        zones=zones,
        inline=tuple(inline),
        fallthrough=fall,
        **opts,  # type: ignore[arg-type]
    )
