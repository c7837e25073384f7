"""What the emulator is told to do wrong, kept apart from what it does right.

A test arms a fault through :class:`tests.support.apiemu.Emulator` (or ``/_emu/``) and the HTTP edge
consults this state on every API request. Faults are data, not code paths sprinkled
through the handlers, so one glance at a :class:`Faults` says how hostile the
emulator is right now.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from . import status


class Cut(enum.Enum):
    """How open watch streams are ended."""

    END = "end"
    """Finish the chunked response cleanly, like a server-side watch timeout."""
    RESET = "reset"
    """Abort the connection between two events, like a dropped TCP connection."""
    MID_LINE = "mid-line"
    """Send half an event line, then abort: the client must not act on a torn line."""


@dataclass(slots=True)
class Failure:
    code: int
    retry_after: int
    path_contains: str | None
    remaining: int

    def error(self) -> status.ApiError:
        if self.code == 429:
            return status.too_many_requests(self.retry_after)
        if self.code == 500:
            return status.internal_error()
        return status.ApiError(self.code, "InternalError", f"injected failure {self.code}")


@dataclass(slots=True)
class Faults:
    tokens: frozenset[str] | None = None
    """Bearer tokens accepted; None accepts any request, authenticated or not."""
    delay: float = 0.0
    """Seconds every API request waits before it is handled."""
    expired_watch_as_http_410: bool = False
    """Refuse a watch from a compacted revision with HTTP 410, not a 200 + ERROR event."""
    failures: deque[Failure] = field(default_factory=deque)
    raw_items: dict[str, list[bytes]] = field(default_factory=dict)
    """Resource plural -> JSON texts appended to every list of it, served as they are
    (a ``metadata`` that is a string, a ``spec`` that is a list): what no store holds."""

    def authorized(self, header: str | None) -> bool:
        if self.tokens is None:
            return True
        scheme, _, token = (header or "").partition(" ")
        return scheme.lower() == "bearer" and token.strip() in self.tokens

    def take_failure(self, path: str) -> status.ApiError | None:
        """The next armed failure this request triggers (and consumes), if any."""
        for failure in self.failures:
            if failure.path_contains is None or failure.path_contains in path:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self.failures.remove(failure)
                return failure.error()
        return None
