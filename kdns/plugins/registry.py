"""Every directive kdns implements, in plugin.cfg order: its setup and what it builds.

A directive's name is its folder: ``kdns/plugins/<name>/setup.py`` reads its Corefile
syntax into a config type, the implementation sits beside it, and
``Corefile.compat/<name>.md`` documents it. ``build`` names what turns the config into a
piece of a server block's chain (None when the plugin acts elsewhere: a listener, the
lifecycle, the cluster source). The order of action is :data:`directives.ORDER`, never
a Corefile's order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kdns.corefile import directives
from kdns.corefile.setup import ParseFunc, SetupContext
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
from kdns.plugins.whoami import setup as whoami
from kdns.plugins.whoami import whoami as whoami_impl

__all__ = ["PARSERS", "PLUGINS", "ParseFunc", "Plugin", "SetupContext", "register"]


@dataclass(frozen=True, slots=True)
class Plugin:
    name: str
    setup: ParseFunc  # Corefile tokens -> config objects (kdns/plugins/<name>/setup.py)
    build: Callable[..., Any] | None = None  # config -> the block's chain piece
    where: str = "chain"  # where it acts: chain, listener, lifecycle, source, webhook


_ALL = (
    Plugin("kubernetes", kubernetes.parse, None, "source"),  # answers: kdns.cluster.table
    Plugin("forward", forward.parse, forward_build.upstream),
    Plugin("cache", cache.parse, cache_build.cache),
    Plugin("errors", errors.parse),  # its line is written by kdns.query.chain
    Plugin("log", log.parse, log_build.querylog),
    Plugin("health", health.parse_health, None, "listener"),
    Plugin("ready", ready.parse_ready, None, "listener"),
    Plugin("prometheus", prometheus.parse_prometheus, None, "listener"),
    Plugin("loop", loop.parse_loop, None, "lifecycle"),  # kdns.plugins.loop.probe
    Plugin("reload", reload.parse, None, "lifecycle"),
    Plugin("loadbalance", loadbalance.parse_loadbalance, None, "source"),  # shuffles in table
    Plugin("rewrite", rewrite.parse, rewrite_build.rewrite),
    Plugin("autopath", autopath.parse, autopath_build.autopath),
    Plugin("acl", acl.parse, acl_build.acl),
    Plugin("hosts", hosts.parse, hosts_build.hosts_source),
    Plugin("template", template.parse, template_build.template_source),
    Plugin("bind", bind.parse, None, "listener"),
    Plugin("whoami", whoami.parse_whoami, whoami_impl.whoami_answer),
    Plugin("manifests", manifests.parse_manifests, None, "source"),
    Plugin("envinject", envinject.parse, envinject.config, "webhook"),
    Plugin("clusterip", clusterip.parse, clusterip.config, "webhook"),
    Plugin("debug_endpoints", debug_endpoints.parse, None, "listener"),
    Plugin("debug", debug.parse, None, "lifecycle"),  # kdns.plugins.debug.build
)

PLUGINS: dict[str, Plugin] = {
    p.name: p for p in sorted(_ALL, key=lambda p: directives.ORDER.index(p.name))
}

PARSERS: dict[str, ParseFunc] = {name: p.setup for name, p in PLUGINS.items()}


def register(name: str, parse: ParseFunc) -> None:
    """Install the parser of a directive implemented outside kdns.plugins (tests, extensions)."""
    PARSERS[name] = parse
