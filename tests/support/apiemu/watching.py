"""Watch streams: replay from the event log, then follow the store, with bookmarks.

The shape is kube-apiserver's watch cache: a watch from revision N first gets every
logged event after N (or, from "" or "0", the current state as synthetic ADDED
events), then live events; an object that starts or stops matching the selectors
arrives as ADDED or DELETED; a watch from a compacted revision gets HTTP 200 and a
single ERROR event carrying a 410 Expired Status, then the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from . import status
from .faults import Cut
from .resources import Resource
from .selectors import Filter
from .store import Entry, Event, Store

INITIAL_EVENTS_END = "k8s.io/initial-events-end"
_LIVENESS_CHECK = 1.0
"""Seconds between checks that the client is still there while the stream is idle."""


class WatchStream:
    """One open watch: a queue fed by the store, drained by its HTTP handler."""

    def __init__(self, resource: Resource, filter_: Filter) -> None:
        self.resource = resource
        self.filter = filter_
        self.queue: asyncio.Queue[Event | Cut | bytes] = asyncio.Queue()

    def offer(self, event: Event) -> None:
        if event.resource is self.resource:
            self.queue.put_nowait(event)


class WatchHub:
    """The open watches: counted so tests can await a watcher, and cut on demand."""

    def __init__(self) -> None:
        self._streams: set[WatchStream] = set()
        self._changed = asyncio.Event()

    def add(self, stream: WatchStream) -> None:
        self._streams.add(stream)
        self._notify()

    def remove(self, stream: WatchStream) -> None:
        self._streams.discard(stream)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def count(self, resource: Resource | None = None) -> int:
        return sum(1 for s in self._streams if resource is None or s.resource is resource)

    async def wait_for(self, count: int, resource: Resource | None = None) -> None:
        """Return once at least ``count`` watches (of ``resource``) are open."""
        while self.count(resource) < count:
            await self._changed.wait()

    def cut(self, how: Cut) -> int:
        for stream in self._streams:
            stream.queue.put_nowait(how)
        return len(self._streams)

    def inject(self, resource: Resource, kind: str, obj_json: bytes) -> int:
        """Send an event line with this raw object to every open watch of ``resource``,
        bypassing the store (which cannot hold malformed objects); returns how many."""
        streams = [s for s in self._streams if s.resource is resource]
        for stream in streams:
            stream.queue.put_nowait(_line(kind, obj_json))
        return len(streams)


def _line(kind: str, obj_json: bytes) -> bytes:
    return b'{"type":"' + kind.encode() + b'","object":' + obj_json + b"}\n"


def _bookmark(resource: Resource, revision: int, initial_end: bool = False) -> bytes:
    meta: dict[str, Any] = {"resourceVersion": str(revision)}
    if initial_end:
        meta["annotations"] = {INITIAL_EVENTS_END: "true"}
    obj = {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": meta}
    return _line("BOOKMARK", json.dumps(obj).encode())


def visible(event: Event, filter_: Filter) -> tuple[str, Entry] | None:
    """The event as a client with this filter sees it, if at all."""
    now = filter_.matches(event.entry.obj)
    if event.type != "MODIFIED":
        return (event.type, event.entry) if now else None
    before = event.previous is not None and filter_.matches(event.previous.obj)
    if now:
        return ("MODIFIED" if before else "ADDED"), event.entry
    if before and event.previous is not None:
        gone = copy.deepcopy(event.previous.obj)
        gone["metadata"]["resourceVersion"] = str(event.revision)
        return "DELETED", Entry(gone)
    return None


def _flag(query: Mapping[str, str], name: str) -> bool:
    return query.get(name, "").lower() in ("1", "true")


class WatchRequest:
    """The parameters of one watch, validated before any byte is sent."""

    def __init__(self, query: Mapping[str, str], default_timeout: float | None) -> None:
        self.revision = query.get("resourceVersion", "")
        self.bookmarks = _flag(query, "allowWatchBookmarks")
        self.send_initial = _flag(query, "sendInitialEvents")
        if self.revision not in ("", "0") and not self.revision.isdigit():
            raise status.bad_request(f"invalid resource version: {self.revision}")
        timeout = query.get("timeoutSeconds")
        try:
            self.timeout = float(timeout) if timeout else default_timeout
        except ValueError as exc:
            raise status.bad_request(f"invalid timeoutSeconds: {timeout}") from exc


async def serve(
    request: web.Request,
    store: Store,
    hub: WatchHub,
    resource: Resource,
    filter_: Filter,
    params: WatchRequest,
    bookmark_interval: float,
    expired_as_http_410: bool,
) -> web.StreamResponse:
    stream = WatchStream(resource, filter_)
    store.subscribe(stream.offer)
    try:
        initial: Iterable[tuple[str, Entry]]
        error: status.ApiError | None = None
        last = store.revision
        if params.send_initial or params.revision in ("", "0"):
            initial = [("ADDED", e) for e in store.entries(resource) if filter_.matches(e.obj)]
        else:
            requested = int(params.revision)
            try:
                if requested > store.revision:
                    raise status.too_large_resource_version(requested, store.revision)
                events = store.events_after(requested)
            except status.ApiError as exc:
                if expired_as_http_410:
                    raise
                error, events = exc, []
            initial = [v for e in events if e.resource is resource and (v := visible(e, filter_))]
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if error is not None:
            await response.write(_line("ERROR", error.body()))
            await response.write_eof()
            return response
        hub.add(stream)
        try:
            for kind, entry in initial:
                await response.write(_line(kind, entry.full_json()))
            if params.send_initial and params.bookmarks:
                await response.write(_bookmark(resource, last, initial_end=True))
            await _follow(request, response, stream, store, params, bookmark_interval, last)
        except ConnectionError:
            pass  # the client went away; nothing to finish
        finally:
            hub.remove(stream)
        return response
    finally:
        store.unsubscribe(stream.offer)


async def _follow(
    request: web.Request,
    response: web.StreamResponse,
    stream: WatchStream,
    store: Store,
    params: WatchRequest,
    bookmark_interval: float,
    last: int,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = None if params.timeout is None else loop.time() + params.timeout
    next_bookmark = loop.time() + bookmark_interval
    while True:
        now = loop.time()
        if deadline is not None and now >= deadline:
            await response.write_eof()
            return
        if params.bookmarks and now >= next_bookmark:
            await response.write(_bookmark(stream.resource, store.revision))
            next_bookmark = now + bookmark_interval
        wake = min(
            (t for t in (deadline, next_bookmark if params.bookmarks else None) if t is not None),
            default=now + _LIVENESS_CHECK,
        )
        try:
            async with asyncio.timeout(max(0.0, min(wake - now, _LIVENESS_CHECK))):
                item = await stream.queue.get()
        except TimeoutError:
            if request.transport is None or request.transport.is_closing():
                return
            continue
        if isinstance(item, Cut):
            await _cut(request, response, stream, store, item)
            return
        if isinstance(item, bytes):
            await response.write(item)
            continue
        if item.revision <= last:
            continue
        last = item.revision
        seen = visible(item, stream.filter)
        if seen is not None:
            await response.write(_line(seen[0], seen[1].full_json()))


async def _cut(
    request: web.Request, response: web.StreamResponse, stream: WatchStream, store: Store, how: Cut
) -> None:
    if how is Cut.END:
        await response.write_eof()
        return
    if how is Cut.MID_LINE:
        torn = _bookmark(stream.resource, store.revision)
        await response.write(torn[: len(torn) // 2])
    if request.transport is not None:
        with contextlib.suppress(Exception):
            request.transport.abort()
