"""PATCH bodies by content type: JSON patch, merge patch, strategic merge as merge.

Strategic merge needs Go struct tags the emulator does not have; treating it as a
merge patch (lists replaced, ``$``-directives dropped) is what ``kubectl apply`` and
``kubectl patch`` need against these few resources, and keeps directive keys from
leaking into stored objects.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from apiemu import status

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
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
    elif media in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        if not isinstance(body, dict):
            raise status.bad_request("merge patch must be a JSON object")
        patched = merge(original, body)
    else:
        raise status.unsupported_media_type(media)
    if not isinstance(patched, dict):
        raise status.bad_request("patch did not produce an object")
    return patched
