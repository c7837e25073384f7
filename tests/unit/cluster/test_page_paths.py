"""A LIST page reaches the converter the same whichever way the client reads it: whole
and decoded by the kind's shape, or streamed through PageReader because it is bigger
than the client reads whole, or because the shape refuses it (NaN, which json reads);
and a page that is not a list is refused the same way on every path. A real aiohttp
server on 127.0.0.1 serves the pages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from kdns.cluster import shrink
from kdns.cluster.kube import client, config, informer

PODS = [
    {"metadata": {"name": f"web-{i}", "namespace": "prod", "labels": {"a": "b"}},
     "spec": {"containers": [{"name": "app"}]},
     "status": {"podIP": f"10.0.0.{i}", "podIPs": [{"ip": f"10.0.0.{i}"}]}}
    for i in range(1, 40)
]  # fmt: skip
BROKEN = {"metadata": {"name": "bad", "namespace": "prod"}, "status": {"podIP": "10.0.0.x"}}


@asynccontextmanager
async def serving(body: bytes) -> AsyncIterator[client.Client]:
    async def handle(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/v1/pods", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}"
    api = client.Client(config.Connection(url, False, config.NoCredentials()))
    try:
        yield api
    finally:
        await api.close()
        await runner.cleanup()


def _outcome(raw: Any) -> Any:
    try:
        return shrink.pod_address(raw)
    except shrink.Invalid as exc:
        return str(exc)


async def _list(body: bytes, whole: int, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    monkeypatch.setattr(client, "_WHOLE_PAGE", whole)
    convert: Callable[[Any], Any] = _outcome
    async with serving(body) as api:
        listing = await api.list("/api/v1/pods", convert, limit=0,
                                 shape=informer.POD_ADDRESSES.shape)  # fmt: skip
    return listing.items


@pytest.mark.parametrize("whole", [16 << 20, 100], ids=["whole", "streamed"])
@pytest.mark.parametrize("nan", [False, True], ids=["json", "with-NaN"])
def test_every_path_gives_the_same_items(
    whole: int, nan: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    items: list[Any] = [*PODS, BROKEN, [1]]
    if nan:
        items.append({"metadata": {"name": "n", "namespace": "prod"}, "x": float("nan")})
    body = json.dumps({"kind": "PodList", "metadata": {"resourceVersion": "5"},
                       "items": items}).encode()  # fmt: skip
    got = asyncio.run(_list(body, whole, monkeypatch))
    assert got == [_outcome(i) for i in items]
    assert got[0].ips == ("10.0.0.1",) and "10.0.0.x" in got[len(PODS)]


@pytest.mark.parametrize("whole", [16 << 20, 10], ids=["whole", "streamed"])
@pytest.mark.parametrize("body", [b'{"items": 3}', b"[1, 2]", b'{"items": [', b""])
def test_a_page_that_is_not_a_list_is_refused(
    whole: int, body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(client.ServerError):
        asyncio.run(_list(body, whole, monkeypatch))
