"""Every directive kdns implements, in plugin.cfg order: its setup and what it builds.

A directive's name is its folder: ``kdns/plugins/<name>/setup.py`` reads its Corefile
syntax into a config type, the implementation sits beside it, and
``Corefile.compat/<name>.md`` documents it. ``build`` names what turns the config into a
piece of a server block's chain (None when the plugin acts elsewhere: a listener, the
lifecycle, the cluster source). The order of action is :data:`directives.ORDER`, never
a Corefile's order.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdns.corefile import directives
from kdns.corefile.setup import ParseFunc, SetupContext
from kdns.plugins import context
from kdns.plugins.acl import build as acl_build
from kdns.plugins.acl import setup as acl
from kdns.plugins.autopath import build as autopath_build
from kdns.plugins.autopath import setup as autopath
from kdns.plugins.bind import setup as bind
from kdns.plugins.cache import build as cache_build
from kdns.plugins.cache import setup as cache
from kdns.plugins.clusterip import setup as clusterip
from kdns.plugins.debug import setup as debug
from kdns.plugins.debug_endpoints import setup as debug_endpoints
from kdns.plugins.envinject import setup as envinject
from kdns.plugins.errors import build as errors_build
from kdns.plugins.errors import setup as errors
from kdns.plugins.forward import build as forward_build
from kdns.plugins.forward import setup as forward
from kdns.plugins.health import setup as health
from kdns.plugins.hosts import build as hosts_build
from kdns.plugins.hosts import setup as hosts
from kdns.plugins.kubernetes import setup as kubernetes
from kdns.plugins.loadbalance import setup as loadbalance
from kdns.plugins.log import build as log_build
from kdns.plugins.log import setup as log
from kdns.plugins.loop import setup as loop
from kdns.plugins.manifests import setup as manifests
from kdns.plugins.prometheus import setup as prometheus
from kdns.plugins.ready import setup as ready
from kdns.plugins.reload import setup as reload
from kdns.plugins.rewrite import build as rewrite_build
from kdns.plugins.rewrite import setup as rewrite
from kdns.plugins.template import build as template_build
from kdns.plugins.template import setup as template
from kdns.plugins.tls import setup as tls
from kdns.plugins.whoami import build as whoami_build
from kdns.plugins.whoami import setup as whoami

__all__ = ["PARSERS", "PLUGINS", "ParseFunc", "Plugin", "SetupContext", "register"]


@dataclass(frozen=True, slots=True)
class Plugin:
    """One directive: how its Corefile lines are read, and how it joins a server block.

    ``where`` says when ``build`` runs: ``chain``, once per server block (the piece is
    shared by every listener the block is on); ``stage``, once per listener's chain (it
    reads that chain's cluster source); ``check`` runs with the block's chain pieces, at
    planning, to refuse a Corefile early. The other places (listener, lifecycle, source,
    webhook) have no ``build`` here: ``built_by`` names what builds them and why.
    """

    name: str
    setup: ParseFunc  # Corefile tokens -> config objects (kdns/plugins/<name>/setup.py)
    build: context.Build | None = None  # sets its piece on ctx.chain
    where: str = "chain"  # chain, stage, listener, lifecycle, source, webhook
    check: context.Build | None = None  # raises CorefileError on a block it cannot serve
    built_by: str = ""  # when build is None: where kdns builds it, and why there


_SERVER = "kdns.server (planner/lifecycle)"
_ALL = (
    Plugin(
        "kubernetes", kubernetes.parse, None, "source",
        built_by=f"{_SERVER}: the cluster source (kdns.cluster) is shared by the blocks "
        "and reloads that read the same API server",
    ),
    Plugin("forward", forward.parse, forward_build.build),
    Plugin("cache", cache.parse, cache_build.build),
    Plugin("errors", errors.parse, errors_build.build),  # kdns.query.chain writes the line
    Plugin("log", log.parse, log_build.build),
    Plugin(
        "health", health.parse_health, None, "listener",
        built_by=f"{_SERVER}: one HTTP listener for the process, up through reloads",
    ),
    Plugin(
        "ready", ready.parse_ready, None, "listener",
        built_by=f"{_SERVER}: an HTTP listener reporting every block's cluster source",
    ),
    Plugin(
        "prometheus", prometheus.parse_prometheus, None, "listener",
        built_by=f"{_SERVER}: HTTP listeners on kdns's one metrics registry",
    ),
    Plugin(
        "loop", loop.parse_loop, None, "lifecycle",
        built_by=f"{_SERVER}: the probe (kdns.plugins.loop.probe) needs the listeners up",
    ),
    Plugin(
        "reload", reload.parse, None, "lifecycle",
        built_by=f"{_SERVER}: it replaces the whole configuration",
    ),
    Plugin(
        "loadbalance", loadbalance.parse_loadbalance, None, "source",
        built_by=f"{_SERVER}: a flag of the cluster table, which shuffles its answers",
    ),
    Plugin("rewrite", rewrite.parse, rewrite_build.build, "stage"),
    Plugin("autopath", autopath.parse, autopath_build.build, "stage", autopath_build.check_block),
    Plugin("acl", acl.parse, acl_build.build, "stage", acl_build.check_block),
    Plugin("hosts", hosts.parse, hosts_build.build),
    Plugin(
        "tls", tls.parse, None, "listener",
        built_by=f"{_SERVER}: the certificate of the block's tls:// (DoT) or https:// (DoH) "
        "listener (kdns.server.encrypted), reloaded when its files change",
    ),
    Plugin("template", template.parse, template_build.build),
    Plugin(
        "bind", bind.parse, None, "listener",
        built_by=f"{_SERVER}: it names the addresses a block's listeners open",
    ),
    Plugin("whoami", whoami.parse_whoami, whoami_build.build),
    Plugin(
        "manifests", manifests.parse_manifests, None, "source",
        built_by=f"{_SERVER}: a folder read by the kubernetes cluster source",
    ),
    Plugin(
        "envinject", envinject.parse, None, "webhook",
        built_by=f"{_SERVER}: an HTTPS listener over the block's cluster source",
    ),
    Plugin(
        "clusterip", clusterip.parse, None, "webhook",
        built_by=f"{_SERVER}: served by envinject's listener, on the cluster source",
    ),
    Plugin(
        "debug_endpoints", debug_endpoints.parse, None, "listener",
        built_by=f"{_SERVER}: one HTTP listener for the process",
    ),
    Plugin(
        "debug", debug.parse, None, "lifecycle",
        built_by=f"{_SERVER}: the process's log level (kdns.plugins.debug.build)",
    ),
)  # fmt: skip

PLUGINS: dict[str, Plugin] = {
    p.name: p for p in sorted(_ALL, key=lambda p: directives.ORDER.index(p.name))
}

PARSERS: dict[str, ParseFunc] = {name: p.setup for name, p in PLUGINS.items()}


def register(name: str, parse: ParseFunc) -> None:
    """Install the parser of a directive implemented outside kdns.plugins (tests, extensions)."""
    PARSERS[name] = parse
