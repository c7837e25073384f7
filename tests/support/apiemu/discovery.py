"""Discovery documents, derived from the resource table.

Only legacy (unaggregated) discovery is served: a client asking for
``application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`` gets plain
JSON with ``Content-Type: application/json`` and, like kubectl and client-go, falls back
to walking ``/api`` and ``/apis``. That fallback is itself real-world behaviour.
"""

from __future__ import annotations

from typing import Any

from . import resources
from .resources import VERBS

VERSION_INFO: dict[str, Any] = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-apiemu",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def core_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": listed, "preferredVersion": listed[0]}


def group_list() -> dict[str, Any]:
    groups = [_group(name, versions) for name, versions in resources.groups().items()]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def group(name: str) -> dict[str, Any] | None:
    versions = resources.groups().get(name)
    if versions is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1"} | _group(name, versions)


def resource_list(group_name: str, version: str) -> dict[str, Any] | None:
    served = [r for r in resources.RESOURCES if (r.group, r.version) == (group_name, version)]
    if not served:
        return None
    listed = []
    for resource in served:
        entry: dict[str, Any] = {
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": list(VERBS),
        }
        if resource.short_names:
            entry["shortNames"] = list(resource.short_names)
        listed.append(entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group_name}/{version}" if group_name else version,
        "resources": listed,
    }
