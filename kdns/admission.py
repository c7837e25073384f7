"""The AdmissionReview envelope both kdns webhooks speak (``/inject``, ``/allocate``).

Reading a bounded body, validating an ``admission.k8s.io/v1`` request, and wrapping a
response are the same for every mutating webhook; the decisions are not, and live
with each webhook.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

API_VERSION = "admission.k8s.io/v1"
MAX_BODY = 3 * 1024 * 1024
"""The API server caps request bodies at 3 MiB; anything larger is not from it."""

_READ_CHUNK = 64 * 1024


class BadRequest(Exception):
    """The body is not an AdmissionReview v1 request; answered 400 with this text."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"


def parse(body: bytes) -> tuple[str, Mapping[str, Any]]:
    """The request's uid and the request itself, or :class:`BadRequest` saying what is wrong."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise BadRequest(f"body is not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise BadRequest("body is not a JSON object")
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != "AdmissionReview":
        raise BadRequest(
            f"expected {API_VERSION} AdmissionReview, got "
            f"{doc.get('apiVersion')!r} {doc.get('kind')!r}"
        )
    request = doc.get("request")
    if not isinstance(request, dict):
        raise BadRequest("AdmissionReview has no request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadRequest("AdmissionReview request has no uid")
    return uid, request


def allowed(uid: str, warnings: list[str] | None = None) -> dict[str, Any]:
    """An admitting response; the warnings reach the user through kubectl."""
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if warnings:
        response["warnings"] = warnings
    return response


def review(response: Mapping[str, Any]) -> Reply:
    """The AdmissionReview that carries ``response`` back to the API server."""
    doc = {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": dict(response)}
    return Reply(200, json.dumps(doc, separators=(",", ":")).encode())


async def read_limited(request: web.Request, limit: int = MAX_BODY) -> bytes | None:
    """The body, or None past ``limit`` bytes, whatever the app's client_max_size."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
