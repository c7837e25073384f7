"""A reply that comes later, handed to one callback: no task, no coroutine.

A forwarded query used to be a coroutine that the transport awaited in a task: the
task, its first step, the future the reply woke and the nine coroutine frames resumed
between them cost as much as everything else a forward does. A :class:`Deferred` is
what the handler returns instead when the upstream can answer by callback: the
transport registers its send with :meth:`Deferred.then`, and the upstream socket's
reader calls :meth:`Deferred.resolve` with the reply, which calls the send at once.

It is awaitable too (TCP, DoT, DoH and the tests await what the handler returns), and
:meth:`Deferred.close` drops the callback of a query nobody will answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Generator
from typing import Any

log = logging.getLogger(__name__)

Send = Callable[[bytes | None], None]
"""What gets the reply: bytes, or None for say nothing."""


def _ignore(reply: bytes | None) -> None:
    """The callback of a closed :class:`Deferred`."""


class Deferred:
    """One reply, delivered once to one callback, whether it comes before or after
    :meth:`then` is called."""

    __slots__ = ("_done", "_reply", "_send")

    def __init__(self) -> None:
        self._send: Send | None = None
        self._reply: bytes | None = None
        self._done = False

    def then(self, send: Send) -> None:
        """Call ``send`` with the reply: now if it is here, else when it comes."""
        if self._done:
            send(self._reply)
        else:
            self._send = send

    def resolve(self, reply: bytes | None) -> None:
        """The reply is here: hand it to the callback, if one is registered yet.

        A callback that raises costs this reply only: it is logged, never raised into
        the socket reader that resolved it.
        """
        if self._done:
            return
        self._done = True
        send = self._send
        if send is None:
            self._reply = reply
            return
        self._send = None
        try:
            send(reply)
        except Exception:
            log.exception("sending a deferred reply failed")

    def close(self) -> None:
        """Nobody will send the reply (over the in-flight limit): drop it when it comes."""
        self._send = _ignore

    @property
    def done(self) -> bool:
        return self._done

    def __await__(self) -> Generator[Any, None, bytes | None]:
        if self._done:
            return self._reply
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._send = lambda reply: _settle(future, reply)
        return (yield from future.__await__())


def _settle(future: asyncio.Future[bytes | None], reply: bytes | None) -> None:
    if not future.done():  # the awaiting task may have been cancelled
        future.set_result(reply)
