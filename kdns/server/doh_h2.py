"""DoH over HTTP/2: one connection's streams in, one DoH answer per stream out.

Apart from :mod:`kdns.server.encrypted` so that the ``h2`` library is imported only when
a client negotiates HTTP/2 (a server without an ``https://`` block never loads it).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

if TYPE_CHECKING:
    from kdns.server.encrypted import DohServer


class H2Protocol(asyncio.Protocol):
    """One HTTP/2 connection: streams in, one DoH answer per stream out.

    h2's default SETTINGS allow 100 concurrent streams, as Go's server does.
    """

    def __init__(self, owner: DohServer, max_message: int, idle_timeout: float) -> None:
        self.owner = owner
        self.max_message = max_message
        self.idle_timeout = idle_timeout
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[Any, ...] = ("", 0)
        self.requests: dict[int, tuple[dict[str, str], bytearray]] = {}
        self.unsent: dict[int, bytes] = {}
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = tuple(transport.get_extra_info("peername") or ("", 0))
        self.owner._h2.add(self)
        self.conn.initiate_connection()
        self._flush()
        self._arm()

    def _arm(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(self.idle_timeout, self.close)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            try:
                self.conn.close_connection()
                self._flush()
            except h2.exceptions.ProtocolError:
                pass
            self.transport.close()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._flush()
            if self.transport is not None:
                self.transport.close()
            return
        self._arm()
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                headers = {str(k): str(v) for k, v in event.headers or ()}
                self.requests[event.stream_id] = (headers, bytearray())
            elif isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                entry = self.requests.get(event.stream_id)
                if entry is not None:
                    entry[1].extend(event.data or b"")
                    if len(entry[1]) > self.max_message:
                        del self.requests[event.stream_id]
                        self._reset(event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                entry = self.requests.pop(event.stream_id, None)
                if entry is not None and not self.owner.tasks.spawn(
                    self._respond(event.stream_id, *entry)
                ):
                    self._reset(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.requests.pop(event.stream_id, None)
                self.unsent.pop(event.stream_id, None)
            elif isinstance(event, h2.events.WindowUpdated):
                self._send_unsent()
            elif isinstance(event, h2.events.ConnectionTerminated) and self.transport is not None:
                self.transport.close()
        self._flush()

    def _reset(self, stream_id: int) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)

    async def _respond(self, stream_id: int, headers: dict[str, str], body: bytearray) -> None:
        status, extra, payload = await self.owner.exchange(
            headers.get(":method", ""),
            headers.get(":path", ""),
            headers.get("content-type"),
            bytes(body),
            self.peer,
        )
        if self.transport is None or self.transport.is_closing():
            return
        out = [(":status", str(status)), *extra, ("content-length", str(len(payload)))]
        try:
            self.conn.send_headers(stream_id, out, end_stream=not payload)
        except h2.exceptions.ProtocolError:
            return  # the client reset the stream meanwhile
        if payload:
            self.unsent[stream_id] = payload
            self._send_unsent()
        self._flush()

    def _send_unsent(self) -> None:
        """Send what the peer's flow-control windows allow; the rest waits for an update."""
        for stream_id, data in list(self.unsent.items()):
            try:
                while data:
                    room = min(
                        self.conn.local_flow_control_window(stream_id),
                        self.conn.max_outbound_frame_size,
                    )
                    if room <= 0:
                        break
                    chunk, data = data[:room], data[room:]
                    self.conn.send_data(stream_id, chunk, end_stream=not data)
            except h2.exceptions.ProtocolError:
                data = b""
            if data:
                self.unsent[stream_id] = data
            else:
                del self.unsent[stream_id]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.owner._h2.discard(self)
        self.transport = None
