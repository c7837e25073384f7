"""The ``template`` plugin in the chain: its templates as an answer source."""

from __future__ import annotations

from kdns.dns import metrics, wire
from kdns.plugins.context import BuildContext
from kdns.plugins.template.setup import TemplateConfig
from kdns.query.chain import AnswerSource
from kdns.query.handler import Query


class _TemplateSource:
    def __init__(self, config: TemplateConfig) -> None:
        from kdns.plugins.template import template

        self.templates = template.Templates(config, registry=metrics.REGISTRY)
        self.zones = tuple(z for t in config.templates for z in t.zones)

    def answer(self, q: Query) -> wire.Answer | None:
        return self.templates.match(q.qname, q.qtype, q.qclass, q.remote[0])


def template_source(config: TemplateConfig) -> AnswerSource:
    return _TemplateSource(config)


def build(ctx: BuildContext) -> None:
    """Every template stanza in file order, ahead of the answer sources after it."""
    ctx.chain.sources[:0] = [
        ("template", template_source(c)) for c in ctx.block.all(TemplateConfig)
    ]
