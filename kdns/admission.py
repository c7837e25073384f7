"""The AdmissionReview envelope both kdns webhooks speak (``/inject``, ``/allocate``).

Reading a bounded body, validating an ``admission.k8s.io/v1`` request, and wrapping a
response are the same for every mutating webhook; the decisions are not, and live
with each webhook.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kdns import errors as kdns_errors

API_VERSION = "admission.k8s.io/v1"
MAX_BODY = 3 * 1024 * 1024
"""The API server caps request bodies at 3 MiB; anything larger is not from it."""

BODY_TIMEOUT = 5.0
"""Seconds for the whole body to arrive once the handler runs. The API server sends it
right behind the headers and gives up after its ``timeoutSeconds`` (10 s by default):
a body still dripping in after this is not a request anyone waits for."""

_READ_CHUNK = 64 * 1024


class BadRequest(kdns_errors.WebhookError):
    """The body is not an AdmissionReview v1 request; answered 400 with this text."""


class SlowBody(kdns_errors.WebhookError):
    """The request body did not arrive in time; answered 408 and the connection closed."""


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
    except RecursionError:
        # No AdmissionReview nests a thousand levels; Go's decoder stops at 10,000.
        raise BadRequest("body is not JSON: nested too deeply") from None
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


async def read_limited(
    request: web.Request, limit: int = MAX_BODY, timeout: float = BODY_TIMEOUT
) -> bytes | None:
    """The body, or None past ``limit`` bytes, whatever the app's client_max_size.

    Raises :class:`SlowBody` when the body takes longer than ``timeout``: aiohttp puts no
    deadline on a body, so one client sending a byte a second would hold its connection
    (and a handler) forever.
    """
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while chunk := await request.content.read(_READ_CHUNK):
                size += len(chunk)
                if size > limit:
                    return None
                chunks.append(chunk)
    except TimeoutError:
        raise SlowBody(f"request body not received within {timeout:g}s") from None
    return b"".join(chunks)


async def read_body(request: web.Request) -> bytes | Reply:
    """The body, or the reply refusing it: 413 past :data:`MAX_BODY`, 408 when too slow."""
    try:
        body = await read_limited(request, MAX_BODY)
    except SlowBody as err:
        return Reply(408, f"{err}\n".encode(), "text/plain")
    if body is None:
        return Reply(413, f"body larger than {MAX_BODY} bytes\n".encode(), "text/plain")
    return body


def respond(reply: Reply) -> web.Response:
    """The HTTP response for a reply; a refused body also closes its connection.

    After a 408 or 413 the rest of the body may still be on its way, and aiohttp would
    otherwise linger reading it before the next request.
    """
    response = web.Response(status=reply.status, body=reply.body, content_type=reply.content_type)
    if reply.status in (408, 413):
        response.force_close()
    return response
