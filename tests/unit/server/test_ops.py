"""The ops endpoints' server (kdns.server.ops) over real sockets, with a real HTTP client.

It replaced aiohttp.web's Application and router for ``/health``, ``/ready``, ``/metrics``
and ``/debug/kdns/*`` (issue 15: ~1.9 MiB of RSS), so it must answer as they did: the
route's response on GET and HEAD (no body), 404 for another path, 405 with ``Allow`` for
another method, and a close that waits for a request in flight.
"""

from __future__ import annotations

import asyncio
import http.client

from kdns.server import ops
from kdns.server.plan import ListenAddress


def _ask(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        reply = conn.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read()
    finally:
        conn.close()


async def _site(**routes: ops.Route) -> ops.Site:
    site = ops.Site(ListenAddress("127.0.0.1", 0))
    for path, route in routes.items():
        site.add_get("/" + path, route)
    await site.start()
    return site


async def _ok(request: ops.Request) -> ops.Response:
    return ops.Response(text="OK")


def test_routes_as_aiohttps_router_answered() -> None:
    async def main() -> None:
        site = await _site(health=_ok)
        ask = asyncio.to_thread
        try:
            assert site.port != 0
            status, headers, body = await ask(_ask, site.port, "GET", "/health")
            assert (status, body) == (200, b"OK")
            assert headers["Content-Type"] == "text/plain; charset=utf-8"
            status, headers, body = await ask(_ask, site.port, "HEAD", "/health")
            assert (status, headers["Content-Length"], body) == (200, "2", b"")
            status, _, body = await ask(_ask, site.port, "GET", "/ready")
            assert (status, body) == (404, b"404: Not Found")
            status, headers, _ = await ask(_ask, site.port, "POST", "/health")
            assert (status, headers["Allow"]) == (405, "GET,HEAD")
        finally:
            await site.close()

    asyncio.run(main())


def test_query_strings_and_json_reach_the_route() -> None:
    async def report(request: ops.Request) -> ops.Response:
        return ops.json_response({"format": request.query.get("format")}, status=404)

    async def main() -> None:
        site = await _site(report=report)
        try:
            status, headers, body = await asyncio.to_thread(
                _ask, site.port, "GET", "/report?format=json"
            )
            assert (status, body) == (404, b'{"format": "json"}')
            assert headers["Content-Type"] == "application/json; charset=utf-8"
        finally:
            await site.close()

    asyncio.run(main())


def test_close_lets_a_request_in_flight_finish_and_frees_the_port() -> None:
    async def main() -> None:
        entered, release = asyncio.Event(), asyncio.Event()

        async def slow(request: ops.Request) -> ops.Response:
            entered.set()
            await release.wait()
            return ops.Response(text="late")

        site = await _site(slow=slow)
        port = site.port
        asking = asyncio.ensure_future(asyncio.to_thread(_ask, port, "GET", "/slow"))
        await entered.wait()
        closing = asyncio.ensure_future(site.close())
        await asyncio.sleep(0)
        release.set()
        await closing
        status, _, body = await asking
        assert (status, body) == (200, b"late")
        again = ops.Site(ListenAddress("127.0.0.1", port))  # the port is free again
        await again.start()
        await again.close()

    asyncio.run(main())
