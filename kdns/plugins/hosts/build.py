"""The ``hosts`` plugin in the chain: its table as an answer source."""

from __future__ import annotations

from kdns.dns import metrics, wire
from kdns.plugins.context import BuildContext
from kdns.plugins.hosts.setup import HostsConfig
from kdns.query.chain import AnswerSource
from kdns.query.handler import Query


class _HostsSource:
    def __init__(self, config: HostsConfig) -> None:
        from kdns.plugins.hosts import hosts

        self.hosts = hosts.Hosts(config, registry=metrics.REGISTRY)

    def answer(self, q: Query) -> wire.Answer | None:
        return self.hosts.lookup(q.qname, q.qtype)

    def names(self) -> set[str]:
        return self.hosts.names()

    def passes(self, zone: str) -> bool:
        return self.hosts.passes(zone)

    async def run(self) -> None:
        await self.hosts.run()


def hosts_source(config: HostsConfig) -> AnswerSource:
    return _HostsSource(config)


def build(ctx: BuildContext) -> None:
    """The hosts table, ahead of the answer sources after it in plugin.cfg."""
    config = ctx.block.get(HostsConfig)
    if config is not None:
        ctx.chain.sources.insert(0, ("hosts", hosts_source(config)))
