"""Adapters from Corefile directive configs to the pipeline's plugin interfaces.

Each plugin module keeps an API natural to its job (``Hosts.lookup(qname, qtype)``,
``ResponseCache.get(...)``); the pipeline wants a handful of small protocols taking a
:class:`kdns.handler.Query`. The glue lives here so neither side bends to the other.
"""

from __future__ import annotations

from typing import Any

from kdns import metrics, wire
from kdns.corefile.plugins.cache import CacheConfig
from kdns.corefile.plugins.forward import ForwardConfig
from kdns.corefile.plugins.hosts import HostsConfig
from kdns.corefile.plugins.log import LogConfig
from kdns.corefile.plugins.template import TemplateConfig
from kdns.handler import Query
from kdns.pipeline import AnswerSource, Cache, QueryLog, Upstream


class _HostsSource:
    def __init__(self, config: HostsConfig) -> None:
        from kdns import hosts

        self.hosts = hosts.Hosts(config, registry=metrics.REGISTRY)

    def answer(self, q: Query) -> wire.Answer | None:
        return self.hosts.lookup(q.qname, q.qtype)

    async def run(self) -> None:
        await self.hosts.run()


class _TemplateSource:
    def __init__(self, config: TemplateConfig) -> None:
        from kdns import template

        self.templates = template.Templates(config, registry=metrics.REGISTRY)

    def answer(self, q: Query) -> wire.Answer | None:
        return self.templates.match(q.qname, q.qtype, q.qclass, q.remote[0])


def hosts_source(config: HostsConfig) -> AnswerSource:
    return _HostsSource(config)


def template_source(config: TemplateConfig) -> AnswerSource:
    return _TemplateSource(config)


def forwarder(config: ForwardConfig) -> Upstream:
    from kdns import forward

    fwd: Any = forward.Forwarder(config, registry=metrics.REGISTRY)
    return fwd  # type: ignore[no-any-return]


class _Cache:
    def __init__(self, config: CacheConfig) -> None:
        from kdns import respcache

        self.cache = respcache.ResponseCache(config, registry=metrics.REGISTRY)

    def get(self, q: Query) -> bytes | None:
        found: bytes | None = self.cache.get(q.raw, q.qname, q.qtype, q.do, bool(q.cd))
        return found

    def put(self, q: Query, response: bytes) -> None:
        self.cache.put(q.raw, response, q.qname, q.qtype, q.do, bool(q.cd))


def cache(config: CacheConfig) -> Cache:
    return _Cache(config)


class _QueryLog:
    def __init__(self, config: LogConfig) -> None:
        from kdns import querylog

        self.querylog = querylog.QueryLog(config)

    def log(self, q: Query, response: bytes, seconds: float) -> None:
        from kdns import querylog

        rule = self.querylog.rule_for(q.qname)
        if rule is None:
            return
        proto = "tcp" if q.tcp else "udp"
        fields = querylog.fields_from_wire(q.raw, response, q.remote, "", proto, seconds)
        if fields is not None:
            self.querylog.write(rule, fields, response)


def querylog(config: LogConfig) -> QueryLog:
    return _QueryLog(config)
