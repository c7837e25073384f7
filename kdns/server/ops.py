"""The ops endpoints (``/health``, ``/ready``, ``/metrics``, ``/debug/kdns/*``) on aiohttp's
low-level server.

Each address serves a few fixed GET paths. ``aiohttp.web``'s Application, router and runner
(and what they import) cost about 1.4 MiB of RSS in every kdns process, a tenth of the issue
15 budget's margin, for routing that is one dict lookup here; aiohttp's protocol, request
and response classes still do the HTTP. The webhooks keep ``aiohttp.web`` (they are
imported only when configured, see :mod:`kdns.server.http`).

As aiohttp's router answered: a path not served is 404, another method than GET or HEAD on
a served path 405 with ``Allow``, and HEAD gets GET's headers without the body.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web_request, web_response, web_server

from kdns.server.plan import ListenAddress

log = logging.getLogger("kdns")

Request = web_request.BaseRequest
Response = web_response.Response
json_response = web_response.json_response
Route = Callable[[Request], Awaitable[Response]]

SHUTDOWN_TIMEOUT = 2.0
"""How long a close waits for requests in flight (a scrape, a probe) to finish."""


class Site:
    """The paths served on one address, and its listening socket once started."""

    def __init__(self, address: ListenAddress) -> None:
        self.address = address
        self.routes: dict[str, Route] = {}
        self._server: web_server.Server | None = None
        self._listener: asyncio.Server | None = None

    def add_get(self, path: str, route: Route) -> None:
        self.routes[path] = route

    @property
    def port(self) -> int:
        """The bound port (the address's, or the one the kernel chose for port 0)."""
        if self._listener is None or not self._listener.sockets:
            return self.address.port
        return int(self._listener.sockets[0].getsockname()[1])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = web_server.Server(self._handle, access_log=None)
        host = self.address.host or None
        self._listener = await loop.create_server(
            self._server, host, self.address.port, reuse_address=True
        )
        log.info("serving HTTP on %s (%s)", self.address, ", ".join(sorted(self.routes)))

    async def close(self) -> None:
        """Stop accepting, then close the connections (waiting for requests in flight)."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._server is not None:
            server, self._server = self._server, None
            await asyncio.sleep(0)  # requests already read start before idle ones close
            server.pre_shutdown()
            await server.shutdown(SHUTDOWN_TIMEOUT)

    async def _handle(self, request: Request) -> web_response.StreamResponse:
        route = self.routes.get(request.path)
        if route is None:
            return Response(status=404, text="404: Not Found")
        if request.method not in (hdrs.METH_GET, hdrs.METH_HEAD):
            return Response(
                status=405, text="405: Method Not Allowed", headers={hdrs.ALLOW: "GET,HEAD"}
            )
        return await route(request)
