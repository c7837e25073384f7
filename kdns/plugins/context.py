"""What a plugin's ``build`` and ``check`` receive from the planner.

Every entry of :mod:`kdns.plugins.registry` that puts a piece in a server block's chain
names a ``build(ctx)``: it reads its own configs from ``ctx.block`` and sets its piece on
``ctx.chain`` (a :class:`kdns.query.chain.Block`). The planner calls them from the last
directive of ``plugin.cfg`` to the first, as CoreDNS stacks its chain, so a build may use
the pieces of the plugins after it (``cache`` wraps ``forward``'s upstream).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kdns.corefile import config as cfg
from kdns.query import chain

__all__ = ["Build", "BuildContext"]


@dataclass(slots=True)
class BuildContext:
    block: cfg.Block  # the Corefile server block: its directives' configs
    chain: chain.Block  # the pieces built so far; a build sets its own
    server: str  # the block's first listener as a metrics label, "dns://:53"
    pods: str | None = None  # the block's kubernetes pods mode, None without kubernetes
    api_source: bool = False  # the block's kubernetes reads an API server (not manifests)


Build = Callable[[BuildContext], None]
