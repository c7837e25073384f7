"""The one exception a Corefile can raise.

Operators grep logs and runbooks for CoreDNS's wording, and ``kdns validate`` is compared
with ``coredns -conf`` by people migrating, so ``str(error)`` is the exact CoreDNS message
(``<file>:<line> - Error during parsing: ...``, ``plugin/<name>: ...``) and nothing else.
"""

from __future__ import annotations

from kdns import errors as kdns_errors


class CorefileError(kdns_errors.ConfigurationError):
    """The Corefile cannot be served; the message is CoreDNS's text for the same input."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
