"""The ``loop`` plugin's probe: a random HINFO query sent to a listener at start.

Three arrivals of it through the chain are a forwarding loop: kdns stops, as CoreDNS does.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from kdns.query import chain

if TYPE_CHECKING:
    from kdns.server.plan import ListenAddress


class LoopProbe:
    """The loop plugin's startup probe of one listener, timed as CoreDNS's setup.go.

    Each exchange waits ``TIMEOUT`` for an answer. An unanswered one is not evidence of
    a loop (the upstream may be black-holed, slow or still starting): the arrival count
    is reset and the probe is sent again after ``PAUSE``, for at most ``DEADLINE``.
    Only three arrivals within one exchange are a loop. After the first answer the
    count keeps running for ``GRACE`` (a loop whose far end answered first still shows
    up), then the plugin disables itself so no later query can trip it.
    """

    TIMEOUT = 2.0
    PAUSE = 1.0
    DEADLINE = 30.0
    GRACE = 2.0

    def __init__(self, pipe: chain.Pipeline, addr: ListenAddress, zone: str) -> None:
        self.pipe = pipe
        self.addr = addr
        labels = f"{random.randrange(1 << 62)}.{random.randrange(1 << 62)}"
        self.qname = f"{labels}.{zone}" if zone != "." else f"{labels}."
        pipe.loop_probes[self.qname] = 0

    def unanswered(self) -> None:
        """An exchange timed out: the arrivals so far do not count towards a loop."""
        if self.qname in self.pipe.loop_probes:
            self.pipe.loop_probes[self.qname] = 0

    def disable(self) -> None:
        self.pipe.loop_probes.pop(self.qname, None)

    async def run(self) -> None:
        try:
            if await self._probe():
                await asyncio.sleep(self.GRACE)
        finally:
            self.disable()

    async def _probe(self) -> bool:
        """Send the probe until something answers or the deadline passes; True if answered."""
        import dnslib

        host = self.addr.host if self.addr.host not in ("", "::", "0.0.0.0") else "127.0.0.1"
        loop = asyncio.get_running_loop()
        packet = dnslib.DNSRecord.question(self.qname, "HINFO").pack()
        answered: asyncio.Future[bytes] = loop.create_future()

        class _Probe(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, peer: object) -> None:
                if not answered.done():
                    answered.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(
            _Probe, remote_addr=(host, self.addr.port)
        )
        deadline = loop.time() + self.DEADLINE
        try:
            while loop.time() < deadline:
                transport.sendto(packet)
                await asyncio.wait([answered], timeout=self.TIMEOUT)
                if answered.done():
                    return True
                self.unanswered()
                # A late answer during the pause ends the probing just as well.
                await asyncio.wait([answered], timeout=self.PAUSE)
                if answered.done():
                    return True
            return False
        finally:
            transport.close()
            if not answered.done():
                answered.cancel()
