"""The emulator's lifecycle inside one event loop: start, go down, come up, stop.

Two listeners share the loop: the API port, which tests can take down and bring
back (same port, so clients reconnect to the address they know), and a control port
that stays up so a separate process can drive the faults through ``/_emu/`` even
while the API is down. The control routes are also mounted on the API port.

Everything here runs on the emulator's loop; :class:`tests.support.apiemu.threaded.EmulatorThread`
is the face for synchronous tests and other loops.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
from collections.abc import AsyncIterator, Iterable
from typing import Any, Literal

from aiohttp import web

from . import control, resources, server, status, watching
from .faults import Cut, Failure, Faults
from .server import RequestRecord
from .store import DEFAULT_NAMESPACES, Obj, Store

_SHUTDOWN_GRACE = 0.5
"""Seconds in-flight requests get when the API goes down before they are cancelled."""


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class Emulator:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        control_port: int = 0,
        bookmark_interval: float = 60.0,
        watch_timeout: float | None = None,
        log_capacity: int | None = None,
        namespaces: Iterable[str] = DEFAULT_NAMESPACES,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        require_client_cert: bool = False,
    ) -> None:
        """``ssl_context`` serves the API port over HTTPS (the control port stays HTTP);
        ``require_client_cert`` then answers 401 to requests without a client certificate
        (see :mod:`tests.support.apiemu.pki`)."""
        self.host = host
        self.ssl_context = ssl_context
        self._port = port
        self._control_port = control_port
        store = Store(log_capacity)
        store.seed_namespaces(namespaces)
        self.token = token
        faults = Faults(tokens=None if token is None else frozenset({token}))
        self.backend = server.Backend(
            store, faults, watching.WatchHub(), bookmark_interval, watch_timeout,
            require_client_cert=require_client_cert,
        )  # fmt: skip
        self._api: web.AppRunner | None = None
        self._control: web.AppRunner | None = None

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        app.add_routes(control.routes(self))
        self._control = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_GRACE)
        await self._control.setup()
        sock = _bind(self.host, self._control_port)
        self._control_port = sock.getsockname()[1]
        await web.SockSite(self._control, sock).start()
        await self.come_up()

    async def stop(self) -> None:
        await self.go_down()
        if self._control is not None:
            await self._control.cleanup()
            self._control = None

    async def come_up(self) -> None:
        """Listen on the API port again (the same port as before)."""
        if self._api is not None:
            return
        app = server.build_app(self.backend, control.routes(self))
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_GRACE)
        await runner.setup()
        sock = _bind(self.host, self._port)
        self._port = sock.getsockname()[1]
        await web.SockSite(runner, sock, ssl_context=self.ssl_context).start()
        self._api = runner

    async def go_down(self) -> None:
        """Stop listening and drop every connection, as a crashed apiserver would."""
        if self._api is None:
            return
        runner, self._api = self._api, None
        self.backend.hub.cut(Cut.RESET)
        await runner.cleanup()

    @property
    def up(self) -> bool:
        return self._api is not None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        scheme = "http" if self.ssl_context is None else "https"
        return f"{scheme}://{self.host}:{self._port}"

    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self._control_port}"

    # -- the world ---------------------------------------------------------------------
    @property
    def store(self) -> Store:
        return self.backend.store

    def put(self, obj: Obj) -> Obj:
        """Create ``obj`` or replace it (no resourceVersion check); returns it as stored."""
        return self.store.put(obj)

    def put_many(self, objs: Iterable[Obj]) -> int:
        """Put many objects in one call: seeding 10,000 Services should not cost 10,000
        thread hops. Returns the resourceVersion after the last one."""
        for obj in objs:
            self.store.put(obj)
        return self.store.revision

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> Obj | None:
        return self.store.get(self._resource(api_version, kind), namespace, name)

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "") -> Obj:
        return self.store.delete(self._resource(api_version, kind), namespace, name)

    def objects(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]:
        entries = self.store.entries(self._resource(api_version, kind))
        return [e.obj for e in entries if namespace is None or e.key[0] == namespace]

    @staticmethod
    def _resource(api_version: str, kind: str) -> resources.Resource:
        resource = resources.by_kind(api_version, kind)
        if resource is None:
            raise status.bad_request(f"no kind {kind!r} in {api_version!r}")
        return resource

    def compact(self, revision: int | None = None) -> int:
        """Drop history up to ``revision`` (default: all); older versions now get 410."""
        return self.store.compact(revision)

    @property
    def resource_version(self) -> int:
        return self.store.revision

    # -- faults ------------------------------------------------------------------------
    def cut_watches(self, how: Cut = Cut.RESET) -> int:
        """End every open watch stream; returns how many were open."""
        return self.backend.hub.cut(how)

    def fail_next(
        self,
        count: int = 1,
        code: int = 429,
        retry_after: int = 1,
        path_contains: str | None = None,
    ) -> None:
        """The next ``count`` API requests (whose path and query contain ``path_contains``)
        fail with ``code``: 429 carries Retry-After, 500 an InternalError Status."""
        self.backend.faults.failures.append(Failure(code, retry_after, path_contains, count))

    def set_delay(self, seconds: float) -> None:
        self.backend.faults.delay = seconds

    def add_raw_item(self, plural: str, item: Any, group: str = "") -> None:
        """Serve ``item`` (any JSON value, however malformed) at the end of every list
        of ``plural``, as if the server held it; it never reaches a watch."""
        resource = resources.named(plural, group)
        raw = json.dumps(item, separators=(",", ":")).encode()
        self.backend.faults.raw_items.setdefault(resource.plural, []).append(raw)

    def send_raw_event(self, plural: str, kind: str, obj: Any, group: str = "") -> int:
        """Send a ``kind`` event carrying ``obj`` as it is to every open watch of
        ``plural`` (the store is not touched); returns how many watches got it."""
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return self.backend.hub.inject(resources.named(plural, group), kind, raw)

    def set_token(self, token: str | None) -> None:
        """Require this bearer token from now on (None: no authentication); the old one
        gets 401, which is what a rotated service-account token looks like."""
        self.token = token
        self.backend.faults.tokens = None if token is None else frozenset({token})

    def set_expired_watch_reply(self, reply: Literal["error-event", "http-410"]) -> None:
        """How a watch from a compacted version is refused: HTTP 200 and an ERROR event
        (what the watch cache does) or HTTP 410 before the stream starts."""
        self.backend.faults.expired_watch_as_http_410 = reply == "http-410"

    # -- observing ---------------------------------------------------------------------
    def watch_count(self, plural: str | None = None, group: str = "") -> int:
        return self.backend.hub.count(None if plural is None else resources.named(plural, group))

    async def wait_for_watchers(self, count: int = 1, plural: str | None = None,
                                group: str = "") -> None:  # fmt: skip
        resource = None if plural is None else resources.named(plural, group)
        await self.backend.hub.wait_for(count, resource)

    def requests(self) -> list[RequestRecord]:
        return list(self.backend.requests)

    def state(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "up": self.up,
            "resourceVersion": self.store.revision,
            "compactedRevision": self.store.floor,
            "watches": self.backend.hub.count(),
        }


@contextlib.asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[Emulator]:
    """``async with serving(bookmark_interval=0.2) as emu:`` on the caller's own loop."""
    emulator = Emulator(**options)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()
