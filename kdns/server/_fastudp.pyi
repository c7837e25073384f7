"""Type stub of the optional C extension kdns/server/_fastudp.c (see its header comment)."""

from typing import Any

ABI: int
BATCH: int
SLOT: int
SPECIAL: tuple[int, int, int]

class Batch:
    """One UDP socket's recvmmsg/sendmmsg buffers and its compiled-answer loop."""

    def __init__(
        self,
        fd: int,
        fallthrough: object,
        foreign: object,
        fast_bound: float,
        answer_type: type,
    ) -> None: ...
    def receive(
        self,
        nodes: dict[bytes, Any] | None,
        packed: dict[bytes, bytes] | None,
        lazy: dict[bytes, Any] | None,
        routed: dict[bytes, Any] | None,
        stats: Any,
        zone: str,
        positive_only: bool,
        max_udp: int,
        declined: list[tuple[int, bytes, bytes]],
        hits: dict[bytes, Any] | None,
        /,
    ) -> int: ...
    def reply(self, slot: int, response: bytes, /) -> bool: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
