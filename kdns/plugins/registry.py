"""Directive parsers by name: the setup step of each implemented directive.

Other modules add theirs with ``register`` (``envinject``, ``clusterip``); until then
those directives' tokens are kept raw so the Corefile still loads.
"""

from __future__ import annotations

from kdns.corefile.setup import ParseFunc, SetupContext
from kdns.plugins import listeners, simple
from kdns.plugins.bind import setup as bind
from kdns.plugins.cache import setup as cache
from kdns.plugins.debug_endpoints import setup as debug_endpoints
from kdns.plugins.errors import setup as errors
from kdns.plugins.forward import setup as forward
from kdns.plugins.hosts import setup as hosts
from kdns.plugins.kubernetes import setup as kubernetes
from kdns.plugins.log import setup as log
from kdns.plugins.reload import setup as reload
from kdns.plugins.template import setup as template

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
