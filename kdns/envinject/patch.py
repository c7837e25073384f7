"""JSONPatch operations that put service variables into a pod's containers.

The patch has to be right for every pod the API server can send: ``env`` absent,
``null`` or a list; variables already declared by the user (never touched: their value
is what they asked for); and a pod that went through this webhook before, which must
give no operations at all so ``reinvocationPolicy: IfNeeded`` is safe. Injected
entries go in front of the container's own, because kubelet expands ``$(VAR)`` only
from entries declared earlier in the list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kdns import errors as kdns_errors
from kdns.envinject import envvars

Operation = dict[str, Any]

CONTAINER_LISTS = ("initContainers", "containers")
"""Lists that get variables; ephemeralContainers are added by a later subresource call
and are debugging tools, so they are left as the user wrote them."""


class PodShapeError(kdns_errors.WebhookError, ValueError):
    """The object is not a pod this webhook can patch."""


def declared_names(container: Mapping[str, Any]) -> frozenset[str]:
    env = container.get("env")
    if env is None:
        return frozenset()
    if not isinstance(env, list):
        raise PodShapeError(f"env of container {container.get('name')!r} is not a list")
    return frozenset(e["name"] for e in env if isinstance(e, dict) and "name" in e)


def container_ops(
    path: str, container: Mapping[str, Any], variables: Sequence[envvars.EnvVar]
) -> list[Operation]:
    """Operations for one container at JSON pointer ``path``.

    Into a missing or null ``env`` the whole list is added at once; into an existing
    list each entry is inserted by index, which leaves the user's entries byte for byte
    as they were rather than echoing them back in a replacement.
    """
    declared = declared_names(container)
    new = [{"name": v.name, "value": v.value} for v in variables if v.name not in declared]
    if not new:
        return []
    if container.get("env") is None:
        return [{"op": "add", "path": f"{path}/env", "value": new}]
    return [
        {"op": "add", "path": f"{path}/env/{index}", "value": entry}
        for index, entry in enumerate(new)
    ]


def containers_of(pod: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(JSON pointer, container) for every container that gets variables."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        raise PodShapeError("pod has no spec")
    out: list[tuple[str, Mapping[str, Any]]] = []
    for key in CONTAINER_LISTS:
        items = spec.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            raise PodShapeError(f"spec.{key} is not a list")
        for index, container in enumerate(items):
            if not isinstance(container, dict):
                raise PodShapeError(f"spec.{key}[{index}] is not an object")
            out.append((f"/spec/{key}/{index}", container))
    if not any(path.startswith("/spec/containers/") for path, _ in out):
        raise PodShapeError("pod has no containers")
    return out


def build(pod: Mapping[str, Any], variables: Sequence[envvars.EnvVar]) -> list[Operation]:
    """The whole patch for a pod; empty when there is nothing to add."""
    ops: list[Operation] = []
    for path, container in containers_of(pod):
        ops += container_ops(path, container, variables)
    return ops
