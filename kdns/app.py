"""The whole lifecycle of a kdns process, top to bottom: start, run, stop.

Start: load the source (manifests folder) into the store, compile, open the DNS
listeners and the HTTP endpoints. Run: a fixed set of root tasks (source watcher,
compiler); if one dies, everything stops. Stop, in the order Kubernetes expects:
on SIGTERM ``/ready`` fails at once, DNS keeps answering through the lameduck period
while ``/health`` stays 200, then listeners close and in-flight work drains; a second
signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from kdns import compiler, handler, manifests, resolver, server, store, table

log = logging.getLogger("kdns")


@dataclass(slots=True)
class Options:
    manifests: str
    listen: Sequence[server.ListenAddress]
    settings: resolver.Settings
    health: server.ListenAddress | None = None
    ready: server.ListenAddress | None = None
    lameduck: float = 0.0
    max_udp: int = 1232
    extra_tasks: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)


class Runtime:
    """Everything one kdns process holds, wired together."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.store = store.Store()
        self.resolver = resolver.Resolver(self.store, options.settings)
        self.table = table.Table(self.store, self.resolver)
        self.handler = handler.Handler(self.table, max_udp=options.max_udp)
        self.compiler = compiler.Compiler(self.store, self.table)
        self.source = manifests.ManifestsSource(options.manifests, self.store)
        self.servers = [server.DNSServer(addr, self.handler.handle) for addr in options.listen]
        self.shutting_down = False
        self.started = asyncio.Event()
        self.stop_requested = asyncio.Event()
        self._runners: list[web.AppRunner] = []

    async def start(self) -> None:
        self.source.load()
        self.table.rebuild()
        for srv in self.servers:
            await srv.start()
        await self._start_http()
        self.started.set()

    async def _start_http(self) -> None:
        opts = self.options
        if opts.health is not None:
            app = web.Application()
            app.router.add_get("/health", self._health)
            await self._site(app, opts.health)
        if opts.ready is not None:
            app = web.Application()
            app.router.add_get("/ready", self._ready)
            await self._site(app, opts.ready)

    async def _site(self, app: web.Application, addr: server.ListenAddress) -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, addr.host or None, addr.port, reuse_address=True).start()
        self._runners.append(runner)

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def _ready(self, request: web.Request) -> web.Response:
        if self.shutting_down or not self.store.synced:
            return web.Response(status=503, text="not ready")
        return web.Response(text="OK")

    async def run(self) -> None:
        """Serve until asked to stop, then shut down in order."""
        await self.start()
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self.source.watch(), name="manifests-watch"),
                group.create_task(self.compiler.run(), name="compiler"),
            ]
            tasks += [
                group.create_task(make(), name=make.__name__) for make in self.options.extra_tasks
            ]
            await self.stop_requested.wait()
            await self.shutdown()
            for task in tasks:
                task.cancel()

    async def shutdown(self) -> None:
        self.shutting_down = True  # /ready fails from now on
        if self.options.lameduck > 0:
            log.info("lameduck: answering for %.1fs more", self.options.lameduck)
            await asyncio.sleep(self.options.lameduck)
        for srv in self.servers:
            await srv.close()
        for runner in self._runners:
            await runner.cleanup()

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


def run(options: Options) -> None:
    """Run kdns until a signal stops it, on uvloop when it is installed."""

    async def main() -> None:
        runtime = Runtime(options)
        runtime.install_signal_handlers()
        await runtime.run()

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
