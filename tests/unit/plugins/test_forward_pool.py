"""The forwarder's pooled UDP sockets: every one of them used, no timeout context per query."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest

from kdns.plugins.forward import forward
from kdns.plugins.forward.setup import ForwardConfig, Upstream

ANSWER = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\xc0\x00\x02\x01"


class Echo(asyncio.DatagramProtocol):
    """An upstream answering every A query with 192.0.2.1; remembers who asked."""

    def __init__(self) -> None:
        self.sources: set[tuple[str, int]] = set()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.sources.add(addr)
        end = data.find(0, 12) + 5
        header = data[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00"
        self.transport.sendto(header + data[12:end] + ANSWER, addr)


def query(i: int) -> bytes:
    labels = b"".join(bytes((len(p),)) + p.encode() for p in f"www{i}.example.org".split("."))
    return struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x00\x01\x00\x01"


def test_queries_use_every_pooled_socket_and_no_timeout_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def run() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        echo = Echo()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: echo, local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        upstream = Upstream(transport="dns", host="127.0.0.1", port=port)
        forwarder = forward.Forwarder(
            ForwardConfig(from_zone=".", to=(upstream,), to_args=("127.0.0.1",))
        )
        try:
            for i in range(forward.UDP_SOCKETS):  # opens the pool
                assert await forwarder.forward(query(i), False) is not None
            contexts = 0
            original = forward.asyncio.timeout_at

            def counted(when: float | None) -> asyncio.Timeout:
                nonlocal contexts
                contexts += 1
                return original(when)

            monkeypatch.setattr(forward.asyncio, "timeout_at", counted)
            for i in range(20):
                reply = await forwarder.forward(query(100 + i), False)
                assert reply is not None and reply[:2] == query(100 + i)[:2]
            return len(echo.sources), contexts
        finally:
            await forwarder.stop()
            transport.close()

    sources, contexts = asyncio.run(run())
    assert sources == forward.UDP_SOCKETS  # each pooled socket, its own source port
    assert contexts == 0  # an open socket with room: one loop timer, no timeout context
