"""What the env injector needs from the informer cache, and nothing more.

A Protocol rather than an import of the store keeps the webhook testable with a
ten-line fake and lets the cache change shape without touching this package.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from kdns.cluster import objects


class ServiceSource(Protocol):
    """A read-only view of Services, answered from memory (never a network call)."""

    @property
    def synced(self) -> bool:
        """True once the first full list has landed; before that a set would be partial."""
        ...

    def services_in(self, namespace: str) -> Sequence[objects.Service]: ...

    def get_service(self, namespace: str, name: str) -> objects.Service | None: ...
