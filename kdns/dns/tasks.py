"""The one task tracker: every background coroutine kdns starts is held until it ends.

asyncio keeps only weak references to running tasks, so a task nobody holds can be
garbage-collected mid-flight. Slow-path queries (bounded: over the limit a query goes
unanswered rather than queueing without end), a generation's root tasks, the HTTP
listeners' handshakes and the cache's refreshes all go through a :class:`Tasks`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any


class Tasks:
    """A set of running tasks that drops each one as it finishes."""

    def __init__(self, limit: int = 10_000) -> None:
        self.running: set[asyncio.Task[Any]] = set()
        self.limit = limit

    def spawn(self, coro: asyncio.Future[None] | object) -> bool:
        """Run ``coro`` unless ``limit`` tasks already run (then it is closed, unrun)."""
        if len(self.running) >= self.limit:
            if asyncio.iscoroutine(coro):
                coro.close()
            return False
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        return True

    def start(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` whatever the count (root tasks, connections); the task, to watch."""
        task = asyncio.ensure_future(coro)
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        return task

    def cancel(self) -> list[asyncio.Task[Any]]:
        """Cancel every running task; the ones cancelled, to await."""
        tasks = list(self.running)
        for task in tasks:
            task.cancel()
        return tasks

    async def drain(self, timeout: float) -> None:
        if self.running:
            await asyncio.wait(list(self.running), timeout=timeout)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self.running))

    def __len__(self) -> int:
        return len(self.running)
