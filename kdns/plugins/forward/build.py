"""The ``forward`` plugin in the chain: a block's forward stanzas as one upstream."""

from __future__ import annotations

from collections.abc import Sequence

from kdns.dns import metrics
from kdns.plugins.context import BuildContext
from kdns.plugins.forward.setup import ForwardConfig
from kdns.query.chain import Upstream


def upstream(configs: Sequence[ForwardConfig]) -> Upstream:
    """A block's forward stanzas as one chain (``next RCODE`` hands over between them)."""
    from kdns.plugins.forward import forward

    chain = forward.Chain([forward.Forwarder(c, registry=metrics.REGISTRY) for c in configs])
    return chain


def build(ctx: BuildContext) -> None:
    """The block's forward stanzas, if any, as its chain's upstream."""
    configs = ctx.block.all(ForwardConfig)
    if configs:
        ctx.chain.upstream = upstream(configs)
