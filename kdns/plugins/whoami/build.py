"""The ``whoami`` plugin in the chain: its responder, when the block has the directive."""

from __future__ import annotations

from kdns.plugins.context import BuildContext
from kdns.plugins.whoami import whoami


def build(ctx: BuildContext) -> None:
    if ctx.block.has("whoami"):
        ctx.chain.whoami = whoami.whoami_answer
