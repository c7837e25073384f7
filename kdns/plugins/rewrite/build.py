"""The ``rewrite`` plugin in a block's chain: every ``rewrite`` line is one rule."""

from __future__ import annotations

from collections.abc import Sequence

from kdns.plugins.context import BuildContext
from kdns.plugins.rewrite.rewrite import Rewrite
from kdns.plugins.rewrite.setup import RewriteConfig


def rewrite(configs: Sequence[RewriteConfig]) -> Rewrite | None:
    """The block's rules in file order, as CoreDNS keeps them in one instance."""
    if not configs:
        return None
    return Rewrite(RewriteConfig(tuple(r for c in configs for r in c.rules)))


def build(ctx: BuildContext) -> None:
    ctx.chain.rewrite = rewrite(ctx.block.all(RewriteConfig))
