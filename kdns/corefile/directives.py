"""Which directives exist, in which order they act, and which kdns implements.

The order is CoreDNS's ``plugin.cfg`` (master, v1.14.x), never the order of a Corefile:
it decides both the query chain (``prometheus`` before ``errors`` before ``log``...) and
setup order, hence which error a broken Corefile reports first. Every CoreDNS name is
*known*, so a misspelling fails as ``Unknown directive`` exactly as in CoreDNS, while a
real CoreDNS plugin kdns lacks fails with a clear "not supported by kdns" instead.
"""

from __future__ import annotations

COREDNS_ORDER: tuple[str, ...] = (
    "root", "metadata", "geoip", "cancel", "proxyproto", "quic", "grpc_server", "https",
    "https3", "timeouts", "multisocket", "reload", "nsid", "bufsize", "bind", "debug",
    "trace", "ready", "health", "pprof", "shed", "prometheus", "errors", "log", "dnstap",
    "local", "dns64", "any", "chaos", "loadbalance", "tsig", "rewrite", "autopath", "acl",
    "cache", "header", "dnssec", "tls", "minimal", "template", "transfer", "hosts",
    "route53", "azure", "clouddns", "k8s_external", "kubernetes", "file", "auto",
    "secondary", "etcd", "loop", "forward", "grpc", "erratic", "whoami", "on", "sign",
    "view", "nomad",
)  # fmt: skip

# kdns's own directives. ``manifests`` is a data source of ``kubernetes`` and set up right
# after it; ``envinject`` and ``clusterip`` are off the query path, like ``health``.
KDNS_OWN: tuple[str, ...] = ("manifests", "envinject", "clusterip", "debug_endpoints")

ORDER: tuple[str, ...] = (
    COREDNS_ORDER[: COREDNS_ORDER.index("kubernetes") + 1]
    + KDNS_OWN
    + COREDNS_ORDER[COREDNS_ORDER.index("kubernetes") + 1 :]
)

KNOWN: frozenset[str] = frozenset(ORDER)

IMPLEMENTED: frozenset[str] = frozenset(
    {
        "kubernetes", "forward", "cache", "errors", "log", "health", "ready", "prometheus",
        "loop", "reload", "loadbalance", "hosts", "template", "bind", "whoami", "manifests",
        "envinject", "clusterip", "debug_endpoints", "autopath", "debug", "rewrite", "acl",
        "tls",
    }
)  # fmt: skip

# Second occurrence in a block -> "plugin/<name>: this plugin can only be used once per
# Server Block". Others repeat: forward chains, log/template/bind merge, health and
# reload keep their last/first line.
ONCE_PER_BLOCK: frozenset[str] = frozenset(
    {
        "cache", "dnssec", "errors", "grpc", "hosts", "kubernetes", "loop", "prometheus",
        "ready", "nsid", "pprof", "shed", "tsig", "view", "manifests", "debug_endpoints",
    }
)  # fmt: skip

ERR_ONCE = "this plugin can only be used once per Server Block"


def supported_list() -> str:
    """The implemented directives in chain order, for error messages and hints."""
    return ", ".join(d for d in ORDER if d in IMPLEMENTED)


def unsupported_message(name: str) -> str:
    return (
        f"plugin/{name}: directive '{name}' is not supported by kdns "
        f"(supported: {supported_list()})"
    )
