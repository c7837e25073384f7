"""The ``acl`` plugin in a block's chain, and the checks ``isolate`` makes at startup."""

from __future__ import annotations

from collections.abc import Sequence

from kdns.corefile.errors import CorefileError
from kdns.plugins.acl.acl import Acl
from kdns.plugins.acl.setup import AclConfig
from kdns.plugins.context import BuildContext
from kdns.query.chain import Kube


def check(configs: Sequence[AclConfig], pods: str | None, api_source: bool) -> None:
    """``isolate`` knows clients by their pod address: it needs the block's kubernetes
    plugin (``pods``: its mode, None without one) and, reading an API server, ``pods
    verified`` (a manifests folder always holds its pods)."""
    if not any(rule.isolation is not None for c in configs for rule in c.rules):
        return
    if pods is None:
        raise CorefileError("plugin/acl: isolate needs kubernetes in the same server block")
    if api_source and pods != "verified":
        raise CorefileError(
            "plugin/acl: isolate knows clients by their pod IP: it needs "
            "'pods verified' in the kubernetes plugin"
        )


def acl(configs: Sequence[AclConfig], kube: Kube | None) -> Acl | None:
    """Every ``acl`` stanza of the block, in file order; isolate reads ``kube``'s store."""
    if not configs:
        return None
    found = Acl(AclConfig(tuple(r for c in configs for r in c.rules)))
    if kube is not None:
        found.bind(kube.table, kube.zones)
    return found


def build(ctx: BuildContext) -> None:
    """The block's acl for one listener's chain: isolate reads its cluster source."""
    ctx.chain.acl = acl(ctx.block.all(AclConfig), ctx.chain.kube)


def check_block(ctx: BuildContext) -> None:
    check(ctx.block.all(AclConfig), ctx.pods, ctx.api_source)
