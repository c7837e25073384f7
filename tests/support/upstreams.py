"""Upstreams for the forward and cache tests: real dnsmasq and unbound, and tiny fault servers.

dnsmasq and unbound are the Debian binaries, started on 127.0.0.1 with a free port and
waited for until they answer. The fault servers are asyncio UDP+TCP servers living in
the test's own event loop: one that answers late, one that truncates over UDP, one that
sends replies that do not belong to the query first. Nothing leaves 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dnslib
import pytest

from kdns.plugins.forward.setup import ForwardConfig, Upstream
from tests.support.process import free_port

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"

needs_dnsmasq = pytest.mark.skipif(not Path(DNSMASQ).exists(), reason="dnsmasq not installed")
needs_unbound = pytest.mark.skipif(not Path(UNBOUND).exists(), reason="unbound not installed")


def closed_port() -> int:
    """A port nothing listens on: queries there get ICMP port unreachable."""
    return free_port()


def _wait_answering(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    query = dns.message.make_query("ready.invalid.", "A")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {proc.stderr.read() if proc.stderr else ''!r}")
        try:
            dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
            return
        except (TimeoutError, OSError, dns.exception.Timeout):
            continue
    raise RuntimeError(f"{what} did not answer on port {port}")


class _Daemon:
    """A Debian DNS server run in the foreground on 127.0.0.1:``port`` until stopped."""

    port: int
    proc: subprocess.Popen[bytes]

    def _start(self, args: list[str], what: str) -> None:
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_answering(self.port, self.proc, what)
        except BaseException:
            self.stop()
            raise

    def upstream(self) -> Upstream:
        return Upstream("dns", "127.0.0.1", self.port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()


class Dnsmasq(_Daemon):
    """dnsmasq answering ``--address`` names locally, REFUSED for anything else."""

    def __init__(self, addresses: dict[str, str], port: int = 0, extra: tuple[str, ...] = ()):
        self.port = port or free_port()
        args = [
            DNSMASQ,
            "-k",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            f"--port={self.port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--pid-file=",
            "--user=root",
            "--local-ttl=300",
            "--log-facility=-",
            *(f"--address=/{name}/{ip}" for name, ip in addresses.items()),
            *extra,
        ]
        self._start(args, "dnsmasq")


UNBOUND_CONF = """\
server:
    interface: 127.0.0.1@{port}
    port: {port}
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    logfile: ""
    use-syslog: no
    verbosity: 0
    num-threads: 1
    do-ip6: no
    so-reuseport: no
    module-config: "iterator"
    access-control: 127.0.0.0/8 allow
    local-zone: "." static
    local-zone: "example.net." static
    local-data: "example.net. 3600 IN SOA ns.example.net. host.example.net. 1 3600 1200 604800 30"
    local-data: "www.example.net. 300 IN A 192.0.2.10"
    local-data: "other.example.net. 300 IN A 192.0.2.11"
    local-data: "third.example.net. 300 IN A 192.0.2.12"
    local-data: "short.example.net. 2 IN A 192.0.2.13"
    local-data: "txt.example.net. 300 IN TXT \\"hello\\""
"""


class Unbound(_Daemon):
    """unbound serving a static ``example.net`` (with SOA, so denials are cacheable)."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "unbound.conf"
        conf.write_text(UNBOUND_CONF.format(port=self.port, dir=workdir))
        self._start([UNBOUND, "-d", "-c", str(conf)], "unbound")


@contextlib.contextmanager
def running(server: Dnsmasq | Unbound) -> Iterator[Dnsmasq | Unbound]:
    try:
        yield server
    finally:
        server.stop()


def config(*upstreams: Upstream, **opts: object) -> ForwardConfig:
    """A ``forward . TO...`` config with options, as the Corefile parser would make it."""
    opts.setdefault("from_zone", ".")
    return ForwardConfig(to=upstreams, to_args=tuple(str(u) for u in upstreams), **opts)  # type: ignore[arg-type]


def query(name: str, rdtype: str = "A", **kw: object) -> dns.message.Message:
    return dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]


def parse(reply: bytes | None) -> dns.message.Message:
    assert reply is not None
    return dns.message.from_wire(reply)


def addresses(msg: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in msg.answer for rd in rrset)


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition the code under test makes true by itself, with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# -- fault servers -----------------------------------------------------------------


def answer(wire: bytes, ip: str = "192.0.2.99", count: int = 1) -> bytes:
    """A NOERROR reply to ``wire`` with ``count`` A records."""
    req = dnslib.DNSRecord.parse(wire)
    reply = req.reply()
    for i in range(count):
        addr = ip if count == 1 else f"198.51.{i // 250}.{i % 250 + 1}"
        reply.add_answer(dnslib.RR(req.q.qname, dnslib.QTYPE.A, rdata=dnslib.A(addr), ttl=60))
    return bytes(reply.pack())


class FaultServer:
    """A UDP+TCP DNS server in the test's loop whose answers a test scripts.

    ``respond(wire, proto)`` returns the packets to send back (possibly none); ``delay``
    holds every answer back that long. ``seen`` records (proto, qname) of each query.
    """

    def __init__(
        self,
        respond: Callable[[bytes, str], list[bytes]],
        delay: float = 0.0,
    ) -> None:
        self.respond = respond
        self.delay = delay
        self.seen: list[tuple[str, str]] = []
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> FaultServer:
        loop = asyncio.get_running_loop()
        for _ in range(20):
            port = free_port()
            try:
                self._tcp = await asyncio.start_server(self._client, "127.0.0.1", port)
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _UDP(self), local_addr=("127.0.0.1", port)
                )
            except OSError:
                if self._tcp is not None:
                    self._tcp.close()
                continue
            self._udp = transport
            self.port = port
            return self
        raise RuntimeError("no port for the fault server")

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()

    def upstream(self) -> Upstream:
        return Upstream("dns", "127.0.0.1", self.port)

    def _note(self, wire: bytes, proto: str) -> None:
        try:
            self.seen.append((proto, str(dnslib.DNSRecord.parse(wire).q.qname)))
        except Exception:
            self.seen.append((proto, "?"))

    def udp_query(self, wire: bytes, addr: tuple[str, int]) -> None:
        self._note(wire, "udp")
        task = asyncio.get_running_loop().create_task(self._udp_answer(wire, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _udp_answer(self, wire: bytes, addr: tuple[str, int]) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        for packet in self.respond(wire, "udp"):
            assert self._udp is not None
            self._udp.sendto(packet, addr)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                wire = await reader.readexactly(size)
                self._note(wire, "tcp")
                if self.delay:
                    await asyncio.sleep(self.delay)
                for packet in self.respond(wire, "tcp"):
                    writer.write(struct.pack("!H", len(packet)) + packet)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, server: FaultServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server.udp_query(data, addr)


def truncating(wire: bytes, proto: str) -> list[bytes]:
    """TC=1 with no records over UDP, 60 A records over TCP (what a big RRset does)."""
    if proto == "udp":
        req = dnslib.DNSRecord.parse(wire)
        reply = req.reply()
        reply.header.tc = 1
        return [bytes(reply.pack())]
    return [answer(wire, count=60)]


def rcode_reply(wire: bytes, rcode: int) -> bytes:
    req = dnslib.DNSRecord.parse(wire)
    reply = req.reply()
    reply.header.rcode = rcode
    return bytes(reply.pack())


def servfail_everything(wire: bytes, proto: str) -> list[bytes]:
    return [rcode_reply(wire, dns.rcode.SERVFAIL)]
