"""The mutating admission webhook: AdmissionReview v1 in, JSONPatch of env vars out.

A webhook on Pod CREATE sits in front of every workload in the namespaces it selects,
so its first duty is never to block one: anything short of a request that is not an
AdmissionReview at all is answered ``allowed: true``, with a warning when something
kept the variables out (cache not synced, a pod this code cannot read, a bug here).
The decision lives in :meth:`Injector.review`, bytes to (status, bytes), tested without
sockets; :meth:`Injector.handle` only moves bytes and enforces the body limit.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Collection, Mapping
from typing import Any

import prometheus_client
from aiohttp import web

from kdns.admission import (
    API_VERSION,
    MAX_BODY,
    BadRequest,
    Reply,
    allowed,
    parse,
    read_body,
    respond,
)
from kdns.envinject import envvars, patch, source
from kdns.envinject.config import DEFAULT_PATH

log = logging.getLogger(__name__)

ANNOTATION = "kdns.io/inject-services"
"""Pod annotation narrowing the set: ``"redis-master,db"`` or ``"*"`` (see the docs)."""


class Metrics:
    """``kdns_envinject_*``: what the webhook decided, how fast, and how much it added."""

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.requests = prometheus_client.Counter(
            "kdns_envinject_requests",
            "Admission requests by outcome: patched, unchanged, skipped (not a Pod "
            "CREATE), unsynced, invalid (pod admitted unread), rejected (HTTP 4xx), error.",
            ["outcome"],
            registry=registry,
        )
        self.patches = prometheus_client.Counter(
            "kdns_envinject_patches", "Responses that carried a JSONPatch.", registry=registry
        )
        self.variables = prometheus_client.Counter(
            "kdns_envinject_variables_injected",
            "Environment variables added, summed over containers.",
            registry=registry,
        )
        self.errors = prometheus_client.Counter(
            "kdns_envinject_errors",
            "Requests that failed: bad_request, too_large, timeout (body too slow), "
            "invalid_pod, internal.",
            ["reason"],
            registry=registry,
        )
        self.oversized = prometheus_client.Counter(
            "kdns_envinject_oversized",
            "Pods whose injected environment passed the size budget in some container "
            "(envvars.SIZE_BUDGET: 128 KiB of NAME=value strings), admitted with a warning.",
            registry=registry,
        )
        self.latency = prometheus_client.Histogram(
            "kdns_envinject_request_duration_seconds",
            "Time from the request's arrival to the response, body read included.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2),
            registry=registry,
        )


def selection(pod: Mapping[str, Any]) -> tuple[bool, Collection[str] | None]:
    """(enable_service_links, only) for a pod, the annotation taking precedence.

    Without the annotation the pod's ``enableServiceLinks`` decides, as in kubelet
    (unset means true: the API server defaults it before webhooks run). ``"*"`` asks for
    the namespace's full set even with links off; a list asks for those services only.
    """
    metadata = _object(pod, "metadata")
    raw = _object(metadata, "annotations").get(ANNOTATION)
    if isinstance(raw, str):
        names = frozenset(n.strip() for n in raw.split(",") if n.strip())
        return (True, None) if "*" in names else (False, names)
    return _object(pod, "spec").get("enableServiceLinks") is not False, None


def _object(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise patch.PodShapeError(f"{key} is not an object")
    return value


def _wants_patch(request: Mapping[str, Any]) -> bool:
    kind = request.get("kind") or {}
    resource = request.get("resource") or {}
    return (
        request.get("operation") == "CREATE"
        and kind.get("group", "") == ""
        and kind.get("kind") == "Pod"
        and resource.get("resource") == "pods"
        and not request.get("subResource")
    )


class Injector:
    """One webhook instance: a view of the cache and its metrics."""

    def __init__(
        self,
        services: source.ServiceSource,
        registry: prometheus_client.CollectorRegistry | None = None,
    ) -> None:
        self._services = services
        self.metrics = Metrics(registry if registry is not None else prometheus_client.REGISTRY)

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        body = await read_body(request)
        if isinstance(body, Reply):
            self.metrics.requests.labels("rejected").inc()
            self.metrics.errors.labels("too_large" if body.status == 413 else "timeout").inc()
            reply = body
        else:
            reply = self.review(body)
        self.metrics.latency.observe(time.perf_counter() - started)
        return respond(reply)

    def review(self, body: bytes) -> Reply:
        """An AdmissionReview request body to the reply the API server gets."""
        try:
            uid, request = parse(body)
        except BadRequest as err:
            self.metrics.requests.labels("rejected").inc()
            self.metrics.errors.labels("bad_request").inc()
            return Reply(400, f"{err}\n".encode(), "text/plain")
        try:
            response = self._decide(uid, request)
        except patch.PodShapeError as err:
            self.metrics.requests.labels("invalid").inc()
            self.metrics.errors.labels("invalid_pod").inc()
            response = allowed(uid, [f"kdns envinject: {err}; admitted without variables"])
        except Exception:
            # Never lock the cluster over a bug here: admit, say so, and keep the trace.
            log.exception("envinject: internal error on request %s", uid)
            self.metrics.requests.labels("error").inc()
            self.metrics.errors.labels("internal").inc()
            response = allowed(uid, ["kdns envinject: internal error; admitted without variables"])
        review = {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}
        return Reply(200, json.dumps(review, separators=(",", ":")).encode())

    def _decide(self, uid: str, request: Mapping[str, Any]) -> dict[str, Any]:
        if not _wants_patch(request):
            self.metrics.requests.labels("skipped").inc()
            return allowed(uid)
        if not self._services.synced:
            self.metrics.requests.labels("unsynced").inc()
            return allowed(uid, ["kdns envinject: service cache not synced; no variables added"])
        pod = request.get("object")
        if not isinstance(pod, dict):
            raise patch.PodShapeError("request has no pod object")
        namespace = request.get("namespace") or _object(pod, "metadata").get("namespace")
        if not isinstance(namespace, str) or not namespace:
            raise patch.PodShapeError("request names no namespace")
        links, only = selection(pod)
        variables = envvars.for_pod(self._services, namespace, links, only)
        ops = patch.build(pod, variables)
        warnings = []
        if only:
            missing = envvars.missing(self._services, namespace, sorted(only))
            if missing:
                warnings.append(
                    f"kdns envinject: {ANNOTATION}: no cluster IP in {namespace}: "
                    + ", ".join(missing)
                )
        if not ops:
            self.metrics.requests.labels("unchanged").inc()
            return allowed(uid, warnings)
        count, size = _largest(ops)
        if size > envvars.SIZE_BUDGET:
            self.metrics.oversized.inc()
            warnings.append(oversized_warning(count, size))
        self.metrics.requests.labels("patched").inc()
        self.metrics.patches.inc()
        self.metrics.variables.inc(sum(_count(op) for op in ops))
        response = allowed(uid, warnings)
        response["patchType"] = "JSONPatch"
        encoded = json.dumps(ops, separators=(",", ":")).encode()
        response["patch"] = base64.b64encode(encoded).decode("ascii")
        return response


def oversized_warning(count: int, size: int) -> str:
    return (
        f"kdns envinject: {count} service variables ({size // 1024} KiB) added to a "
        f"container, over the {envvars.SIZE_BUDGET // 1024} KiB budget: the container may "
        "fail to start with E2BIG (argument list too long); name the services it needs "
        f'with the annotation {ANNOTATION}: "svc-a,svc-b", or set enableServiceLinks: false'
    )


def _largest(ops: list[patch.Operation]) -> tuple[int, int]:
    """(variables, exec bytes) added to the container that gets the most."""
    per: dict[str, tuple[int, int]] = {}
    for op in ops:
        container = op["path"].split("/env", 1)[0]
        entries = op["value"] if isinstance(op["value"], list) else [op["value"]]
        count, size = per.get(container, (0, 0))
        size += sum(envvars.EnvVar(e["name"], e["value"]).exec_size for e in entries)
        per[container] = (count + len(entries), size)
    return max(per.values(), key=lambda cs: cs[1], default=(0, 0))


def _count(op: Mapping[str, Any]) -> int:
    value = op["value"]
    return len(value) if isinstance(value, list) else 1


INJECTOR = web.AppKey("kdns_envinject", Injector)


def add_routes(app: web.Application, injector: Injector, path: str = DEFAULT_PATH) -> None:
    """Mount on a shared application (one listener for several webhooks)."""
    app.router.add_post(path, injector.handle)


def make_app(
    services: source.ServiceSource,
    path: str = DEFAULT_PATH,
    registry: prometheus_client.CollectorRegistry | None = None,
) -> web.Application:
    """A standalone application for the ``envinject`` listener."""
    app = web.Application(client_max_size=MAX_BODY)
    injector = Injector(services, registry)
    app[INJECTOR] = injector
    add_routes(app, injector, path)
    return app
