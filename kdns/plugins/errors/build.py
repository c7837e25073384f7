"""The ``errors`` plugin in the chain: a mark read by kdns.query.chain, which writes the line."""

from __future__ import annotations

from kdns.plugins.context import BuildContext


def build(ctx: BuildContext) -> None:
    ctx.chain.errors = ctx.block.has("errors")
