"""The ``autopath`` plugin in a block's chain, and the check CoreDNS makes at startup."""

from __future__ import annotations

from kdns.corefile.errors import CorefileError
from kdns.plugins.autopath.autopath import AutoPath
from kdns.plugins.autopath.setup import AutopathConfig
from kdns.plugins.context import BuildContext
from kdns.query.chain import Kube


def check(config: AutopathConfig | None, pods: str | None) -> None:
    """``autopath @kubernetes`` needs the block's kubernetes plugin (``pods``: its mode,
    None without one) with ``pods verified``: the client's namespace comes from the pod at
    its address."""
    if config is None or config.plugin != "kubernetes":
        return
    if pods is None:
        raise CorefileError("plugin/autopath: @kubernetes: no kubernetes plugin in this block")
    if pods != "verified":
        raise CorefileError(
            "plugin/autopath: kubernetes plugin must have 'pods verified' for "
            "'autopath @kubernetes' (the client pod's namespace picks its search path)"
        )


def autopath(config: AutopathConfig, kube: Kube | None, server: str) -> AutoPath:
    if config.plugin == "kubernetes" and kube is not None:
        return AutoPath(config, server, kube.table.store, kube.zones)
    return AutoPath(config, server)


def build(ctx: BuildContext) -> None:
    """Autopath for one listener's chain: it reads that chain's cluster source."""
    config = ctx.block.get(AutopathConfig)
    if config is not None:
        ctx.chain.autopath = autopath(config, ctx.chain.kube, ctx.server)


def check_block(ctx: BuildContext) -> None:
    check(ctx.block.get(AutopathConfig), ctx.pods)
