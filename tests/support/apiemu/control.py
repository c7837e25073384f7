"""``/_emu/``: the side channel through which another process drives the emulator.

Each route is a thin JSON wrapper over one :class:`tests.support.apiemu.emulator.Emulator` method,
so the Python API and the HTTP API cannot disagree. The routes are served on the
control port (always up) and on the API port (not authenticated, never faulted).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import status
from .faults import Cut

if TYPE_CHECKING:
    from .emulator import Emulator

Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _reply(body: Any, code: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body).encode(), status=code, content_type="application/json"
    )


def _guarded(handler: Callable[[web.Request], Awaitable[Any]]) -> Route:
    async def route(request: web.Request) -> web.StreamResponse:
        try:
            return _reply(await handler(request))
        except status.ApiError as error:
            return web.Response(
                body=error.body(), status=error.code, content_type="application/json"
            )

    return route


async def _json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    body = json.loads(raw) if raw.strip() else {}
    if not isinstance(body, dict):
        raise status.bad_request("expected a JSON object")
    return body


def routes(emu: Emulator) -> list[web.RouteDef]:
    async def state(request: web.Request) -> Any:
        return emu.state()

    async def requests(request: web.Request) -> Any:
        return [
            {"method": r.method, "path": r.path, "query": dict(r.query), "at": r.at}
            for r in emu.requests()
        ]

    async def put(request: web.Request) -> Any:
        raw = await request.read()
        body = json.loads(raw)
        if isinstance(body, list):  # a batch: answer with the resourceVersion after it
            return {"resourceVersion": emu.put_many(body)}
        return emu.put(await _json(request))

    async def list_objects(request: web.Request) -> Any:
        q = request.query
        return emu.objects(q.get("apiVersion", ""), q.get("kind", ""), q.get("namespace"))

    async def delete(request: web.Request) -> Any:
        q = request.query
        return emu.delete(
            q.get("apiVersion", ""), q.get("kind", ""), q.get("name", ""), q.get("namespace", "")
        )

    async def compact(request: web.Request) -> Any:
        revision = (await _json(request)).get("resourceVersion")
        return {"compactedRevision": emu.compact(None if revision is None else int(revision))}

    async def cut(request: web.Request) -> Any:
        how = Cut((await _json(request)).get("how", Cut.RESET.value))
        return {"cut": emu.cut_watches(how)}

    async def fail(request: web.Request) -> Any:
        body = await _json(request)
        emu.fail_next(
            int(body.get("count", 1)),
            int(body.get("code", 429)),
            int(body.get("retryAfter", 1)),
            body.get("pathContains"),
        )
        return {}

    async def delay(request: web.Request) -> Any:
        emu.set_delay(float((await _json(request)).get("seconds", 0)))
        return {}

    async def token(request: web.Request) -> Any:
        emu.set_token((await _json(request)).get("token"))
        return {}

    async def expired_watch_reply(request: web.Request) -> Any:
        reply = (await _json(request)).get("reply")
        if reply not in ("error-event", "http-410"):
            raise status.bad_request("reply must be error-event or http-410")
        emu.set_expired_watch_reply(reply)
        return {}

    async def down(request: web.Request) -> Any:
        if request.transport is not None and (
            request.transport.get_extra_info("sockname")[1] == emu.port
        ):
            raise status.bad_request("/_emu/down must be sent to the control port")
        await emu.go_down()
        return emu.state()

    async def up(request: web.Request) -> Any:
        await emu.come_up()
        return emu.state()

    table: list[tuple[str, str, Callable[[web.Request], Awaitable[Any]]]] = [
        ("GET", "state", state),
        ("GET", "requests", requests),
        ("POST", "objects", put),
        ("GET", "objects", list_objects),
        ("DELETE", "objects", delete),
        ("POST", "compact", compact),
        ("POST", "cut-watches", cut),
        ("POST", "fail", fail),
        ("POST", "delay", delay),
        ("POST", "token", token),
        ("POST", "expired-watch-reply", expired_watch_reply),
        ("POST", "down", down),
        ("POST", "up", up),
    ]
    return [web.route(method, f"/_emu/{name}", _guarded(fn)) for method, name, fn in table]
