"""The webhooks' HTTPS listener: bounded in time per request and in connections.

The API server is the only legitimate client of ``/inject`` and ``/allocate``; it sends a
request right after the TLS handshake and gives up after its ``timeoutSeconds`` (10 s by
default, 30 s at most). Anything slower is not the API server, and anything that holds
a connection open without sending holds memory: each accepted TLS connection costs
about 300 KiB before the first byte (the event loop's 256 KiB TLS read buffer plus
OpenSSL's state), so 10,000 idle sockets are gigabytes, and the heap keeps much of
what a burst took. aiohttp bounds none of this (its keep-alive timer is an hour and
restarts on every request, nothing bounds a request's headers or body in time, and
``create_server`` accepts without limit), so this module owns the accept loop:

* at most :attr:`Limits.max_connections` connections exist, counting those still in
  their handshake; at the cap the oldest one that has been short of a whole request
  for :attr:`Limits.slow_after`, or else an idle one, is closed to make room, so a
  flood of silent or slow sockets never locks the API server out; while every slot is
  serving a request or is a client just arrived, the next one waits in the backlog;
* the handshake and a request's line and headers must arrive within
  :attr:`Limits.header_timeout` (from the accept, or from a request's first byte), a
  connection idle between requests is closed after :attr:`Limits.idle_timeout`; the
  body's deadline is enforced where the body is read (:func:`kdns.admission.read_limited`),
  so that the client gets a 408 rather than a reset.

Protocol logic stays in aiohttp: :class:`Connection` only forwards the transport's
events to aiohttp's handler and keeps one timer per connection.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web, web_protocol

from kdns.dns.tasks import Tasks
from kdns.server import heap

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may hold; the defaults sit inside the API server's own timeout."""

    header_timeout: float = 5.0
    """Handshake plus request line and headers: the API server sends them at once."""
    idle_timeout: float = 120.0
    """Longer than Go's 90 s idle pool, so the API server closes idle connections first
    (a server-side close racing a new POST fails that admission call)."""
    linger: float = 1.0
    """After answering a request whose body was not read (408, 413), how long to discard
    what still arrives before closing, so that a reset does not destroy the answer
    (aiohttp's 10 s would keep a dripping client's connection open that long)."""
    max_connections: int = 128
    slow_after: float = 1.0
    """At the cap, a connection still short of a whole request after this long may be
    closed for a newcomer (an idle kept-alive one always may); younger ones are real
    clients in their handshake, and the newcomer waits in the backlog for them."""
    backlog: int = 128
    trim_after: int = 64
    """Connections accepted since the last :func:`kdns.server.heap.trim` that make the next
    quiet moment (at most 1/16 of the cap open, a second later) worth a trim."""


class State(enum.Enum):
    HANDSHAKE = "handshake"
    WAITING = "waiting"  # connected, no byte of a request yet
    HEADERS = "headers"  # a request's first bytes arrived, the handler has not started
    BUSY = "busy"  # a handler runs: never evicted, bounded by the handler's own deadlines
    IDLE = "idle"  # between requests on a kept-alive connection


class Connection(asyncio.Protocol):
    """One accepted socket: aiohttp's handler behind it, and the one deadline that applies."""

    def __init__(self, listener: Listener, inner: web_protocol.RequestHandler) -> None:
        self._listener = listener
        self.inner = inner
        self.state = State.HANDSHAKE
        self.since = asyncio.get_running_loop().time()
        """When the current wait for the client began: the accept, or a request's first byte."""
        self.transport: asyncio.BaseTransport | None = None
        self.setup: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._arm(listener.limits.header_timeout)

    # asyncio.Protocol: forward everything, watch the bytes go by.
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.state = State.WAITING  # the accept's header deadline keeps running
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.state is State.IDLE:
            self.state = State.HEADERS
            self.since = asyncio.get_running_loop().time()
            self._arm(self._listener.limits.header_timeout)
        elif self.state is State.WAITING:
            self.state = State.HEADERS
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        self.inner.eof_received()
        return None  # close on the peer's EOF, as aiohttp does (it keeps nothing half-open)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._listener.forget(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # Called by the listener's middleware around each request.
    def request_started(self) -> None:
        self.state = State.BUSY
        self._cancel_timer()

    def request_finished(self) -> None:
        self.state = State.IDLE
        self._arm(self._listener.limits.idle_timeout)

    def close(self, reason: str) -> None:
        """Drop the connection at once (no TLS goodbye: the peer is not waiting for one)."""
        log.debug("webhook listener: closing a connection (%s, %s)", reason, self.state.value)
        self._cancel_timer()
        if self.transport is not None:
            abort = getattr(self.transport, "abort", None)
            (abort or self.transport.close)()
        elif self.setup is not None:
            self.setup.cancel()  # still in its handshake: the loop closes the socket

    def _arm(self, delay: float) -> None:
        self._cancel_timer()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(delay, self._expire)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        self._listener.timeouts += 1
        self.close("timeout")


class Listener:
    """The accept loops of one address and the connections they own."""

    def __init__(self, ssl_context: ssl.SSLContext | None, limits: Limits) -> None:
        self.limits = limits
        self.factory: Callable[[], web_protocol.RequestHandler] | None = None
        """aiohttp's server, set once its runner is set up (after the middleware is in)."""
        self._ssl = ssl_context
        self._connections: dict[Connection, None] = {}  # insertion order: oldest first
        self._by_handler: dict[web_protocol.RequestHandler, Connection] = {}
        self._room = asyncio.Event()
        self._tasks = Tasks(limit=1 << 30)
        self._sockets: list[socket.socket] = []
        self.evictions = 0
        self.timeouts = 0
        self.trims = 0
        self._accepted_since_trim = 0
        self._trim_timer: asyncio.TimerHandle | None = None

    @property
    def sockets(self) -> list[socket.socket]:
        return list(self._sockets)

    def __len__(self) -> int:
        return len(self._connections)

    def listen(self, host: str | None, port: int) -> None:
        self._sockets = _bind(host, port, self.limits.backlog)
        for sock in self._sockets:
            self._spawn(self._accept_loop(sock))

    def close(self) -> None:
        """Stop accepting and drop connections still in their handshake.

        Established ones belong to aiohttp's server, which drains and closes them.
        """
        if self._trim_timer is not None:
            self._trim_timer.cancel()
            self._trim_timer = None
        self._tasks.cancel()
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    def forget(self, conn: Connection) -> None:
        self._connections.pop(conn, None)
        self._by_handler.pop(conn.inner, None)
        self._room.set()
        if self._quiet_after_burst() and self._trim_timer is None:
            self._trim_timer = asyncio.get_running_loop().call_later(1.0, self._trim)

    def _quiet_after_burst(self) -> bool:
        quiet = len(self._connections) <= self.limits.max_connections // 16
        return quiet and self._accepted_since_trim >= self.limits.trim_after

    def _trim(self) -> None:
        """What a burst of connections left in the heap goes back to the kernel."""
        self._trim_timer = None
        if self._quiet_after_burst():
            self._accepted_since_trim = 0
            self.trims += 1
            heap.trim()

    def connection_of(self, handler: object) -> Connection | None:
        if isinstance(handler, web_protocol.RequestHandler):
            return self._by_handler.get(handler)
        return None

    async def around_request(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Marks the connection busy while a handler runs: exempt from eviction and timers."""
        conn = self.connection_of(request.protocol)
        if conn is not None:
            conn.request_started()
        try:
            return await handler(request)
        finally:
            if conn is not None:
                conn.request_finished()
                self._room.set()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        self._tasks.start(coro)  # type: ignore[arg-type]

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_room()
            try:
                client, _ = await loop.sock_accept(sock)
            except OSError as err:  # EMFILE and friends: back off instead of spinning
                log.warning("webhook listener: accept failed: %s", err)
                await asyncio.sleep(0.1)
                continue
            self._make_room()
            self._admit(client)

    async def _wait_for_room(self) -> None:
        """Returns once a slot is free or can be freed: waits while every connection is
        busy or too young to call slow, so a burst of real clients is queued, not reset."""
        loop = asyncio.get_running_loop()
        while len(self._connections) >= self.limits.max_connections:
            now = loop.time()
            if self._victim(now) is not None:
                return
            self._room.clear()
            try:
                async with asyncio.timeout(self._next_victim_in(now)):
                    await self._room.wait()
            except TimeoutError:
                pass

    def _victim(self, now: float) -> Connection | None:
        """The connection a newcomer replaces: the oldest slow one, else an idle one.

        Slow ones first: an idle kept-alive connection is most likely the API server's.
        """
        idle = None
        for conn in self._connections:
            if conn.state is State.IDLE:
                idle = idle or conn
            elif conn.state is not State.BUSY and now - conn.since >= self.limits.slow_after:
                return conn
        return idle

    def _next_victim_in(self, now: float) -> float | None:
        """Seconds until some connection turns slow; None while all serve requests."""
        waiting = [c.since for c in self._connections if c.state is not State.BUSY]
        if not waiting:
            return None
        return max(0.0, min(waiting) + self.limits.slow_after - now)

    def _make_room(self) -> None:
        now = asyncio.get_running_loop().time()
        while len(self._connections) >= self.limits.max_connections:
            victim = self._victim(now)
            if victim is None:  # turned busy since the wait: one over the cap, briefly
                return
            self.evictions += 1
            self.forget(victim)  # at once: its connection_lost comes a loop turn later
            victim.close("connection limit")

    def _admit(self, client: socket.socket) -> None:
        assert self.factory is not None, "listen() before the runner is set up"
        self._accepted_since_trim += 1
        conn = Connection(self, self.factory())
        self._connections[conn] = None
        self._by_handler[conn.inner] = conn
        conn.setup = self._tasks.start(self._handshake(conn, client))

    async def _handshake(self, conn: Connection, client: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: conn,
                client,
                ssl=self._ssl,
                ssl_handshake_timeout=self.limits.header_timeout if self._ssl else None,
            )
        except (TimeoutError, OSError, ssl.SSLError) as err:
            log.debug("webhook listener: handshake failed: %s", err)
            self.forget(conn)
            client.close()
        except asyncio.CancelledError:
            self.forget(conn)
            client.close()
            raise
        finally:
            conn.setup = None


def _bind(host: str | None, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets as ``loop.create_server`` makes them: every address for no host."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen: set[tuple[int, Any]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class _Server(asyncio.AbstractServer):
    """What aiohttp's site keeps to close: the listener behind the AbstractServer API."""

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._closed = asyncio.Event()

    def close(self) -> None:
        self._listener.close()
        self._closed.set()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def is_serving(self) -> bool:
        return not self._closed.is_set()

    async def start_serving(self) -> None:
        return None

    async def serve_forever(self) -> None:
        await self._closed.wait()

    async def wait_closed(self) -> None:
        await self._closed.wait()


class GuardedSite(web.BaseSite):
    """A TCP site with the :class:`Listener`'s accept loop instead of ``create_server``."""

    __slots__ = ("_host", "_port", "listener")

    def __init__(
        self,
        runner: web.BaseRunner,
        listener: Listener,
        host: str | None,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self.listener = listener

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host or '0.0.0.0'}:{self._port}"

    async def start(self) -> None:
        await super().start()
        self.listener.listen(self._host, self._port)
        self._server = _Server(self.listener)


async def start(
    app: web.Application,
    host: str | None,
    port: int,
    ssl_context: ssl.SSLContext | None,
    limits: Limits | None = None,
) -> tuple[web.AppRunner, GuardedSite]:
    """Serve ``app`` on ``host:port`` within ``limits``; clean up with ``runner.cleanup()``."""
    limits = limits or Limits()
    listener = Listener(ssl_context, limits)

    @web.middleware
    async def track(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await listener.around_request(request, handler)

    app.middlewares.append(track)
    runner = web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=limits.idle_timeout,
        lingering_time=limits.linger,
    )
    await runner.setup()
    assert runner.server is not None
    listener.factory = runner.server
    site = GuardedSite(runner, listener, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site
