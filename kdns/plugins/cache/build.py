"""The ``cache`` plugin in the chain: a response cache around the upstream."""

from __future__ import annotations

from kdns.dns import metrics
from kdns.plugins.cache.setup import CacheConfig
from kdns.plugins.context import BuildContext
from kdns.query.chain import Cache, Upstream


def cache(config: CacheConfig, downstream: Upstream | None, server: str) -> Cache:
    from kdns.plugins.cache import respcache

    forward_to = downstream.forward if downstream is not None else None
    return respcache.ResponseCache(
        config, registry=metrics.REGISTRY, downstream=forward_to, server=server
    )


def build(ctx: BuildContext) -> None:
    """The block's cache around the upstream ``forward`` built before it."""
    config = ctx.block.get(CacheConfig)
    if config is not None:
        ctx.chain.cache = cache(config, ctx.chain.upstream, ctx.server)
