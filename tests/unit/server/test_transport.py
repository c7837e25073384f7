"""The transports only move bytes: they send what ``answer()`` returns, or await it and send.

A stub stands in for :class:`kdns.query.handler.Handler`; real sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import struct

from kdns.dns.tasks import Tasks
from kdns.server import transport
from kdns.server.plan import ListenAddress


class _Stub:
    """``now`` is answered at once, ``later`` through an awaitable, anything else not at all."""

    def __init__(self) -> None:
        self.seen: list[tuple[bytes, bool]] = []

    def _reply(self, pkt: bytes, tcp: bool) -> object:
        self.seen.append((pkt, tcp))
        if pkt == b"now":
            return b"answered-now"
        if pkt == b"later":
            return self._later()
        return None

    async def _later(self) -> bytes:
        await asyncio.sleep(0)
        return b"answered-later"

    def answer_udp(self, pkt: bytes, addr: tuple[object, ...]) -> object:
        return self._reply(pkt, False)

    def answer(self, pkt: bytes, tcp: bool, family: int, remote: tuple[str, int]) -> object:
        return self._reply(pkt, tcp)


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.replies.put_nowait(data)


async def _exercise() -> tuple[list[bytes], list[bytes], list[tuple[bytes, bool]]]:
    stub = _Stub()
    tasks = Tasks()
    server = transport.DNSServer(ListenAddress("127.0.0.1", 0), stub, tasks)  # type: ignore[arg-type]
    await server.start()
    try:
        loop = asyncio.get_running_loop()
        udp, client = await loop.create_datagram_endpoint(
            _Client, remote_addr=("127.0.0.1", server.port)
        )
        udp_replies = []
        for pkt in (b"now", b"later"):
            udp.sendto(pkt)
            udp_replies.append(await asyncio.wait_for(client.replies.get(), 5))
        udp.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        tcp_replies = []
        for pkt in (b"later", b"now"):
            writer.write(struct.pack("!H", len(pkt)) + pkt)
            size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 5))[0]
            tcp_replies.append(await asyncio.wait_for(reader.readexactly(size), 5))
        writer.close()
        await tasks.drain(1.0)
        return udp_replies, tcp_replies, stub.seen
    finally:
        await server.close()


def test_transports_send_what_answer_returns() -> None:
    udp_replies, tcp_replies, seen = asyncio.run(_exercise())
    assert udp_replies == [b"answered-now", b"answered-later"]
    assert tcp_replies == [b"answered-later", b"answered-now"]
    assert seen == [(b"now", False), (b"later", False), (b"later", True), (b"now", True)]
