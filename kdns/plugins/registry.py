"""Every directive kdns implements, in plugin.cfg order: its setup and what it builds.

A directive's name is its folder: ``kdns/plugins/<name>/setup.py`` reads its Corefile
syntax into a config type, the implementation sits beside it, and
``Corefile.compat/<name>.md`` documents it. ``build`` names what turns the config into a
piece of a server block's chain (None when the plugin acts elsewhere: a listener, the
lifecycle, the cluster source). The order of action is :data:`directives.ORDER`, never
a Corefile's order.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from kdns.corefile import directives
from kdns.corefile.setup import ParseFunc, SetupContext
from kdns.plugins import context
from kdns.plugins.acl import setup as acl
from kdns.plugins.autopath import setup as autopath
from kdns.plugins.bind import setup as bind
from kdns.plugins.cache import setup as cache
from kdns.plugins.clusterip import setup as clusterip
from kdns.plugins.debug import setup as debug
from kdns.plugins.debug_endpoints import setup as debug_endpoints
from kdns.plugins.envinject import setup as envinject
from kdns.plugins.errors import setup as errors
from kdns.plugins.forward import setup as forward
from kdns.plugins.health import setup as health
from kdns.plugins.hosts import setup as hosts
from kdns.plugins.kubernetes import setup as kubernetes
from kdns.plugins.loadbalance import setup as loadbalance
from kdns.plugins.log import setup as log
from kdns.plugins.loop import setup as loop
from kdns.plugins.manifests import setup as manifests
from kdns.plugins.prometheus import setup as prometheus
from kdns.plugins.ready import setup as ready
from kdns.plugins.reload import setup as reload
from kdns.plugins.rewrite import setup as rewrite
from kdns.plugins.template import setup as template
from kdns.plugins.tls import setup as tls
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


def _lazy(plugin: str, name: str) -> context.Build:
    """``kdns.plugins.<plugin>.build.<name>``, imported at its first call: a directive's
    build pulls in its implementation (rewrite's rules, acl's matcher, template's
    regexes, ...), which a server whose Corefile does not name it never needs (~0.45 MiB
    of modules for the directives ``kdns serve`` does not use). Its ``__module__`` is
    the build module's, as the eager reference's was."""
    module = f"kdns.plugins.{plugin}.build"

    def call(ctx: context.BuildContext) -> None:
        getattr(importlib.import_module(module), name)(ctx)

    call.__module__, call.__name__, call.__qualname__ = module, name, name
    return call


_SERVER = "kdns.server (planner/lifecycle)"
_ALL = (
    Plugin(
        "kubernetes", kubernetes.parse, None, "source",
        built_by=f"{_SERVER}: the cluster source (kdns.cluster) is shared by the blocks "
        "and reloads that read the same API server",
    ),
    Plugin("forward", forward.parse, _lazy("forward", "build")),
    Plugin("cache", cache.parse, _lazy("cache", "build")),
    Plugin("errors", errors.parse, _lazy("errors", "build")),  # kdns.query.chain writes the line
    Plugin("log", log.parse, _lazy("log", "build")),
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
    Plugin("rewrite", rewrite.parse, _lazy("rewrite", "build"), "stage"),
    Plugin(
        "autopath", autopath.parse, _lazy("autopath", "build"), "stage",
        _lazy("autopath", "check_block"),
    ),
    Plugin("acl", acl.parse, _lazy("acl", "build"), "stage", _lazy("acl", "check_block")),
    Plugin("hosts", hosts.parse, _lazy("hosts", "build")),
    Plugin(
        "tls", tls.parse, None, "listener",
        built_by=f"{_SERVER}: the certificate of the block's tls:// (DoT) or https:// (DoH) "
        "listener (kdns.server.encrypted), reloaded when its files change",
    ),
    Plugin("template", template.parse, _lazy("template", "build")),
    Plugin(
        "bind", bind.parse, None, "listener",
        built_by=f"{_SERVER}: it names the addresses a block's listeners open",
    ),
    Plugin("whoami", whoami.parse_whoami, _lazy("whoami", "build")),
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
