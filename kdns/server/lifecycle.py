"""The whole lifecycle of a kdns process, top to bottom: start, run, stop.

A :class:`kdns.server.plan.Plan` says what to run (listeners, server blocks and their plugins,
cluster sources, HTTP endpoints); ``kdns serve`` and a Corefile both produce one. Start: load
each cluster source into its store, compile, open the DNS listeners and the HTTP
endpoints. Run: a fixed set of root tasks (source watchers, compilers, reload); if one
dies, everything stops. Stop, in the order Kubernetes expects: on SIGTERM ``/ready``
fails at once, DNS keeps answering through the lameduck period while ``/health`` stays
200, then listeners close and in-flight queries drain; a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import os
import random
import signal
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kdns import errors
from kdns.cluster import compiler, manifests, resolver, store, table
from kdns.dns import metrics
from kdns.dns.tasks import Tasks
from kdns.plugins.loop.probe import LoopProbe
from kdns.query import chain, handler
from kdns.server import encrypted, heap, ops
from kdns.server.plan import BlockSpec, KubeSpec, ListenAddress, Plan, ServerSpec, Task

if TYPE_CHECKING:
    from aiohttp import web  # the webhooks' applications, imported with them

    from kdns.corefile import config as corefile_config

log = logging.getLogger("kdns")

IPAM_STATUS_PATH = "/debug/kdns/ipam"
# The longest a reload waits for a new API source's first list before it gives up and
# leaves the running configuration in place.
RELOAD_SYNC_TIMEOUT = 60.0


class ReloadError(errors.ConfigurationError):
    """The new configuration could not take over; the running one keeps serving."""


class Cluster:
    """A store with its resolver, compiled table, compiler and source."""

    def __init__(self, spec: KubeSpec) -> None:
        self.spec = spec
        self.store = store.Store()
        self.resolver = resolver.Resolver(self.store, spec.settings)
        self.table = table.Table(self.store, self.resolver)
        self.source: manifests.ManifestsSource | None = None
        self.informers: Any = None
        self.allocator: Any = None
        self.connection: Any = None
        self.ipam: Any = None  # kdns.ipam.cluster.ClusterAllocator, in cluster mode
        self._closers: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._listed = asyncio.Event()  # a list completed: trim once its compile is done
        observe: Callable[[float], None] = metrics.PROPAGATION.observe
        if spec.manifests is None and spec.api is not None:
            observe = self._connect(spec)
        self.compiler = compiler.Compiler(self.store, self.table, observe)
        if spec.manifests is not None:
            if spec.ipam is not None:
                from kdns.ipam import hook

                self.allocator = hook.LocalAllocator(spec.ipam)
            self.source = manifests.ManifestsSource(spec.manifests, self.store, self.allocator)

    def _connect(self, spec: KubeSpec) -> Callable[[float], None]:
        """list+watch the API server; returns the compiler's propagation hook."""
        import dataclasses

        from kdns.cluster import shrink
        from kdns.cluster.kube import client, config, informer, snapshot
        from kdns.cluster.kube import metrics as kube_metrics

        assert spec.api is not None  # the caller checked
        conn = self.connection = config.load(spec.api)
        stats = kube_metrics.Metrics(
            metrics.REGISTRY, propagation=metrics.PROPAGATION, programming=metrics.PROGRAMMING
        )
        persister = (
            snapshot.Persister(spec.snapshot, self.store, registry=metrics.REGISTRY)
            if spec.snapshot
            else None
        )
        options = spec.informer or informer.Options(startup_timeout=spec.startup_timeout)
        # Keep of each endpoint only what a feature here reads (issue 15).
        fields = {shrink.POD_NAMES} if spec.settings.endpoint_pod_names else set()
        if spec.settings.zonal:
            fields.add(shrink.ZONES)
        self.informers = informer.Informers(
            self.store,
            client.Client(conn),
            dataclasses.replace(options, endpoint_fields=frozenset(fields)),
            stats=stats,
            persister=persister,
            on_relisted=self._relisted,
        )
        hook: Callable[[float], None] = self.informers.compiled
        return hook

    def _relisted(self) -> None:
        """After a list: what the old state and the pages held goes back to the kernel now,
        and what the compile of the new state leaves behind once it is done."""
        heap.trim()
        self._listed.set()

    async def _trim_after_compile(self) -> None:
        while True:
            await self._listed.wait()
            self._listed.clear()
            # The first list's writes reach the compiler in the sync's one call
            # (mark_synced, right after ``synced`` is set); a relist's as they are made.
            await self.informers.synced.wait()
            await self.compiler.idle.wait()
            # The listed state lives until the next list: out of the collector's full
            # passes, as at start (one pass now clears the list's cyclic garbage first).
            gc.collect()
            gc.freeze()
            heap.trim()

    async def start(self) -> None:
        if self.source is not None:
            self.source.load()
        self.table.rebuild()
        # What is loaded now lives as long as the process: keep it out of the collector's
        # full passes, which otherwise stall answers for tens of milliseconds at scale.
        gc.collect()
        gc.freeze()

    def allocate_in_cluster(self, webhook_port: int) -> None:
        """Cluster mode of ``clusterip``: the elected allocator behind ``/allocate``."""
        if self.spec.ipam is None or self.connection is None or self.ipam is not None:
            return
        import socket as socket_module

        from kdns.ipam import claims, leader
        from kdns.ipam import cluster as ipam_cluster

        namespace = self.spec.ipam.lease_namespace
        me = leader.identity(
            os.environ.get("POD_NAME", socket_module.gethostname()),
            os.environ.get("POD_IP", "127.0.0.1"),
            webhook_port,
        )
        rest = leader.Rest(self.connection)
        elector = leader.Elector(leader.Rest(self.connection), namespace, "kdns-clusterip", me)
        self.ipam = ipam_cluster.ClusterAllocator(
            self.spec.ipam,
            self.store,
            elector=elector,
            claimer=claims.Claims(rest, namespace, identity=me),
        )
        self._closers += [rest.close, elector.rest.close]

    async def close(self) -> None:
        for close in self._closers:
            with contextlib.suppress(Exception):
                await close()

    def tasks(self) -> list[Task]:
        found: list[Task] = [self.compiler.run]
        if self.ipam is not None:
            found.append(self.ipam.run)
        if self.source is not None:
            found.append(self.source.watch)
        if self.informers is not None:
            found += [self.informers.run, self._trim_after_compile]
        return found


class Generation:
    """One configuration's worth of clusters, handlers and pipelines, without sockets.

    A reload builds a new generation beside the running one, starts its sources, and
    only then swaps it in: listeners that stay are handed the new handler in one
    step, so no query is lost and none sees half a configuration.
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.clusters: dict[int, Cluster] = {}
        self.routes: dict[ListenAddress, handler.Handler] = {}
        self.specs: dict[ListenAddress, ServerSpec] = {s.address: s for s in plan.servers}
        self.tasks = Tasks()  # the root tasks: when one dies, everything stops
        self.stats: list[metrics.QueryStats] = []
        self.plugins: list[tuple[str, str, str]] = []
        self.loop_zones: list[tuple[ListenAddress, str]] = []
        for spec in plan.servers:
            stats = metrics.QueryStats(spec.label)
            self.stats.append(stats)
            blocks: list[chain.Block] = []
            fast: handler.FastRoute | None = None
            for bspec in spec.blocks:
                block = chain.Block(zones=bspec.zones)
                if bspec.kube is not None:
                    cluster = self._cluster(bspec.kube)
                    block.kube = chain.Kube(cluster.table, bspec.kube.settings.zones)
                    cluster.table.loadbalance |= bspec.loadbalance
                    if bspec.fast_ok and _fast_route_ok(spec.blocks, bspec):
                        fast = handler.FastRoute(
                            cluster.table,
                            _label_zone(bspec),
                            chase="forward" in bspec.plugins,
                            positive_only="autopath" in bspec.plugins,
                        )
                if bspec.build is not None:
                    bspec.build(block)
                blocks.append(block)
                for name in bspec.plugins:
                    for zone in bspec.zones:
                        self.plugins.append((spec.label, zone, name))
            self.routes[spec.address] = handler.Handler(
                fast, stats, chain.Pipeline(blocks, stats), max_udp=plan.max_udp
            )
            for bspec in spec.blocks:
                if bspec.loop:
                    self.loop_zones.append((spec.address, bspec.zones[0]))

    def _cluster(self, spec: KubeSpec) -> Cluster:
        cluster = self.clusters.get(id(spec))
        if cluster is None:
            cluster = self.clusters[id(spec)] = Cluster(spec)
        return cluster

    @property
    def synced(self) -> bool:
        return all(c.store.synced for c in self.clusters.values())

    async def start(self) -> None:
        for cluster in self.clusters.values():
            await cluster.start()

    @property
    def sync_timeout(self) -> float:
        """How long a reload waits for this generation's first sync: a large cluster lists
        for longer than the startup timeout that governs the snapshot fallback."""
        waits = [c.spec.startup_timeout for c in self.clusters.values() if c.informers]
        return max([RELOAD_SYNC_TIMEOUT, *waits]) if waits else 0.0

    async def wait_synced(self) -> bool:
        """After :meth:`spawn`: True once every cluster synced, False at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.sync_timeout
        while not self.synced:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def spawn(self, on_failure: Callable[[BaseException], None]) -> None:
        makers: list[Task] = [*self.plan.tasks]
        for cluster in self.clusters.values():
            makers += cluster.tasks()
        makers += self.loop_probes(on_failure)
        for make in makers:
            task = self.tasks.start(make())

            def done(t: asyncio.Task[None]) -> None:
                if not t.cancelled() and t.exception() is not None:
                    on_failure(cast(BaseException, t.exception()))

            task.add_done_callback(done)

    def loop_probes(self, on_failure: Callable[[BaseException], None]) -> list[Task]:
        """CoreDNS's loop plugin: a random HINFO query to ourselves must not come back."""
        probes: list[Task] = []
        for addr, zone in self.loop_zones:
            probe = LoopProbe(self.routes[addr].chain, addr, zone)

            def found(qname: str, addr: ListenAddress = addr, zone: str = zone) -> None:
                log.error(
                    'Loop (127.0.0.1:%d -> %s) detected for zone "%s", see '
                    'https://coredns.io/plugins/loop#troubleshooting. Query: "HINFO %s"',
                    addr.port,
                    addr,
                    zone,
                    qname,
                )
                on_failure(RuntimeError(f"forwarding loop detected for zone {zone}"))

            probe.pipe.on_loop = found
            probes.append(probe.run)
        return probes

    async def retire(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5)
        for cluster in self.clusters.values():
            await cluster.close()


class Runtime:
    """Everything one kdns process holds, wired together."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.gen = Generation(plan)
        self.tasks = Tasks()
        self.servers: dict[ListenAddress, encrypted.Listener] = {}
        self.shutting_down = False
        self.started = asyncio.Event()
        self.stop_requested = asyncio.Event()
        self.failure: BaseException | None = None
        self._ops_sites: list[ops.Site] = []  # health, ready, metrics, debug
        self._hook_runners: list[web.AppRunner] = []  # envinject and clusterip webhooks
        self._ops_addrs: tuple[object, ...] = ()
        self._hooks_addrs: tuple[object, ...] = ()
        self._ipam_gauges = False
        self._publish(self.gen)

    def _publish(self, gen: Generation) -> None:
        metrics.DNS.stats[:] = gen.stats
        metrics.PLUGINS.enabled[:] = gen.plugins
        metrics.COMPILED_TABLES[:] = [c.table for c in gen.clusters.values()]

    @property
    def synced(self) -> bool:
        return self.gen.synced

    async def start(self) -> None:
        await self.gen.start()
        for addr, h in self.gen.routes.items():
            srv = self._listener(self.gen, addr, h)
            await srv.start()
            self.servers[addr] = srv
        await self._start_http()
        self.started.set()

    async def reload(self, plan: Plan) -> None:
        """Swap in a new configuration; on any error the old one keeps serving untouched."""
        gen = Generation(plan)
        await gen.start()
        opened: list[encrypted.Listener] = []
        try:
            for addr, srv in self.servers.items():  # a listener that stays keeps its transport
                if addr in gen.specs:
                    spec = gen.specs[addr]
                    encrypted.reconfigure(srv, spec.transport, spec.tls)
            for addr, h in gen.routes.items():
                if addr not in self.servers:
                    srv = self._listener(gen, addr, h)
                    await srv.start()
                    opened.append(srv)
        except OSError:
            for srv in opened:
                await srv.close()
            raise
        # An API source starts empty: swapped in before its first list, every cluster name
        # would answer SERVFAIL until it synced. Until then the old generation answers.
        gen.spawn(self._failed)
        if not await gen.wait_synced():
            for srv in opened:
                await srv.close()
            await gen.retire()
            raise ReloadError(
                f"the new configuration's API source did not sync within {gen.sync_timeout:g}s"
            )
        # The swap itself: no await from here to the end of the loop.
        for addr, srv in self.servers.items():
            if addr in gen.routes:
                srv.handler = gen.routes[addr]
        retired = [srv for addr, srv in self.servers.items() if addr not in gen.routes]
        for srv in opened:
            self.servers[srv.address] = srv
        for srv in retired:
            del self.servers[srv.address]
        old, self.gen, self.plan = self.gen, gen, plan
        self._publish(gen)
        for srv in retired:
            await srv.close()
        await old.retire()
        # The probes and /metrics stay up through a reload unless their addresses moved:
        # a kubelet probe or a scrape landing in the gap would fail. Webhooks read the new
        # generation's store, so they follow it.
        if self._ops_key(plan) != self._ops_addrs:
            await self._close_ops()
            await self._start_ops()
        if self._hooks_key(plan) != self._hooks_addrs:
            await self._cleanup(self._hook_runners)
            await self._start_webhooks()

    def _listener(
        self, gen: Generation, addr: ListenAddress, h: handler.Handler
    ) -> encrypted.Listener:
        """The listener of ``addr``'s transport: UDP+TCP, DoT or DoH."""
        spec = gen.specs[addr]
        return encrypted.open_listener(spec.transport, spec.tls, spec.label, addr, h, self.tasks)

    @staticmethod
    async def _cleanup(runners: list[web.AppRunner]) -> None:
        for runner in runners:
            await runner.cleanup()
        runners.clear()

    @staticmethod
    def _ops_key(plan: Plan) -> tuple[object, ...]:
        return (plan.health, tuple(plan.ready), tuple(plan.prometheus), plan.debug)

    @staticmethod
    def _hooks_key(plan: Plan) -> tuple[object, ...]:
        return tuple((id(w.kube), w.config) for w in plan.webhooks)

    async def _start_http(self) -> None:
        await self._start_ops()
        await self._start_webhooks()

    async def _start_ops(self) -> None:
        plan = self.plan
        self._ops_addrs = self._ops_key(plan)
        sites: dict[ListenAddress, ops.Site] = {}

        def site_for(addr: ListenAddress) -> ops.Site:
            site = sites.get(addr)
            if site is None:
                site = sites[addr] = ops.Site(addr)
            return site

        if plan.health is not None:
            site_for(plan.health).add_get("/health", self._health)
        if plan.debug is not None:
            # Never on the health port: that one every pod can reach.
            from kdns import explain

            site_for(plan.debug).add_get(explain.SNAPSHOT_PATH, self._snapshot)
            site_for(plan.debug).add_get(IPAM_STATUS_PATH, self._ipam_report)
        for addr in plan.ready:
            site_for(addr).add_get("/ready", self._ready)
        for addr in plan.prometheus:
            site_for(addr).add_get("/metrics", self._metrics)
        for site in sites.values():
            await site.start()
            self._ops_sites.append(site)

    async def _close_ops(self) -> None:
        for site in self._ops_sites:
            await site.close()
        self._ops_sites.clear()

    async def _start_webhooks(self) -> None:
        self._hooks_addrs = self._hooks_key(self.plan)
        if not self.plan.webhooks:
            return
        from kdns.envinject import tls, webhook  # with kdns.admission: only for webhooks
        from kdns.server import http as httplisten

        for spec in self.plan.webhooks:
            cluster = self.gen._cluster(spec.kube)
            cfg = spec.config
            context = tls.ReloadingContext(cfg.cert_file, cfg.key_file)
            metrics.CERTIFICATES.watch("envinject", str(cfg.cert_file))
            app = webhook.make_app(cluster.store, path=cfg.path, registry=metrics.REGISTRY)
            cluster.allocate_in_cluster(cfg.port)
            if cluster.ipam is not None:
                self._mount_allocate(app, cluster, cfg)
            runner, _ = await httplisten.start(app, cfg.host or None, cfg.port, context.context)
            self._hook_runners.append(runner)
            log.info(
                "serving the envinject webhook on https://%s:%d%s", cfg.host, cfg.port, cfg.path
            )

    def _mount_allocate(self, app: web.Application, cluster: Cluster, cfg: Any) -> None:
        """``/allocate`` beside ``/inject``: one HTTPS port, one certificate, for both webhooks."""
        import ssl

        from kdns.ipam import status as ipam_status
        from kdns.ipam import webhook as ipam_webhook

        namespace = os.environ.get("POD_NAMESPACE", "kube-system")
        ca = os.path.join(os.path.dirname(cfg.cert_file), "ca.crt")
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca) if os.path.exists(ca) else True
        )
        assert cluster.spec.ipam is not None  # cluster.ipam is only set with it
        path = cluster.spec.ipam.webhook
        forwarder = ipam_webhook.Forwarder(
            path,
            ssl_context=verify,
            server_hostname=os.environ.get("KDNS_WEBHOOK_HOST", f"kdns-webhook.{namespace}.svc"),
        )
        handler_ = ipam_webhook.Allocate(
            cluster.ipam, forwarder=forwarder, registry=metrics.REGISTRY
        )
        ipam_webhook.add_routes(app, handler_, path)
        if not self._ipam_gauges:
            self._ipam_gauges = True
            ipam_status.publish(metrics.REGISTRY, lambda: self._ipam_status())
        cluster._closers.append(forwarder.close)

    async def _ipam_report(self, request: ops.Request) -> ops.Response:
        """``kdns ipam status --server``: the ranges of the running allocator."""
        from kdns.ipam import status as ipam_status

        for cluster in self.gen.clusters.values():
            if cluster.ipam is not None:
                report = cluster.ipam.status()
            elif cluster.allocator is not None and cluster.allocator.last is not None:
                report = ipam_status.pool_status(cluster.allocator.last.pool)
            else:
                continue
            if request.query.get("format") == "json":
                return ops.Response(
                    text=ipam_status.render_json(report), content_type="application/json"
                )
            return ops.Response(text=ipam_status.render_text(report))
        return ops.Response(status=404, text="no clusterip allocator configured\n")

    def _ipam_status(self) -> Any:
        for cluster in self.gen.clusters.values():
            if cluster.ipam is not None:
                return cluster.ipam.status()
        return ()

    async def _health(self, request: ops.Request) -> ops.Response:
        started = time.perf_counter()
        response = ops.Response(text="OK")
        metrics.HEALTH_DURATION.observe(time.perf_counter() - started)
        return response

    async def _snapshot(self, request: ops.Request) -> ops.Response:
        """The cache as ``kdns explain --server`` reads it (the first cluster source)."""
        from kdns import explain

        clusters = list(self.gen.clusters.values())
        if not clusters:
            return ops.json_response({"error": "no kubernetes source configured"}, status=404)
        cluster = clusters[0]
        return ops.json_response(explain.snapshot(cluster.store, cluster.spec.settings))

    async def _ready(self, request: ops.Request) -> ops.Response:
        if self.shutting_down or not self.synced:
            return ops.Response(status=503, text="not ready")
        return ops.Response(text="OK")

    async def _metrics(self, request: ops.Request) -> ops.Response:
        body = generate_latest(metrics.REGISTRY)
        return ops.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _check_root(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._failed(cast(BaseException, task.exception()))

    def _failed(self, exc: BaseException) -> None:
        log.error("a root task failed, stopping: %r", exc)
        self.failure = exc
        self.stop_requested.set()

    async def run(self) -> None:
        """Serve until asked to stop, then shut down in order."""
        await self.start()
        self.gen.spawn(self._failed)
        reloader = None
        if self.plan.reload is not None:
            reloader = asyncio.ensure_future(self._reload_loop())
            reloader.add_done_callback(self._check_root)
        await self.stop_requested.wait()
        if reloader is not None:
            reloader.cancel()
        await self.shutdown()
        await self.gen.retire()
        if self.failure is not None:
            raise SystemExit(1)

    async def _reload_loop(self) -> None:
        """The reload plugin: check the Corefile every interval (or on SIGUSR1)."""
        assert self.plan.reload is not None and self.plan.corefile is not None
        interval, jitter = self.plan.reload
        state = _ReloadState(current=self.plan.fingerprint)
        metrics.RELOAD_VERSION.labels(state.current, "sha512").set(1)
        log.info("plugin/reload: Running configuration SHA512 = %s", state.current)
        forced = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, forced.set)
        while True:
            wait = interval + random.uniform(-jitter / 2, jitter / 2) if jitter else interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(forced.wait(), wait)
            forced.clear()
            await self._reload_once(state)

    async def _reload_once(self, state: _ReloadState) -> None:
        """One check: swap in a changed, valid Corefile; anything else keeps the old one."""
        from kdns.corefile.errors import CorefileError
        from kdns.server import planner as plan_module

        assert self.plan.corefile is not None
        try:
            data = _read_corefile(self.plan.corefile)
        except CorefileError as exc:
            log.warning("plugin/reload: Corefile load failed: %s", exc)
            _reload_failed(state, f"load:{exc}")
            return
        try:
            config = _parse_for_reload(data, self.plan.corefile, self.plan.dns_port)
        except CorefileError as exc:
            log.warning("plugin/reload: Corefile parse failed: %s", exc)
            _reload_failed(state, "parse:" + hashlib.sha512(data).hexdigest())
            return
        if config.sha512 == state.current:
            state.bad = ""  # back to the running file: a later breakage counts again
            return
        if config.sha512 == state.bad:
            return
        log.info("Reloading")
        try:
            new_plan = plan_module.from_corefile(config, self.plan.dns_port)
            await self.reload(new_plan)
        except Exception as exc:
            log.error("Restart failed: %s", exc)
            log.error("plugin/reload: Corefile changed but reload failed: %s", exc)
            _reload_failed(state, config.sha512)
            return
        metrics.RELOAD_VERSION.clear()
        metrics.RELOAD_VERSION.labels(config.sha512, "sha512").set(1)
        state.current, state.bad = config.sha512, ""
        log.info("plugin/reload: Running configuration SHA512 = %s", state.current)
        log.info("Reloading complete")

    async def shutdown(self) -> None:
        self.shutting_down = True  # /ready fails from now on
        if self.plan.lameduck > 0:
            log.info("lameduck: answering for %.1fs more", self.plan.lameduck)
            await asyncio.sleep(self.plan.lameduck)
        for srv in self.servers.values():
            srv.close_listeners()
        await self.tasks.drain(2.0)
        for srv in self.servers.values():
            await srv.close()
        await self._cleanup(self._hook_runners)
        await self._close_ops()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            if self.stop_requested.is_set():
                log.warning("second signal: exiting now")
                os._exit(1)
            log.info("received %s, shutting down", signal.Signals(signum).name)
            self.stop_requested.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, on_signal, signum)


@dataclass(slots=True)
class _ReloadState:
    """What the reload plugin remembers between checks."""

    current: str  # the fingerprint of the running configuration
    bad: str = ""  # the last failure seen, so a file left broken counts once, not per check


def _reload_failed(state: _ReloadState, key: str) -> None:
    """Count a failed reload in ``coredns_reload_failed_total``, once per distinct failure."""
    if key != state.bad:
        state.bad = key
        metrics.RELOAD_FAILED.inc()


def _read_corefile(path: str) -> bytes:
    """The Corefile's bytes; missing, unreadable or a directory is a failed reload."""
    from kdns.corefile.errors import CorefileError

    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise CorefileError(f"open {path}: {reason}") from None


def _parse_for_reload(data: bytes, path: str, dns_port: int) -> corefile_config.Config:
    """The Corefile checked as at start, except that no server blocks is an error.

    At start CoreDNS serves its built-in ``.:53 { whoami log }`` when a Corefile has
    no server blocks; under reload that would close every listener because a ConfigMap
    was emptied by mistake, so an empty Corefile keeps the running configuration.
    """
    from kdns.corefile import lexer
    from kdns.corefile.errors import CorefileError
    from kdns.plugins import loader

    text = lexer.decode(data)
    if not lexer.tokenize(text):
        raise CorefileError(f"{path} is empty: keeping the running configuration")
    config = loader.load_text(text, path, dns_port)
    if config.builtin_default:
        raise CorefileError(f"{path} has no server blocks: keeping the running configuration")
    return config


def _label_zone(block: BlockSpec) -> str:
    """The block zone cluster names route to, for the metrics' zone label."""
    assert block.kube is not None
    primary = block.kube.settings.primary_zone
    matches = [z for z in block.zones if primary == z or primary.endswith("." + z) or z == "."]
    return max(matches, key=len) if matches else block.zones[0]


def _fast_route_ok(blocks: Sequence[BlockSpec], kube_block: BlockSpec) -> bool:
    """The fast path may answer a cluster name only if no other block would take it."""
    assert kube_block.kube is not None
    kube_zones = kube_block.kube.settings.zones
    for other in blocks:
        if other is kube_block:
            continue
        for zone in other.zones:
            for kz in kube_zones:
                if zone == kz or zone.endswith("." + kz):
                    return False
    return True


def run(plan: Plan) -> None:
    """Run kdns until a signal stops it, on uvloop when it is installed."""

    async def main() -> None:
        runtime = Runtime(plan)
        runtime.install_signal_handlers()
        await runtime.run()

    heap.tune()  # before the cluster is loaded: see kdns.server.heap
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
