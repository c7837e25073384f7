"""The HTTP edge: kube-apiserver's REST paths, errors as Status, faults applied first.

Request handling reads top to bottom: record, authenticate, apply injected faults,
route the path to (resource, namespace, name), dispatch on the verb. The store,
selectors and watch logic know nothing of HTTP; :class:`status.ApiError` is turned
into a response here and only here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import discovery, openapi, patching, resources, status, watching
from .faults import Faults
from .resources import Resource
from .selectors import FieldSelector, Filter, LabelSelector
from .store import Obj, Store

CONTROL_PREFIX = "/_emu/"
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One API request as the emulator saw it, for tests that assert on client behaviour."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    at: float

    def param(self, name: str) -> str | None:
        return next((value for key, value in self.query if key == name), None)

    @property
    def is_watch(self) -> bool:
        return (self.param("watch") or "").lower() in ("1", "true")


@dataclass(slots=True)
class Backend:
    """The state every API request reads: shared by the app across restarts."""

    store: Store
    faults: Faults
    hub: watching.WatchHub
    bookmark_interval: float
    watch_timeout: float | None
    requests: deque[RequestRecord] = field(default_factory=lambda: deque(maxlen=10_000))
    require_client_cert: bool = False
    """Over TLS: a request must carry a client certificate the cluster CA signed (or a
    valid token), as kube-apiserver with anonymous auth disabled."""


BACKEND = web.AppKey("backend", Backend)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(body: Any, code: int = 200) -> web.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return web.Response(body=raw, status=code, content_type=JSON)


def error_response(error: status.ApiError) -> web.Response:
    return web.Response(
        body=error.body(), status=error.code, content_type=JSON, headers=error.headers
    )


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(CONTROL_PREFIX):
        return await handler(request)
    backend = request.app[BACKEND]
    backend.requests.append(
        RequestRecord(request.method, request.path, tuple(request.query.items()), time.time())
    )
    try:
        if not _authenticated(request, backend):
            raise status.unauthorized()
        failure = backend.faults.take_failure(request.path_qs)
        if failure is not None:
            raise failure
        if backend.faults.delay > 0:
            await asyncio.sleep(backend.faults.delay)
        return await handler(request)
    except status.ApiError as error:
        return error_response(error)
    except (web.HTTPException, asyncio.CancelledError):
        raise
    except Exception as exc:  # a bug here must still answer like an apiserver would
        logging.getLogger(__name__).exception("apiemu handler failed")
        return error_response(status.internal_error(repr(exc)))


def _authenticated(request: web.Request, backend: Backend) -> bool:
    """A union of authenticators, as kube-apiserver's: a bearer token or a client cert.

    The TLS layer already refused a certificate the CA did not sign; here only its
    absence matters (``peercert`` is None when the client sent none).
    """
    header = request.headers.get("Authorization")
    if backend.faults.tokens is not None and header:
        return backend.faults.authorized(header)
    if backend.require_client_cert:
        transport = request.transport
        return transport is not None and bool(transport.get_extra_info("peercert"))
    return backend.faults.authorized(header)


def build_app(backend: Backend, control_routes: list[web.RouteDef]) -> web.Application:
    """The API app; ``control_routes`` go first so the catch-all does not shadow them."""
    app = web.Application(middlewares=[api_middleware])
    app[BACKEND] = backend
    app.add_routes(control_routes)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


# -- routing --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    resource: Resource
    namespace: str | None
    """The namespace in the URL; None for cluster-scoped or all-namespaces requests."""
    name: str | None
    """None for the collection."""


def _target(group: str, version: str, rest: list[str]) -> Target | None:
    if len(rest) in (3, 4) and rest[0] == "namespaces":
        resource = resources.by_path(group, version, rest[2])
        if resource is None or not resource.namespaced:
            return None
        return Target(resource, rest[1], rest[3] if len(rest) == 4 else None)
    if len(rest) in (1, 2):
        resource = resources.by_path(group, version, rest[0])
        if resource is None or (len(rest) == 2 and resource.namespaced):
            return None
        return Target(resource, None, rest[1] if len(rest) == 2 else None)
    return None


async def handle(request: web.Request) -> web.StreamResponse:
    path = request.path.rstrip("/") or "/"
    if path == "/version":
        return json_response(discovery.VERSION_INFO)
    if path == "/api":
        return json_response(discovery.core_versions(request.host))
    if path == "/apis":
        return json_response(discovery.group_list())
    if path == "/openapi/v3":
        return json_response(openapi.root())
    if path.startswith("/openapi/v3/"):
        parts = path.removeprefix("/openapi/v3/").split("/")
        group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[-1])
        document = openapi.document(group, version) if len(parts) in (2, 3) else None
        if document is None:
            raise status.path_not_found()
        return json_response(document)
    parts = path.strip("/").split("/")
    found: Any = None
    if parts[0] == "api" and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    elif parts[0] == "apis" and len(parts) == 2:
        found = discovery.group(parts[1])
        rest = None
    else:
        rest = None
    if rest == []:
        found = discovery.resource_list(group, version)
    if rest is None or rest == []:
        if found is None:
            raise status.path_not_found()
        return json_response(found)
    target = _target(group, version, rest)
    if target is None:
        raise status.path_not_found()
    return await _dispatch(request, request.app[BACKEND], target)


async def _dispatch(request: web.Request, backend: Backend, target: Target) -> web.StreamResponse:
    method = request.method
    if target.name is None:
        if method == "GET":
            if (request.query.get("watch") or "").lower() in ("1", "true"):
                return await _watch(request, backend, target)
            return json_response(_list(backend, target, request.query))
        if method == "POST" and (target.namespace is not None or not target.resource.namespaced):
            return json_response(_create(backend, target, await _body(request)), 201)
    else:
        if method == "GET":
            return json_response(_get(backend, target))
        if method == "PUT":
            return json_response(_update(backend, target, await _body(request)))
        if method == "PATCH":
            patched = _patch(backend, target, request.content_type, await _body(request))
            return json_response(patched)
        if method == "DELETE":
            return json_response(_delete(backend, target, await _body(request, optional=True)))
    raise status.method_not_allowed(method)


async def _body(request: web.Request, optional: bool = False) -> Any:
    raw = await request.read()
    if not raw.strip():
        if optional:
            return None
        raise status.bad_request("the request body is empty")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise status.bad_request(f"couldn't decode the request body as JSON: {exc}") from exc


# -- verbs ----------------------------------------------------------------------------


def _get(backend: Backend, target: Target) -> Obj:
    assert target.name is not None
    found = backend.store.get(target.resource, target.namespace or "", target.name)
    if found is None:
        raise status.not_found(target.resource, target.name)
    return found


def _check_body(target: Target, obj: Any) -> Obj:
    resource = target.resource
    if not isinstance(obj, dict):
        raise status.bad_request("the request body must be a JSON object")
    if (
        obj.get("kind", resource.kind) != resource.kind
        or obj.get("apiVersion", resource.api_version) != resource.api_version
    ):
        raise status.bad_request(
            f"the API version in the data ({obj.get('apiVersion')}) does not match the expected "
            f"API version ({resource.api_version})"
        )
    meta = obj.setdefault("metadata", {})
    if resource.namespaced:
        if meta.get("namespace", target.namespace) != target.namespace:
            raise status.bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        meta["namespace"] = target.namespace
    if target.name is not None and meta.get("name", target.name) != target.name:
        raise status.bad_request(
            f"the name of the object ({meta.get('name')}) does not match the name on the URL "
            f"({target.name})"
        )
    return obj


def _create(backend: Backend, target: Target, body: Any) -> Obj:
    obj = _check_body(target, body)
    if (
        target.namespace is not None
        and backend.store.get(resources.named("namespaces"), "", target.namespace) is None
    ):
        raise status.namespace_not_found(target.namespace)
    obj["metadata"].pop("resourceVersion", None)
    return backend.store.create(target.resource, obj)


def _missing(backend: Backend, target: Target) -> bool:
    assert target.name is not None
    return backend.store.get(target.resource, target.namespace or "", target.name) is None


def _update(backend: Backend, target: Target, body: Any) -> Obj:
    obj = _check_body(target, body)
    obj["metadata"].setdefault("name", target.name)
    expect = obj["metadata"].get("resourceVersion") or None
    return backend.store.update(target.resource, obj, expect)


def _patch(backend: Backend, target: Target, content_type: str, body: Any) -> Obj:
    if content_type == patching.APPLY_PATCH and _missing(backend, target):
        return _create(backend, target, body)  # server-side apply creates
    current = _get(backend, target)
    patched = patching.apply(content_type, current, body)
    meta = patched.setdefault("metadata", {})
    if meta.get("name") != target.name or (
        target.resource.namespaced and meta.get("namespace") != target.namespace
    ):
        raise status.invalid(target.resource, target.name or "", "metadata.name: Invalid "
                             "value: field is immutable")  # fmt: skip
    expect = meta.get("resourceVersion")
    if expect != current["metadata"]["resourceVersion"]:
        raise status.conflict(target.resource, target.name or "")
    return backend.store.update(target.resource, patched, expect)


def _delete(backend: Backend, target: Target, body: Any) -> Obj:
    assert target.name is not None
    resource, store = target.resource, backend.store
    options = body if isinstance(body, dict) else {}
    preconditions = options.get("preconditions") or {}
    namespace = target.namespace or ""
    if resource.kind == "Namespace" and store.get(resource, "", target.name) is not None:
        for contained in resources.RESOURCES:
            if contained.namespaced:
                for entry in store.entries(contained):
                    if entry.key[0] == target.name:
                        store.delete(contained, target.name, entry.key[1])
    gone = store.delete(
        resource,
        namespace,
        target.name,
        preconditions.get("resourceVersion"),
        preconditions.get("uid"),
    )
    if resource.returns_deleted_object:
        return gone
    details: dict[str, Any] = {"name": target.name, "kind": resource.plural}
    if resource.group:
        details["group"] = resource.group
    details["uid"] = gone["metadata"]["uid"]
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": details}  # fmt: skip


# -- list and watch -------------------------------------------------------------------


def _filter(target: Target, query: Any) -> Filter:
    return Filter(
        target.namespace,
        LabelSelector.parse(query.get("labelSelector")),
        FieldSelector.parse(query.get("fieldSelector"), target.resource.field_labels),
    )


def encode_continue(revision: int, key: tuple[str, str]) -> str:
    start = f"{key[0]}/{key[1]}" if key[0] else key[1]
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": start + "\x00"})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        revision, start = int(raw["rv"]), str(raw["start"]).rstrip("\x00")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise status.bad_request(f"continue key is not valid: {exc}") from exc
    namespace, _, name = start.rpartition("/")
    return revision, (namespace, name)


def _parse_revision(text: str) -> int:
    if not text.isdigit():
        raise status.bad_request(f"invalid resource version: {text}")
    return int(text)


def _list(backend: Backend, target: Target, query: Any) -> bytes:
    store, resource = backend.store, target.resource
    filter_ = _filter(target, query)
    try:
        limit = max(0, int(query.get("limit") or 0))
    except ValueError as exc:
        raise status.bad_request(f"invalid limit: {query.get('limit')}") from exc
    revision_param = query.get("resourceVersion", "")
    match = query.get("resourceVersionMatch", "")
    token = query.get("continue")
    at: int | None = None
    after: tuple[str, str] | None = None
    if (match and not revision_param) or match not in ("", "Exact", "NotOlderThan"):
        raise status.bad_request(f"resourceVersionMatch: Invalid value: {match!r}")
    if token:
        if revision_param:
            raise status.bad_request(
                "specifying resource version is not allowed when using continue"
            )
        at, after = decode_continue(token)
        if at == 0:
            at = None  # an inconsistent token: continue from the current state
        elif at < store.floor:
            raise status.expired_continue(encode_continue(0, after))
    elif match == "Exact" or (revision_param not in ("", "0") and not match and limit):
        at = _parse_revision(revision_param)
        if at > store.revision:
            raise status.too_large_resource_version(at, store.revision)
        store.check_watchable(at)
    elif revision_param not in ("", "0"):
        wanted = _parse_revision(revision_param)
        if wanted > store.revision:
            raise status.too_large_resource_version(wanted, store.revision)
    revision = store.revision if at is None else at
    entries = store.entries(resource, at)
    if after is not None:
        entries = entries[bisect.bisect_right([e.key for e in entries], after) :]
    items: list[tuple[tuple[str, str], bytes]] = []
    continue_key: tuple[str, str] | None = None
    remaining = 0
    for index, entry in enumerate(entries):
        if not filter_.matches(entry.obj):
            continue
        if limit and len(items) == limit:
            continue_key = items[-1][0]
            remaining = len(entries) - index
            break
        items.append((entry.key, entry.item_json()))
    if continue_key is None:
        raw = backend.faults.raw_items.get(resource.plural, [])
        items.extend((("", ""), item) for item in raw)
    metadata: dict[str, Any] = {"resourceVersion": str(revision)}
    if continue_key is not None:
        metadata["continue"] = encode_continue(revision, continue_key)
        if filter_.selects_all:
            metadata["remainingItemCount"] = remaining
    head = {"kind": f"{resource.kind}List", "apiVersion": resource.api_version,
            "metadata": metadata}  # fmt: skip
    prefix = json.dumps(head, separators=(",", ":")).encode()[:-1]
    return prefix + b',"items":[' + b",".join(raw for _, raw in items) + b"]}"


async def _watch(request: web.Request, backend: Backend, target: Target) -> web.StreamResponse:
    params = watching.WatchRequest(request.query, backend.watch_timeout)
    return await watching.serve(
        request,
        backend.store,
        backend.hub,
        target.resource,
        _filter(target, request.query),
        params,
        backend.bookmark_interval,
        backend.faults.expired_watch_as_http_410,
    )
