"""Directive parsers by name: the setup step of each implemented directive.

Other modules add theirs with ``register`` (``envinject``, ``clusterip``); until then
those directives' tokens are kept raw so the Corefile still loads.
"""

from __future__ import annotations

from kdns.corefile.plugins import (
    bind,
    cache,
    debug_endpoints,
    errors,
    forward,
    hosts,
    kubernetes,
    listeners,
    log,
    reload,
    simple,
    template,
)
from kdns.corefile.plugins.common import ParseFunc, SetupContext

__all__ = ["PARSERS", "ParseFunc", "SetupContext", "register"]

PARSERS: dict[str, ParseFunc] = {
    "kubernetes": kubernetes.parse,
    "forward": forward.parse,
    "cache": cache.parse,
    "errors": errors.parse,
    "log": log.parse,
    "health": listeners.parse_health,
    "ready": listeners.parse_ready,
    "prometheus": listeners.parse_prometheus,
    "loop": simple.parse_loop,
    "reload": reload.parse,
    "loadbalance": simple.parse_loadbalance,
    "hosts": hosts.parse,
    "template": template.parse,
    "bind": bind.parse,
    "whoami": simple.parse_whoami,
    "manifests": simple.parse_manifests,
    "envinject": simple.raw("envinject"),
    "clusterip": simple.raw("clusterip"),
    "debug_endpoints": debug_endpoints.parse,
}


def register(name: str, parse: ParseFunc) -> None:
    """Install the parser of a kdns directive implemented outside this package."""
    PARSERS[name] = parse
