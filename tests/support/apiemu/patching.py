"""PATCH bodies by content type: JSON patch, merge patch, strategic merge as merge.

Strategic merge needs the Go types' struct tags; the emulator knows the few merge
keys of the lists its resources have (``ports`` by ``port``, ``containers`` by
``name``...), which is what ``kubectl apply`` needs: it sends only changed list
elements plus ``{"$patch": "delete"}`` markers. Other ``$`` directives (element
order, retained keys) are dropped, never stored.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from . import status

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
"""Server-side apply, as a strategic merge of the applied configuration: what a first
apply by a field manager does (``--force-conflicts``: its values win, fields it does not
name stay). Field ownership is not tracked, so a later apply does not prune."""


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


MERGE_KEYS = {
    "ports": ("port", "containerPort"),
    "containers": ("name",),
    "initContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "ownerReferences": ("uid",),
    "conditions": ("type",),
}


def _merge_key(items: list[Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        if items and all(isinstance(item, dict) and name in item for item in items):
            return name
    return None


def _merge_list(target: Any, patch: list[Any], names: tuple[str, ...]) -> list[Any]:
    key = _merge_key(patch, names)
    if key is None or not isinstance(target, list):
        return [strategic_merge(None, item) for item in patch if not _is_delete(item)]
    result = [copy.deepcopy(item) for item in target]
    for item in patch:
        index = next((i for i, old in enumerate(result) if old.get(key) == item[key]), None)
        if _is_delete(item):
            if index is not None:
                del result[index]
        elif index is None:
            result.append(strategic_merge(None, item))
        else:
            result[index] = strategic_merge(result[index], item)
    return result


def _is_delete(item: Any) -> bool:
    return isinstance(item, dict) and item.get("$patch") == "delete"


def strategic_merge(target: Any, patch: Any) -> Any:
    """Merge patch semantics plus merge-keyed lists and ``$patch`` directives."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and key in MERGE_KEYS:
            result[key] = _merge_list(result.get(key), value, MERGE_KEYS[key])
        else:
            result[key] = strategic_merge(result.get(key), value)
    return result


def apply(content_type: str, original: dict[str, Any], body: Any) -> dict[str, Any]:
    media = content_type.split(";")[0].strip()
    if media == JSON_PATCH:
        if not isinstance(body, list):
            raise status.bad_request("json patch must be a list of operations")
        try:
            patched = jsonpatch.apply_patch(original, body)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise status.ApiError(422, "Invalid", f"the server rejected our request due to "
                                  f"an error in our request: {exc}") from exc  # fmt: skip
    elif media in (MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH):
        if not isinstance(body, dict):
            raise status.bad_request("merge patch must be a JSON object")
        patched = (merge if media == MERGE_PATCH else strategic_merge)(original, body)
    else:
        raise status.unsupported_media_type(media)
    if not isinstance(patched, dict):
        raise status.bad_request("patch did not produce an object")
    return patched
