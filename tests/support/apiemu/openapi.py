"""Just enough OpenAPI v3 for ``kubectl apply`` to trust the server with validation.

kubectl (``--validate=strict``, its default) reads ``/openapi/v3`` to learn whether
the server validates fields itself (the ``fieldValidation`` query parameter on the
resource's operations). If it does, kubectl sends ``fieldValidation=Strict`` and
needs no schemas; if the document is missing it insists on downloading schemas and
fails. So each group-version document lists the operations and that parameter,
with empty schemas: the emulator accepts the parameter and validates nothing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from . import resources
from .resources import Resource

_FIELD_VALIDATION = {
    "name": "fieldValidation",
    "in": "query",
    "description": "Strict, Warn or Ignore unknown and duplicate fields.",
    "schema": {"type": "string", "uniqueItems": True},
}


def _prefix(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _operation(resource: Resource, action: str) -> dict[str, Any]:
    gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
    return {
        "operationId": f"{action}{resource.kind}",
        "parameters": [_FIELD_VALIDATION],
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    }


def document(group: str, version: str) -> dict[str, Any] | None:
    served = [r for r in resources.RESOURCES if (r.group, r.version) == (group, version)]
    if not served:
        return None
    paths: dict[str, Any] = {}
    for resource in served:
        scope = "/namespaces/{namespace}" if resource.namespaced else ""
        base = f"/{_prefix(group, version)}{scope}/{resource.plural}"
        paths[base] = {"post": _operation(resource, "post")}
        paths[base + "/{name}"] = {
            "put": _operation(resource, "put"),
            "patch": _operation(resource, "patch"),
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }


def root() -> dict[str, Any]:
    versions = {("", "v1")} | {(g, v) for g, vs in resources.groups().items() for v in vs}
    paths = {}
    for group, version in sorted(versions):
        digest = hashlib.sha256(json.dumps(document(group, version)).encode()).hexdigest()
        prefix = _prefix(group, version)
        paths[prefix] = {"serverRelativeURL": f"/openapi/v3/{prefix}?hash={digest.upper()}"}
    return {"paths": paths}
