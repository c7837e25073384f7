"""Allocation failures, worded as kube-apiserver words them.

Clients and operators grep for these texts (``range is full``, ``provided IP is already
allocated``), so the messages are kept verbatim; the HTTP status each maps to is a
class attribute for the webhook edge, never consulted inside the core.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kdns import errors as kdns_errors


class AllocationError(kdns_errors.AllocatorError):
    """An address could not be allocated from one range."""


class RangeFull(AllocationError):
    """range is full"""

    def __init__(self) -> None:
        super().__init__("range is full")


class AlreadyAllocated(AllocationError):
    """provided IP is already allocated"""

    def __init__(self) -> None:
        super().__init__("provided IP is already allocated")


class InvalidAddress(AllocationError):
    """must be a valid IP address

    Garbage is refused as API validation refuses it (``IsValidIP``), before any range is
    consulted: "not in range" would send the operator looking at the service CIDR.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(
            f"Invalid value: {go_value(text)}: "
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
        )


class NotInRange(AllocationError):
    """the provided IP is not in the valid range"""

    def __init__(self, ip: str, valid_range: str) -> None:
        self.ip = ip
        self.valid_range = valid_range
        super().__init__(
            f"the provided IP ({ip}) is not in the valid range. "
            f"The range of valid IPs is {valid_range}"
        )


def go_value(value: object) -> str:
    """Render a field value the way apimachinery's field errors print it (Go ``%#v``)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Sequence):
        return "[]string{" + ", ".join(go_value(item) for item in value) + "}"
    return str(value)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One entry of a 422 response: which field, what kind of error, and why."""

    path: str
    kind: str  # "Invalid value", "Duplicate value", "Unsupported value", "Required value"
    value: object = None
    detail: str = ""

    def __str__(self) -> str:
        if self.kind == "Required value":
            return f"{self.path}: Required value" + (f": {self.detail}" if self.detail else "")
        text = f"{self.path}: {self.kind}: {go_value(self.value)}"
        return f"{text}: {self.detail}" if self.detail else text


class InvalidService(kdns_errors.AllocatorError):
    """The Service is invalid (HTTP 422, reason Invalid)."""

    code = 422
    reason = "Invalid"

    def __init__(self, name: str, errors: Sequence[FieldError]) -> None:
        self.name = name
        self.errors = tuple(errors)
        body = (
            str(self.errors[0])
            if len(self.errors) == 1
            else "[" + ", ".join(str(e) for e in self.errors) + "]"
        )
        super().__init__(f'Service "{name}" is invalid: {body}')


class InternalError(kdns_errors.AllocatorError):
    """Internal error occurred (HTTP 500), as the API server reports a failed dynamic pick."""

    code = 500
    reason = "InternalError"

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"Internal error occurred: {detail}")
