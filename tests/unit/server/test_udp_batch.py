"""The batched UDP transport (recvmmsg/sendmmsg): every datagram answered to its sender."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from kdns.dns.tasks import Tasks
from kdns.server import transport
from kdns.server.plan import ListenAddress

pytestmark = pytest.mark.skipif(
    transport._mmsg_calls() is None, reason="no recvmmsg/sendmmsg on this platform"
)


class Stub:
    """A handler: echoes ``ok:`` + the query, later for ``later``, never for ``drop``,
    a 6,000-byte reply for ``big``; remembers the addresses it saw."""

    def __init__(self) -> None:
        self.addrs: list[tuple[object, ...]] = []

    def answer_udp(self, pkt: bytes, addr: tuple[object, ...]) -> Any:
        self.addrs.append(addr)
        if pkt.startswith(b"drop"):
            return None
        if pkt.startswith(b"big"):
            return b"B" * 6000
        if pkt.startswith(b"later"):
            return self._later(pkt)
        return b"ok:" + pkt

    async def _later(self, pkt: bytes) -> bytes:
        await asyncio.sleep(0)
        return b"later:" + pkt


async def _exchange(host: str, family: socket.AddressFamily, payloads: list[bytes]) -> Any:
    stub = Stub()
    server = transport.DNSServer(ListenAddress(host, 0), stub, Tasks())  # type: ignore[arg-type]
    await server.start()
    assert isinstance(server._udp, transport._BatchedUDP)
    loop = asyncio.get_running_loop()
    clients = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(3)]
    got: dict[int, list[bytes]] = {i: [] for i in range(len(clients))}
    try:
        for c in clients:
            c.setblocking(False)
            c.connect((host or "127.0.0.1", server.port))
        for n, payload in enumerate(payloads):  # a burst: the server reads it in batches
            clients[n % len(clients)].send(payload)
        want = sum(1 for p in payloads if not p.startswith(b"drop"))
        deadline = loop.time() + 5
        while sum(map(len, got.values())) < want and loop.time() < deadline:
            await asyncio.sleep(0.01)
            for i, c in enumerate(clients):
                while True:
                    try:
                        got[i].append(c.recv(65535))
                    except BlockingIOError:
                        break
        await asyncio.sleep(0.05)  # nothing more arrives (drop)
        for c in clients:
            with pytest.raises(BlockingIOError):
                c.recv(65535)
    finally:
        for c in clients:
            c.close()
        await server.close()
    return stub, got


def test_a_burst_is_answered_each_to_its_sender() -> None:
    payloads = [f"q{n}".encode() for n in range(100)]
    payloads += [b"later1", b"later2", b"drop3", b"big4"]
    stub, got = asyncio.run(_exchange("127.0.0.1", socket.AF_INET, payloads))
    for i, replies in got.items():
        sent = [p for n, p in enumerate(payloads) if n % 3 == i and not p.startswith(b"drop")]
        expected = {
            b"B" * 6000 if p.startswith(b"big") else (b"later:" if p[:1] == b"l" else b"ok:") + p
            for p in sent
        }
        assert set(replies) == expected
    ports = {addr[1] for addr in stub.addrs}
    assert len(ports) == 3  # three clients, each address as the socket module gives it
    assert all(addr[0] == "127.0.0.1" and len(addr) == 2 for addr in stub.addrs)


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6(), reason="no IPv6 loopback")
def test_ipv6_clients_and_v4_mapped_ones_of_a_dual_stack_socket() -> None:
    stub, got = asyncio.run(_exchange("::1", socket.AF_INET6, [b"a", b"later"]))
    assert {addr[0] for addr in stub.addrs} == {"::1"}
    assert all(len(addr) == 4 for addr in stub.addrs)
    assert sorted(r for replies in got.values() for r in replies) == [b"later:later", b"ok:a"]
    stub, got = asyncio.run(_exchange("", socket.AF_INET, [b"v4"]))  # the [::] socket
    assert stub.addrs[0][0] == "::ffff:127.0.0.1" and len(stub.addrs[0]) == 4
    assert got[0] == [b"ok:v4"]
