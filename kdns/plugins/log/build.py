"""The ``log`` plugin in the chain: a query log line per answer."""

from __future__ import annotations

from kdns.plugins.context import BuildContext
from kdns.plugins.log.setup import LogConfig
from kdns.query.chain import QueryLog
from kdns.query.handler import Query


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


def build(ctx: BuildContext) -> None:
    config = ctx.block.get(LogConfig)
    if config is not None:
        ctx.chain.querylog = querylog(config)
