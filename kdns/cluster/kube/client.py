"""A lean API client: paged LIST and streaming WATCH of raw JSON, nothing more.

The generated OpenAPI models of the ``kubernetes`` package cost tens of microseconds
and kilobytes per object; kdns reads tens of thousands of objects and keeps a handful
of fields of each. So this client reads bytes with aiohttp, decodes a page or a watch
line with the kind's msgspec shape (:mod:`kdns.cluster.kube.shapes`: only the fields
kdns reads are built), or with the standard ``json`` module where no shape is given or
the shape refuses the data, and hands every item to a converter (the shrinker) as soon
as its page or line is decoded; no raw object outlives the call that read it.

Failures come back as a few exception classes, which are all the informer's retry
policy needs to tell apart: :class:`Gone` (re-list), :class:`TooManyRequests` (wait
as long as the server says), :class:`Unauthorized`, :class:`ServerError`, and
:class:`Unreachable` for everything below HTTP.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiohttp

from kdns import errors as kdns_errors
from kdns.cluster.kube import config, shapes

log = logging.getLogger(__name__)

T = TypeVar("T")
Raw = dict[str, Any]
Params = Mapping[str, str]
ResponseHook = Callable[[str, str, float], None]
"""Called with (verb, HTTP code or "<error>", seconds) after every request."""

_USER_AGENT = "kdns (informer; aiohttp)"
_WHOLE_PAGE = 16 << 20
"""A page up to this size is read whole and decoded by its shape in one call (a page of
500 Pods is ~0.9 MB); a bigger one (an unpaged list, after a continue token expired)
is decoded as it arrives by :class:`PageReader`, so it is never held whole."""
_BATCH = 100
"""Items handed on between two yields to the event loop."""


class ApiError(kdns_errors.SourceError):
    """The API server refused the request."""

    def __init__(self, code: int, reason: str = "", message: str = "") -> None:
        super().__init__(f"{code} {reason}: {message}" if reason else f"HTTP {code}: {message}")
        self.code = code
        self.reason = reason
        self.message = message

    @property
    def retry_after(self) -> float | None:
        return None


class Gone(ApiError):
    """410: the resourceVersion (or continue token) is older than the server keeps; re-list."""


class Unauthorized(ApiError):
    """401 even after re-reading the credentials: the token is wrong or expired."""


class Forbidden(ApiError):
    """403: authenticated, but RBAC does not allow list/watch of this resource."""


class TooManyRequests(ApiError):
    """429: the server asks us to come back later (Retry-After)."""

    def __init__(self, code: int, reason: str, message: str, retry_after: float) -> None:
        super().__init__(code, reason, message)
        self._retry_after = retry_after

    @property
    def retry_after(self) -> float | None:
        return self._retry_after


class ServerError(ApiError):
    """5xx (or an unexpected status): the server is unwell; retry with backoff."""

    def __init__(
        self, code: int, reason: str = "", message: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(code, reason, message)
        self._retry_after = retry_after

    @property
    def retry_after(self) -> float | None:
        return self._retry_after


class Unreachable(kdns_errors.SourceError):
    """The API server could not be reached, or the connection broke mid-response."""


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    items: list[T]
    resource_version: str
    pages: int
    restarts: int
    """How many times an expired continue token made the list start over."""


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str
    """ADDED, MODIFIED, DELETED or BOOKMARK (ERROR is raised, never yielded)."""
    object: Any
    """The object as sent: a JSON object, unless the server sent something malformed,
    which the informer reports and skips (tearing the stream would only replay it)."""
    received: float
    """``time.perf_counter()`` when the line was read: the start of propagation."""


def _retry_after(headers: Mapping[str, str], status: Raw | None) -> float | None:
    header = headers.get("Retry-After")
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
    details = (status or {}).get("details") or {}
    seconds = details.get("retryAfterSeconds") if isinstance(details, dict) else None
    return float(seconds) if isinstance(seconds, int | float) else None


_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_AFTER_SCALAR = frozenset(" \t\n\r,]}")
_MORE = object()
"""What :meth:`PageReader._value` returns when the value is not all there yet."""


class NotAList(kdns_errors.SourceError, ValueError):
    """The response is not a JSON object with an ``items`` array and a ``metadata`` map."""


class PageReader:
    """One LIST page read as it arrives: ``{"metadata": {...}, "items": [...], ...}``.

    :meth:`feed` takes the bytes received so far and returns the items completed by
    them, each decoded on its own, so a page is never held whole (neither its bytes nor
    its decoded objects) and the caller can hand items on and yield between chunks.
    The top-level members come in any order; those other than ``items`` are decoded
    whole and kept in :attr:`members`. Raises :class:`NotAList` (or ``ValueError``) on
    anything else.
    """

    def __init__(self) -> None:
        self.members: dict[str, Any] = {}
        self.items = 0
        self._text = ""
        self._pos = 0
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._state = "start"  # start, key, colon, value, items, item, next, done
        self._key = ""

    def feed(self, data: bytes, final: bool = False) -> list[Any]:
        text = self._text[self._pos :] + self._utf8.decode(data, final)
        self._text, self._pos = text, 0
        found: list[Any] = []
        while True:
            pos = _SPACE.match(text, self._pos).end()  # type: ignore[union-attr]
            self._pos = pos
            if pos >= len(text):
                break
            state, char = self._state, text[pos]
            if state == "start":
                if char != "{":
                    raise NotAList("not a JSON object")
                self._pos, self._state = pos + 1, "key"
            elif state == "key":
                if char == "}" and not self.members and not self.items:
                    self._pos, self._state = pos + 1, "done"
                    continue
                key = self._value(text, pos, final)
                if key is _MORE:
                    break
                if not isinstance(key, str):
                    raise NotAList("not a JSON object")
                self._key, self._state = key, "colon"
            elif state == "colon":
                if char != ":":
                    raise NotAList("not a JSON object")
                self._pos, self._state = pos + 1, "value"
            elif state == "value":
                if self._key == "items" and char == "[":
                    self._pos, self._state = pos + 1, "item"
                    self.members["items"] = None
                    continue
                value = self._value(text, pos, final)
                if value is _MORE:
                    break
                self.members[self._key] = value
                self._state = "next"
            elif state == "item":
                if char == "]" and not self.items:
                    self._pos, self._state = pos + 1, "next"
                    continue
                item = self._value(text, pos, final)
                if item is _MORE:
                    break
                found.append(item)
                self.items += 1
                self._state = "items"
            elif state == "items":
                if char not in ",]":
                    raise NotAList("items: not a JSON array")
                self._pos, self._state = pos + 1, ("item" if char == "," else "next")
            elif state == "next":
                if char not in ",}":
                    raise NotAList("not a JSON object")
                self._pos, self._state = pos + 1, ("key" if char == "," else "done")
            else:
                raise NotAList("data after the JSON object")
        if final:
            self._check()
        return found

    def _value(self, text: str, pos: int, final: bool) -> Any:
        """The JSON value at ``pos``, or _MORE when it may not be complete yet."""
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError:
            if final:
                raise
            return _MORE  # most likely cut by the chunk boundary; the end tells
        scalar = not isinstance(value, dict | list | str)
        if scalar and not final and (end >= len(text) or text[end] not in _AFTER_SCALAR):
            return _MORE  # a number cut by the chunk boundary ("1." of "1.5")
        self._pos = end
        return value

    def _check(self) -> None:
        if self._state != "done":
            raise NotAList("the JSON ends early")
        items = self.members.get("items", ())
        meta = self.members.get("metadata")
        if items not in (None, ()) or not isinstance(meta or {}, dict):
            raise NotAList("not a list")


def error_for(code: int, status: Raw | None, headers: Mapping[str, str] | None = None) -> ApiError:
    """The exception for an HTTP status (or a watch ERROR event's Status object)."""
    status = status if isinstance(status, dict) else {}
    reason, message = str(status.get("reason") or ""), str(status.get("message") or "")
    retry = _retry_after(headers or {}, status)
    if code == 410:
        return Gone(code, reason, message)
    if code == 401:
        return Unauthorized(code, reason, message)
    if code == 403:
        return Forbidden(code, reason, message)
    if code == 429:
        return TooManyRequests(code, reason, message, 1.0 if retry is None else retry)
    return ServerError(code, reason, message, retry)


class Client:
    """One aiohttp session to one API server; create and use it inside the event loop."""

    def __init__(
        self,
        connection: config.Connection,
        *,
        request_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        on_response: ResponseHook | None = None,
    ) -> None:
        self.connection = connection
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.on_response = on_response
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ssl=self.connection.ssl),
                headers={"Accept": "application/json", "User-Agent": _USER_AGENT},
                auto_decompress=True,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _open(
        self, path: str, params: Params, verb: str, limits: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        """GET ``path``; a 2xx response is returned open, anything else raised."""
        url = self.connection.base_url + path
        credentials = self.connection.credentials
        for attempt in (1, 2):
            started = time.perf_counter()
            headers = await credentials.headers()
            try:
                response = await self._get_session().get(
                    url,
                    params=params,
                    headers=headers,
                    timeout=limits,
                    server_hostname=self.connection.server_hostname,
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self._observe(verb, "<error>", started)
                hint = self.connection.failure_hint(exc)
                raise Unreachable(f"{verb} {path}: {exc or type(exc).__name__}{hint}") from exc
            self._observe(verb, str(response.status), started)
            if response.status < 300:
                return response
            try:
                body = await response.read()
            except (aiohttp.ClientError, OSError, TimeoutError):
                body = b""
            finally:
                response.release()
            try:
                status = json.loads(body) if body else None
            except ValueError:
                status = None
            if response.status == 401 and attempt == 1:
                credentials.invalidate()  # a rotated token file: read it and try once more
                continue
            raise error_for(response.status, status, response.headers)
        raise AssertionError("unreachable")

    def _observe(self, verb: str, code: str, started: float) -> None:
        if self.on_response is not None:
            self.on_response(verb, code, time.perf_counter() - started)

    async def _get_page(
        self,
        path: str,
        params: Params,
        take: Callable[[Any], None],
        shape: shapes.Reader | None = None,
    ) -> Raw:
        """GET one LIST page, handing each item to ``take``, and yielding to the event
        loop after every chunk and every few items, so queries are answered meanwhile;
        returns the page's ``metadata``.

        With a ``shape``, a page up to :data:`_WHOLE_PAGE` bytes is read whole and
        decoded in one call, building only the fields kdns reads; anything bigger, or
        anything the shape refuses, goes through :class:`PageReader`, which decodes
        items whole as their bytes arrive, so the page is never held whole.
        """
        timeout = aiohttp.ClientTimeout(
            total=self.request_timeout, sock_connect=self.connect_timeout
        )
        response = await self._open(path, params, "LIST", timeout)
        reader = PageReader()
        held: list[bytes] | None = [] if shape is not None else None
        size = 0
        try:
            content = response.content
            while True:
                try:
                    chunk = await content.readany()
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    raise Unreachable(f"LIST {path}: {exc or type(exc).__name__}") from exc
                if held is not None:
                    size += len(chunk)
                    if chunk and size <= _WHOLE_PAGE:
                        held.append(chunk)
                        continue
                    body, held = b"".join(held), None
                    decoded = shape.page(body) if chunk == b"" and shape is not None else None
                    if decoded is not None:
                        items, page_meta = decoded
                        for start in range(0, len(items), _BATCH):
                            for item in items[start : start + _BATCH]:
                                take(item)
                            await asyncio.sleep(0)
                        return page_meta
                    chunk = body + chunk  # too big, or refused: read it the slow way
                for item in self._feed(path, response.status, reader, chunk):
                    take(item)
                if not chunk:
                    break
                await asyncio.sleep(0)  # queries and watch events between chunks
        finally:
            response.release()
        meta = reader.members.get("metadata")
        return meta if isinstance(meta, dict) else {}

    @staticmethod
    def _feed(path: str, status: int, reader: PageReader, chunk: bytes) -> list[Any]:
        try:
            return reader.feed(chunk, final=not chunk)
        except NotAList as exc:
            raise ServerError(status, "", f"LIST {path}: {exc}") from exc
        except (ValueError, RecursionError) as exc:
            raise ServerError(status, "", f"LIST {path}: not JSON: {exc}") from exc

    async def list(
        self,
        path: str,
        convert: Callable[[Any], T | None],
        params: Params | None = None,
        limit: int = 500,
        shape: shapes.Reader | None = None,
    ) -> Listing[T]:
        """Every item of a collection, converted page by page (None results dropped).

        ``convert`` gets every item as sent, malformed or not (not a JSON object, say),
        and decides; with a ``shape``, a well-formed item comes reduced to the fields
        the shape names (see :mod:`kdns.cluster.kube.shapes`). Paged with
        ``limit``/``continue`` so neither side holds the whole collection as JSON.
        When a continue token expires (410, the pages took longer than the server
        keeps history), the list starts over as a single unpaged request, as
        client-go's pager does: restarting paged could chase compaction forever, and
        an unpaged list is consistent by construction.
        """
        base = dict(params or {})
        restarts = 0
        paged = limit > 0
        while True:
            items: list[T] = []
            token = ""
            pages = 0
            take = _collector(convert, items)
            try:
                while True:
                    query = dict(base)
                    if paged:
                        query["limit"] = str(limit)
                    if token:
                        query["continue"] = token
                    meta = await self._get_page(path, query, take, shape)
                    pages += 1
                    token = str(meta.get("continue") or "")
                    if not token:
                        return Listing(items, str(meta.get("resourceVersion") or ""), pages,
                                       restarts)  # fmt: skip
            except Gone:
                if not token:
                    raise  # not an expired continue token: the caller decides
                restarts += 1
                paged = False
                log.info("LIST %s: continue token expired; listing again in one request", path)

    async def watch(
        self,
        path: str,
        resource_version: str,
        params: Params | None = None,
        timeout_seconds: int = 300,
        inactivity: float = 120.0,
        shape: shapes.Reader | None = None,
    ) -> WatchStream:
        """Open a watch of events after ``resource_version``; iterate the stream it returns.

        Returns once the server accepted the watch (HTTP 200), so the caller knows the
        connection is back before the first event, which may be minutes away.
        """
        query = dict(params or {})
        query.update(
            watch="1",
            resourceVersion=resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(timeout_seconds),
        )
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout)
        response = await self._open(path, query, "WATCH", timeout)
        return WatchStream(path, response, inactivity, shape)


def _collector(convert: Callable[[Any], T | None], items: list[T]) -> Callable[[Any], None]:
    def take(raw: Any) -> None:
        converted = convert(raw)
        if converted is not None:
            items.append(converted)

    return take


class WatchStream:
    """One open watch: ``async with stream: async for event in stream: ...``.

    Lines are split by hand (not ``readline``, which caps a line at aiohttp's buffer
    size, and a slice with a thousand endpoints is bigger). Iteration ends quietly
    when the server closes the stream (its ``timeoutSeconds``: ``ended == "timeout"``)
    or when nothing at all, not even a bookmark, arrives for ``inactivity`` seconds
    (``ended == "inactive"``); a torn stream raises :class:`Unreachable`; an ERROR event
    raises its mapped error (:class:`Gone` for 410 Expired).
    """

    def __init__(
        self,
        path: str,
        response: aiohttp.ClientResponse,
        inactivity: float,
        shape: shapes.Reader | None = None,
    ) -> None:
        self.path = path
        self.inactivity = inactivity
        self.shape = shape
        self.ended = ""
        self._response = response

    async def __aenter__(self) -> WatchStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._response.close()

    async def __aiter__(self) -> AsyncIterator[WatchEvent]:
        content = self._response.content
        buffer = b""
        while True:
            try:
                async with asyncio.timeout(self.inactivity):
                    chunk = await content.readany()
            except TimeoutError:
                self.ended = "inactive"
                return
            except (aiohttp.ClientError, OSError) as exc:
                raise Unreachable(f"WATCH {self.path}: {exc or type(exc).__name__}") from exc
            if not chunk:
                if buffer.strip():
                    raise Unreachable(f"WATCH {self.path}: stream ended inside an event")
                self.ended = "timeout"
                return
            buffer += chunk
            if b"\n" not in chunk:
                continue
            *lines, buffer = buffer.split(b"\n")
            received = time.perf_counter()
            for line in lines:
                if line.strip():
                    yield _event(self.path, line, received, self.shape)


def _event(path: str, line: bytes, received: float,
           shape: shapes.Reader | None = None) -> WatchEvent:  # fmt: skip
    """One watch line: decoded by the kind's shape when it can, else whole by json."""
    fast = shape.event(line) if shape is not None else None
    if fast is not None:
        return WatchEvent(fast[0], fast[1], received)
    try:
        parsed = json.loads(line)
        kind, obj = parsed["type"], parsed["object"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise Unreachable(f"WATCH {path}: unreadable event: {exc}") from exc
    if kind == "ERROR":
        code = obj.get("code") if isinstance(obj, dict) else None
        raise error_for(code if isinstance(code, int) else 500, obj)
    return WatchEvent(str(kind), obj, received)
