"""``/allocate``: the Service mutating webhook of cluster mode, AdmissionReview v1 over HTTPS.

The API server allocates ClusterIPs perfectly well by itself; kdns only adds policy
(sticky addresses, reserved ones, the static band kept for people). So whenever kdns
cannot do better than the API server, it says nothing: ``allowed: true`` without a patch
and with a warning ("no opinion"), and the API server allocates as usual. That covers
errors of any kind, a cache not yet synced, a leader that cannot be reached, and a
Service the API server will refuse anyway (it says why better than kdns could).

Only the elected replica picks (:mod:`kdns.ipam.leader`); any other replica forwards the
request body unchanged to the leader's webhook and passes its answer back, once: a
forwarded request is marked with a header and never forwarded again. A dry run is
answered by whichever replica gets it, since it changes nothing.

:meth:`Allocate.review` maps bytes to a :class:`Reply` and is tested without sockets;
:meth:`Allocate.handle` only moves bytes and enforces the body limit.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import prometheus_client
from aiohttp import web

from kdns.admission import (
    MAX_BODY,
    BadRequest,
    Reply,
    allowed,
    parse,
    read_body,
    respond,
    review,
)
from kdns.ipam import admission, cluster, errors
from kdns.ipam.config import DEFAULT_WEBHOOK_PATH

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-Kdns-Forwarded"
"""Set on a request one replica forwards to the leader: a second hop is never taken."""

_PREFIX = "kdns clusterip"


class Metrics:
    """``kdns_ipam_*`` of the webhook: outcomes, forwards, claims, latency, leadership."""

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.requests = prometheus_client.Counter(
            "kdns_ipam_requests",
            "Admission requests by outcome: patched, unchanged (nothing to set), skipped "
            "(not a Service CREATE), dry_run, forwarded, no_opinion, rejected (HTTP 4xx).",
            ["outcome"],
            registry=registry,
        )
        self.no_opinion = prometheus_client.Counter(
            "kdns_ipam_no_opinion",
            "Requests left to the API server, by reason: unsynced, not_leader, "
            "leader_unreachable, invalid, range_full, error.",
            ["reason"],
            registry=registry,
        )
        self.latency = prometheus_client.Histogram(
            "kdns_ipam_request_duration_seconds",
            "Time from the request's arrival to the response, forwarding included.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.leader = prometheus_client.Gauge(
            "kdns_ipam_leader",
            "1 while this replica holds the allocation Lease (or runs without election).",
            registry=registry,
        )


class Forwarder:
    """POSTs an AdmissionReview to the leader's webhook and returns its reply body.

    The leader serves the same certificate as every replica (one Secret), issued for
    the webhook Service's DNS name, so the connection goes to the leader's pod address
    and verifies the certificate against ``server_hostname``.
    """

    def __init__(
        self,
        path: str = DEFAULT_WEBHOOK_PATH,
        *,
        ssl_context: ssl.SSLContext | bool = True,
        server_hostname: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.path = path
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.ssl_context)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def forward(self, address: str, body: bytes) -> bytes:
        scheme = "http" if self.ssl_context is False else "https"
        async with self._get_session().post(
            f"{scheme}://{address}{self.path}",
            data=body,
            headers={"Content-Type": "application/json", FORWARDED_HEADER: "1"},
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            server_hostname=self.server_hostname if scheme == "https" else None,
        ) as response:
            if response.status != 200:
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message="not 200"
                )
            return await response.read()


def wants(request: Mapping[str, Any]) -> bool:
    """A Service CREATE (the only operation that allocates)."""
    kind = request.get("kind") or {}
    resource = request.get("resource") or {}
    return (
        request.get("operation") == "CREATE"
        and kind.get("group", "") == ""
        and kind.get("kind") == "Service"
        and resource.get("resource") == "services"
        and not request.get("subResource")
    )


def needs_addresses(service: Mapping[str, Any]) -> bool:
    """No clusterIP(s) and not ExternalName: the only Services this webhook touches."""
    request = admission.request_of(service)
    return request.type != "ExternalName" and not request.cluster_ips


def patch_ops(service: Mapping[str, Any], fields: Mapping[str, Any]) -> list[dict[str, Any]]:
    """JSONPatch adding the fields (``add`` replaces an empty ``clusterIP: ""`` too)."""
    ops: list[dict[str, Any]] = []
    if not isinstance(service.get("spec"), dict):
        ops.append({"op": "add", "path": "/spec", "value": {}})
    for name in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
        ops.append({"op": "add", "path": f"/spec/{name}", "value": fields[name]})
    return ops


class Allocate:
    """The ``/allocate`` handler for one cluster's allocator."""

    def __init__(
        self,
        allocator: cluster.ClusterAllocator,
        *,
        forwarder: Forwarder | None = None,
        registry: prometheus_client.CollectorRegistry | None = None,
    ) -> None:
        self.allocator = allocator
        self.forwarder = forwarder
        self.metrics = Metrics(registry if registry is not None else prometheus_client.REGISTRY)
        self.metrics.leader.set_function(lambda: 1.0 if allocator.leading else 0.0)

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        body = await read_body(request)
        if isinstance(body, Reply):
            self.metrics.requests.labels("rejected").inc()
            reply = body
        else:
            forwarded = request.headers.get(FORWARDED_HEADER) == "1"
            reply = await self.review(body, forwarded=forwarded)
        self.metrics.latency.observe(time.perf_counter() - started)
        return respond(reply)

    async def review(self, body: bytes, *, forwarded: bool = False) -> Reply:
        """An AdmissionReview request body to the reply the API server gets."""
        try:
            uid, request = parse(body)
        except BadRequest as err:
            self.metrics.requests.labels("rejected").inc()
            return Reply(400, f"{err}\n".encode(), "text/plain")
        try:
            return await self._decide(uid, request, body, forwarded)
        except Exception:
            # Never fail a Service create over a bug here: the API server can allocate.
            log.exception("clusterip: internal error on request %s", uid)
            return self._no_opinion(uid, "error", "internal error")

    def _no_opinion(self, uid: str, reason: str, why: str) -> Reply:
        self.metrics.requests.labels("no_opinion").inc()
        self.metrics.no_opinion.labels(reason).inc()
        return review(allowed(uid, [f"{_PREFIX}: {why}; the API server allocates"]))

    async def _decide(
        self, uid: str, request: Mapping[str, Any], body: bytes, forwarded: bool
    ) -> Reply:
        if not wants(request):
            self.metrics.requests.labels("skipped").inc()
            return review(allowed(uid))
        service = request.get("object")
        if not isinstance(service, dict):
            return self._no_opinion(uid, "invalid", "request has no Service object")
        if not needs_addresses(service):
            self.metrics.requests.labels("unchanged").inc()
            return review(allowed(uid))
        if not self.allocator.synced:
            return self._no_opinion(uid, "unsynced", "service cache not synced")
        dry_run = request.get("dryRun") is True
        if not dry_run and not self.allocator.leading:
            if forwarded:
                return self._no_opinion(
                    uid, "not_leader", "forwarded to a replica that no longer leads"
                )
            return await self._forward(uid, body)
        meta = service.get("metadata") or {}
        if not meta.get("namespace") and request.get("namespace"):
            service = {**service, "metadata": {**meta, "namespace": request["namespace"]}}
        try:
            fields = await self.allocator.allocate(service, dry_run=dry_run)
        except errors.InvalidService as exc:
            return self._no_opinion(uid, "invalid", str(exc))
        except errors.InternalError as exc:
            return self._no_opinion(uid, "range_full", exc.detail)
        if fields is None:
            self.metrics.requests.labels("unchanged").inc()
            return review(allowed(uid))
        self.metrics.requests.labels("dry_run" if dry_run else "patched").inc()
        response = allowed(uid)
        response["patchType"] = "JSONPatch"
        encoded = json.dumps(patch_ops(service, fields), separators=(",", ":")).encode()
        response["patch"] = base64.b64encode(encoded).decode("ascii")
        return review(response)

    async def _forward(self, uid: str, body: bytes) -> Reply:
        address = self.allocator.leader_address()
        if self.forwarder is None or address is None:
            return self._no_opinion(
                uid, "not_leader", "this replica does not lead and knows no leader"
            )
        try:
            raw = await self.forwarder.forward(address, body)
            doc = json.loads(raw)
            response = doc["response"]
            if response.get("uid") != uid or response.get("allowed") is not True:
                raise ValueError("the leader's response does not match the request")
        except Exception as exc:
            log.warning("clusterip: forwarding to the leader at %s failed: %s", address, exc)
            return self._no_opinion(uid, "leader_unreachable", f"leader {address} unreachable")
        self.metrics.requests.labels("forwarded").inc()
        return review(response)


ALLOCATE = web.AppKey("kdns_ipam_allocate", Allocate)


def add_routes(app: web.Application, handler: Allocate, path: str = DEFAULT_WEBHOOK_PATH) -> None:
    """Mount on a shared application (the envinject listener, one HTTPS port for both)."""
    app[ALLOCATE] = handler
    app.router.add_post(path, handler.handle)


def make_app(handler: Allocate, path: str = DEFAULT_WEBHOOK_PATH) -> web.Application:
    """A standalone application (tests, or a listener of its own)."""
    app = web.Application(client_max_size=MAX_BODY)
    add_routes(app, handler, path)
    return app
