"""From configuration to a :class:`kdns.server.plan.Plan`: ``kdns serve`` flags, or a Corefile.

A Corefile's server blocks are grouped by listen address as CoreDNS groups them (one
listener per ``transport://host:port``: UDP+TCP, DoT or DoH, every block on it routed by zone);
each block's directives become the plugins of its chain. Plugin instances belong to
the block, so a block listed on two ports shares one cluster source, cache and
forwarder set, as CoreDNS shares them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from kdns.cluster import resolver
from kdns.corefile import config as cfg
from kdns.corefile.errors import CorefileError
from kdns.dns import names
from kdns.plugins import context, registry
from kdns.plugins.clusterip import setup as clusterip_setup
from kdns.plugins.debug import build as debug_build
from kdns.plugins.debug_endpoints.setup import DebugEndpointsConfig
from kdns.plugins.envinject import setup as envinject_setup
from kdns.plugins.health.setup import HealthConfig
from kdns.plugins.kubernetes.setup import KubernetesConfig
from kdns.plugins.manifests.setup import ManifestsConfig
from kdns.plugins.prometheus import build as prometheus_build
from kdns.plugins.prometheus.setup import PrometheusConfig
from kdns.plugins.ready.setup import ReadyConfig
from kdns.plugins.reload.setup import ReloadConfig
from kdns.plugins.tls.setup import TlsConfig
from kdns.query import chain
from kdns.server.plan import BlockSpec, KubeSpec, ListenAddress, Plan, ServerSpec, Task, WebhookSpec

log = logging.getLogger(__name__)

SERVED_TRANSPORTS = ("dns", "tls", "https")  # UDP+TCP, DoT and DoH listeners


def from_serve(
    manifests: str | None,
    listen: Sequence[ListenAddress],
    settings: resolver.Settings,
    health: ListenAddress | None = None,
    ready: ListenAddress | None = None,
    lameduck: float = 0.0,
    ipam: Any = None,
    api: Any = None,
    snapshot: str | None = None,
) -> Plan:
    """``kdns serve``: one block serving the cluster zones, nothing forwarded."""
    informer = None
    if api is not None and settings.pods == "verified":
        from kdns.cluster.kube.informer import Options

        informer = Options(pods=True)  # pod names answer only from watched Pods
    kube = KubeSpec(
        settings=settings,
        manifests=manifests,
        ipam=ipam,
        api=api,
        snapshot=snapshot,
        informer=informer,
    )
    servers = [
        ServerSpec(
            address=addr,
            label=f"dns://{addr}",
            blocks=[BlockSpec(zones=settings.zones, kube=kube, plugins=("kubernetes",))],
        )
        for addr in listen
    ]
    return Plan(
        servers=servers,
        health=health,
        lameduck=lameduck,
        ready=[ready] if ready is not None else [],
    )


def _settings(kc: KubernetesConfig) -> resolver.Settings:
    return resolver.Settings(
        zones=tuple(names.fqdn(z) for z in dict.fromkeys(kc.zones)),
        ttl=kc.ttl,
        pods=kc.pods,
        endpoint_pod_names=kc.endpoint_pod_names,
        ignore_empty_service=kc.ignore_empty_service,
        namespaces=frozenset(kc.namespaces),
        fallthrough=tuple(names.fqdn(z) for z in kc.fallthrough),
        noendpoints=kc.noendpoints,
        zonal=kc.zonal,
        multicluster=tuple(names.fqdn(z) for z in kc.multicluster),
    )


def _connection(kc: KubernetesConfig) -> Any:
    from kdns.cluster.kube.config import ConnectionOptions

    return ConnectionOptions(
        endpoint=kc.endpoint,
        kubeconfig=kc.kubeconfig,
        context=kc.context,
        in_cluster=kc.endpoint is None and kc.kubeconfig is None,
        # CoreDNS applies tls only to a bare endpoint; the parser warns otherwise.
        tls=kc.tls if kc.endpoint is not None and kc.kubeconfig is None else None,
    )


def _informer_options(kc: KubernetesConfig) -> Any:
    from kdns.cluster.kube.informer import Options

    return Options(
        namespaces=frozenset(kc.namespaces),
        labels=kc.labels,
        namespace_labels=kc.namespace_labels,
        pods=kc.pods == "verified",
        startup_timeout=kc.startup_timeout,
        imports=bool(kc.multicluster),
    )


def upstream_lifetime(upstream: object) -> Task:
    """A root task that starts an upstream (its sockets, health checks) and stops it
    when its generation retires."""

    async def run() -> None:
        start = getattr(upstream, "start", None)
        stop = getattr(upstream, "stop", None)
        if start is not None:
            await start()
        try:
            await asyncio.Event().wait()  # lives as long as its generation
        finally:
            if stop is not None:
                await stop()

    return run


class _BlockBuilder:
    """Sets up one Corefile block's plugins once, for every listener it is on."""

    def __init__(self, block: cfg.Block) -> None:
        self.block = block
        self.kube: KubeSpec | None = None
        self._built: chain.Block | None = None
        kc = block.get(KubernetesConfig)
        self.envinject = envinject_setup.config(block)
        clusterip = clusterip_setup.config(block)
        if kc is not None:
            folder = kc.manifests
            mc = block.get(ManifestsConfig)
            if folder is None and mc is not None:
                folder = mc.dir
            self.kube = KubeSpec(
                settings=_settings(kc),
                manifests=folder,
                api=None if folder is not None else _connection(kc),
                startup_timeout=kc.startup_timeout,
                ipam=clusterip,
                informer=None if folder is not None else _informer_options(kc),
                snapshot=kc.snapshot,
            )
            if folder is None and clusterip is not None and self.envinject is None:
                raise CorefileError(
                    "plugin/clusterip: with an API server, /allocate is served on the "
                    "envinject listener: add envinject to this block"
                )
        elif self.envinject is not None or clusterip is not None:
            raise CorefileError(
                "plugin/envinject: envinject and clusterip need kubernetes in the same block"
            )
        self.label = _block_label(block)
        # The pieces every listener of the block shares, built from the last directive
        # of plugin.cfg to the first (kdns.plugins.context); build() adds the stages.
        self.shared = context.BuildContext(
            block,
            chain.Block(zones=()),
            self.label,
            pods=kc.pods if kc is not None else None,
            api_source=self.kube is not None and self.kube.manifests is None,
        )
        used = [registry.PLUGINS[n] for n in registry.PLUGINS if block.has(n)]
        for plugin in used:
            if plugin.check is not None:
                plugin.check(self.shared)
        for plugin in reversed(used):
            if plugin.where == "chain" and plugin.build is not None:
                plugin.build(self.shared)
        self._stages = [p.build for p in used if p.where == "stage" and p.build is not None]
        self.sources = self.shared.chain.sources
        self.upstream = self.shared.chain.upstream
        self.querylog = self.shared.chain.querylog

    @property
    def fast_ok(self) -> bool:
        """Whether cluster names may skip the plugins that act before ``kubernetes``.

        Query logging needs every query. A template whose zones reach into the cluster
        zones, a hosts entry for a cluster name, or hosts covering the cluster zone
        without ``fallthrough`` could answer first; otherwise (AKS's templates, k3s's
        NodeHosts) they never see a cluster name, and the fast path answers it exactly as
        the chain would. With autopath only answers with records take the fast path
        (``handler.FastRoute.positive_only``).
        """
        if self.querylog is not None:
            return False
        if self.block.has("rewrite") or self.block.has("acl"):
            return False  # they see every query
        kube_zones = self.kube.settings.zones if self.kube is not None else ()

        def overlaps(zone: str) -> bool:
            return any(
                names.is_subdomain(kz, zone) or names.is_subdomain(zone, kz) for kz in kube_zones
            )

        for plugin, source in self.sources:
            if plugin == "template":
                zones: tuple[str, ...] = getattr(source, "zones", (".",))
                if any(overlaps(names.fqdn(z)) for z in zones):
                    return False
            elif plugin == "hosts":
                names_of = getattr(source, "names", None)
                known: set[str] = names_of() if names_of is not None else {"."}
                if any(names.is_subdomain(names.fqdn(n), kz) for n in known for kz in kube_zones):
                    return False
                passes = getattr(source, "passes", None)
                if passes is not None and not all(passes(kz) for kz in kube_zones):
                    return False  # no fallthrough: the chain answers SERVFAIL, as CoreDNS
        return True

    def build(self, target: chain.Block) -> None:
        shared = self.shared.chain
        target.sources = shared.sources
        target.upstream = shared.upstream
        target.cache = shared.cache
        target.querylog = shared.querylog
        target.whoami = shared.whoami
        target.errors = shared.errors
        ctx = context.BuildContext(self.block, target, self.label)
        for stage in self._stages:
            stage(ctx)

    def tasks(self) -> list[Task]:
        found: list[Task] = []
        if self.upstream is not None:
            found.append(upstream_lifetime(self.upstream))
        for _, source in self.sources:
            run = getattr(source, "run", None)
            if run is not None:
                found.append(run)
        return found


def _block_label(block: cfg.Block) -> str:
    """The ``server`` label of the metrics a block's plugins count themselves (cache,
    autopath): its server's, as the query metrics carry it (``dns://127.0.0.1:53`` under
    ``bind 127.0.0.1``). A block bound to several addresses shares one cache between their
    servers, labelled with the port alone (CoreDNS labels each query with its server's)."""
    if not block.keys:
        return "dns://:53"
    key = block.keys[0]
    hosts = block.listen_hosts
    host = hosts[0] if len(hosts) == 1 else ""
    return f"{key.transport}://{ListenAddress(host, int(key.port))}"


def from_corefile(config: cfg.Config, dns_port: int = 53) -> Plan:
    """The Plan a loaded Corefile describes."""
    groups: dict[tuple[str, str, int], list[tuple[cfg.Block, tuple[str, ...]]]] = {}
    for block in config.blocks:
        for key in block.keys:
            if key.transport not in SERVED_TRANSPORTS:
                raise CorefileError(
                    f"{key}: transport {key.transport!r} is not supported by kdns "
                    f"(only {', '.join(t + '://' for t in SERVED_TRANSPORTS)})"
                )
            for host in block.listen_hosts:
                entry = groups.setdefault((key.transport, host, int(key.port)), [])
                for i, (b, zones) in enumerate(entry):
                    if b is block:
                        entry[i] = (b, (*zones, key.zone))
                        break
                else:
                    entry.append((block, (key.zone,)))
    builders: dict[int, _BlockBuilder] = {}
    plan = Plan(servers=[])
    for (transport, host, port), entries in groups.items():
        address = ListenAddress(host, port)
        specs = []
        for block, zones in entries:
            builder = builders.get(id(block))
            if builder is None:
                builder = builders[id(block)] = _BlockBuilder(block)
            specs.append(
                BlockSpec(
                    zones=tuple(dict.fromkeys(zones)),
                    kube=builder.kube,
                    build=builder.build,
                    fast_ok=builder.fast_ok,
                    plugins=block.names(),
                )
            )
        tls = next((t for b, _ in entries if (t := b.get(TlsConfig)) is not None), None)
        plan.servers.append(
            ServerSpec(
                address=address,
                label=f"{transport}://{address}",
                blocks=specs,
                transport=transport,
                tls=tls,
            )
        )
    for builder in builders.values():
        plan.tasks += builder.tasks()
        if builder.envinject is not None and builder.kube is not None:
            plan.webhooks.append(WebhookSpec(builder.kube, builder.envinject))
    _listeners(config, plan)
    plan.corefile = config.path if config.path not in ("", "stdin") else None
    plan.dns_port = dns_port
    plan.fingerprint = config.sha512
    for block in config.blocks:
        rc = block.get(ReloadConfig)
        if rc is not None and plan.corefile is not None:
            plan.reload = (rc.interval, rc.jitter)
            break
    return plan


def _listeners(config: cfg.Config, plan: Plan) -> None:
    ready: dict[str, None] = {}
    prom: dict[str, None] = {}
    runtime = debug_on = False
    for block in config.blocks:
        hc = block.get(HealthConfig)
        if hc is not None and plan.health is None:
            plan.health = ListenAddress.parse(hc.addr, 8080)
            plan.lameduck = hc.lameduck
        rc = block.get(ReadyConfig)
        if rc is not None:
            ready[rc.addr] = None
        pc = block.get(PrometheusConfig)
        if pc is not None:
            prom[pc.addr] = None
            runtime |= pc.runtime_metrics
        debug_on |= block.has("debug")
    plan.ready = [ListenAddress.parse(a, 8181) for a in ready]
    plan.prometheus = [ListenAddress.parse(a, 9153) for a in prom]
    plan.tasks += [prometheus_build.runtime_metrics] if runtime else []
    plan.tasks += [debug_build.debug_logging] if debug_on else []
    debug = next((d for b in config.blocks if (d := b.get(DebugEndpointsConfig))), None)
    plan.debug = ListenAddress.parse(debug.addr) if debug is not None else None


def describe(plan: Plan) -> list[str]:
    """One line per listener and block, for the startup log."""
    lines = []
    for spec in plan.servers:
        for block in spec.blocks:
            lines.append(
                f"{spec.label} zones={','.join(block.zones)} plugins={','.join(block.plugins)}"
            )
    return lines


__all__: list[Any] = ["describe", "from_corefile", "from_serve"]
