"""Keeps the compiled answers in step with the store, off the query path.

Store writes only mark keys dirty and poke this task; it then recompiles in small
slices of time (inside a large service too), yielding to the event loop between them,
so neither a burst of thousands of watch events nor a service of thousands of
endpoints holds up queries for more than one slice. The propagation delay (store
write to answer served) is measured here, since this is where it ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from kdns.cluster.store import Store
from kdns.cluster.table import Table

BUDGET = 0.005
"""Seconds of compiling between two chances for queries to run."""


class Compiler:
    def __init__(
        self,
        store: Store,
        table: Table,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self.store = store
        self.table = table
        self.observe = observe
        self._wake = asyncio.Event()
        self._first_dirty: float | None = None
        self.idle = asyncio.Event()
        self.idle.set()
        store.subscribe(self._poke)

    def _poke(self) -> None:
        # The table already dropped the cached answers this write affects (Store.watch).
        if self._first_dirty is None:
            self._first_dirty = time.perf_counter()
        self.idle.clear()
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            done = False
            while not done:
                done = self.table.update(budget=BUDGET)
                if not done:
                    await asyncio.sleep(0)  # let queries through between batches
            if self._first_dirty is not None and self.observe is not None:
                self.observe(time.perf_counter() - self._first_dirty)
            self._first_dirty = None
            if not self._wake.is_set():
                self.idle.set()
