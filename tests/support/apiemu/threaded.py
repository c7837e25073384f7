"""The emulator on its own thread and loop, for synchronous tests and foreign loops.

The real ``kubernetes`` client and ``kubectl`` block; kdns runs its own loop. Giving
the emulator a private loop on a daemon thread lets all three talk to it at once.
Every method here hands the call to that loop and waits for the answer, so the
emulator's state is only ever touched by its own thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from . import kubeconfig
from .emulator import Emulator
from .faults import Cut
from .server import RequestRecord
from .store import Obj

T = TypeVar("T")
_CALL_TIMEOUT = 30.0


class EmulatorThread:
    """``with EmulatorThread(bookmark_interval=0.2) as emu: ...`` (options as Emulator's)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="apiemu", daemon=True)
        self._emulator: Emulator | None = None

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> EmulatorThread:
        self._thread.start()

        async def create() -> Emulator:
            emulator = Emulator(**self._options)
            await emulator.start()
            return emulator

        self._emulator = self._run(create())
        return self

    def stop(self) -> None:
        if self._emulator is not None:
            self._run(self._emulator.stop())
            self._emulator = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_CALL_TIMEOUT)
        if not self._loop.is_closed() and not self._loop.is_running():
            self._loop.close()

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = _CALL_TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        async def invoke() -> T:
            return fn(*args)

        return self._run(invoke())

    @property
    def emulator(self) -> Emulator:
        """The in-loop emulator: only touch it from code running on its loop."""
        if self._emulator is None:
            raise RuntimeError("the emulator is not running")
        return self._emulator

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    # -- addresses -------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.emulator.url

    @property
    def port(self) -> int:
        return self.emulator.port

    @property
    def control_url(self) -> str:
        return self.emulator.control_url

    def write_kubeconfig(
        self, path: str | Path, token: str | None = None, *, token_file: str | Path | None = None,
        namespace: str = "default",
    ) -> Path:  # fmt: skip
        """A kubeconfig for this emulator; with neither ``token`` nor ``token_file`` it
        carries the token the emulator currently requires (if any)."""
        if token is None and token_file is None:
            token = self._call(lambda: self.emulator.token)
        return kubeconfig.write(path, self.url, token=token, token_file=token_file,
                                namespace=namespace)  # fmt: skip

    # -- the world ---------------------------------------------------------------------
    def put(self, obj: Obj) -> Obj:
        return self._call(self.emulator.put, obj)

    def put_many(self, objs: list[Obj]) -> int:
        return self._call(self.emulator.put_many, objs)

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> Obj | None:
        return self._call(self.emulator.get, api_version, kind, name, namespace)

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "") -> Obj:
        return self._call(self.emulator.delete, api_version, kind, name, namespace)

    def objects(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]:
        return self._call(self.emulator.objects, api_version, kind, namespace)

    def compact(self, revision: int | None = None) -> int:
        return self._call(self.emulator.compact, revision)

    @property
    def resource_version(self) -> int:
        return self._call(lambda: self.emulator.resource_version)

    # -- faults ------------------------------------------------------------------------
    def cut_watches(self, how: Cut = Cut.RESET) -> int:
        return self._call(self.emulator.cut_watches, how)

    def fail_next(
        self,
        count: int = 1,
        code: int = 429,
        retry_after: int = 1,
        path_contains: str | None = None,
    ) -> None:
        self._call(self.emulator.fail_next, count, code, retry_after, path_contains)

    def set_delay(self, seconds: float) -> None:
        self._call(self.emulator.set_delay, seconds)

    def add_raw_item(self, plural: str, item: Any, group: str = "") -> None:
        self._call(self.emulator.add_raw_item, plural, item, group)

    def send_raw_event(self, plural: str, kind: str, obj: Any, group: str = "") -> int:
        return self._call(self.emulator.send_raw_event, plural, kind, obj, group)

    def set_token(self, token: str | None) -> None:
        self._call(self.emulator.set_token, token)

    def set_expired_watch_reply(self, reply: Literal["error-event", "http-410"]) -> None:
        self._call(self.emulator.set_expired_watch_reply, reply)

    def go_down(self) -> None:
        self._run(self.emulator.go_down())

    def come_up(self) -> None:
        self._run(self.emulator.come_up())

    # -- observing ---------------------------------------------------------------------
    def watch_count(self, plural: str | None = None, group: str = "") -> int:
        return self._call(self.emulator.watch_count, plural, group)

    def wait_for_watchers(
        self, count: int = 1, plural: str | None = None, group: str = "", timeout: float = 10.0
    ) -> None:
        """Block until ``count`` watches (of ``plural``) are open; TimeoutError after
        ``timeout`` seconds. Lets a test change the world only once a client listens."""

        async def wait() -> None:
            async with asyncio.timeout(timeout):
                await self.emulator.wait_for_watchers(count, plural, group)

        self._run(wait(), timeout + 1)

    async def wait_for_watchers_async(
        self, count: int = 1, plural: str | None = None, group: str = ""
    ) -> None:
        """As :meth:`wait_for_watchers`, awaitable from a test's own event loop (bound it
        with ``asyncio.timeout``)."""
        waiting = self.emulator.wait_for_watchers(count, plural, group)
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(waiting, self._loop))

    def requests(self) -> list[RequestRecord]:
        return self._call(self.emulator.requests)

    def state(self) -> dict[str, Any]:
        return self._call(self.emulator.state)
