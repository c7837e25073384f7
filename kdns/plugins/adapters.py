"""Adapters from Corefile directive configs to the pipeline's plugin interfaces.

Each plugin module keeps an API natural to its job (``Hosts.lookup(qname, qtype)``,
``ResponseCache.get(...)``); the pipeline wants a handful of small protocols taking a
:class:`kdns.query.handler.Query`. The glue lives here so neither side bends to the other.
"""

from __future__ import annotations

from collections.abc import Sequence

from kdns.dns import metrics, wire
from kdns.plugins.cache.setup import CacheConfig
from kdns.plugins.forward.setup import ForwardConfig
from kdns.plugins.hosts.setup import HostsConfig
from kdns.plugins.log.setup import LogConfig
from kdns.plugins.template.setup import TemplateConfig
from kdns.query.chain import AnswerSource, Cache, QueryLog, Upstream
from kdns.query.handler import Query


class _HostsSource:
    def __init__(self, config: HostsConfig) -> None:
        from kdns.plugins.hosts import hosts

        self.hosts = hosts.Hosts(config, registry=metrics.REGISTRY)

    def answer(self, q: Query) -> wire.Answer | None:
        return self.hosts.lookup(q.qname, q.qtype)

    def names(self) -> set[str]:
        return self.hosts.names()

    async def run(self) -> None:
        await self.hosts.run()


class _TemplateSource:
    def __init__(self, config: TemplateConfig) -> None:
        from kdns.plugins.template import template

        self.templates = template.Templates(config, registry=metrics.REGISTRY)
        self.zones = tuple(z for t in config.templates for z in t.zones)

    def answer(self, q: Query) -> wire.Answer | None:
        return self.templates.match(q.qname, q.qtype, q.qclass, q.remote[0])


def hosts_source(config: HostsConfig) -> AnswerSource:
    return _HostsSource(config)


def template_source(config: TemplateConfig) -> AnswerSource:
    return _TemplateSource(config)


def upstream(configs: Sequence[ForwardConfig]) -> Upstream:
    """A block's forward stanzas as one chain (``next RCODE`` hands over between them)."""
    from kdns.plugins.forward import forward

    chain = forward.Chain([forward.Forwarder(c, registry=metrics.REGISTRY) for c in configs])
    return chain


def cache(config: CacheConfig, downstream: Upstream | None, server: str) -> Cache:
    from kdns.plugins.cache import respcache

    forward_to = downstream.forward if downstream is not None else None
    return respcache.ResponseCache(
        config, registry=metrics.REGISTRY, downstream=forward_to, server=server
    )


class _QueryLog:
    def __init__(self, config: LogConfig) -> None:
        from kdns.plugins.log import querylog

        self.querylog = querylog.QueryLog(config)

    def log(self, q: Query, response: bytes, seconds: float) -> None:
        from kdns.plugins.log import querylog

        rule = self.querylog.rule_for(q.qname)
        if rule is None:
            return
        proto = "tcp" if q.tcp else "udp"
        fields = querylog.fields_from_wire(q.raw, response, q.remote, "", proto, seconds)
        if fields is not None:
            self.querylog.write(rule, fields, response)


def querylog(config: LogConfig) -> QueryLog:
    return _QueryLog(config)
