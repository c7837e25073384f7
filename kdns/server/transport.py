"""DNS over UDP and TCP on asyncio: the transports only move bytes to and from a handler.

UDP answers synchronously as datagrams are read: a compiled answer costs less than
scheduling a task would. On Linux the UDP socket is read with ``recvmmsg`` and answered
with ``sendmmsg``, up to :data:`UDP_BATCH` datagrams per system call (:class:`_BatchedUDP`,
through ctypes): one system call per packet each way was a quarter of a cache hit's
CPU. Elsewhere, or with ``KDNS_UDP_BATCH=0``, an asyncio datagram endpoint does it.
Where the optional C extension :mod:`kdns.server._fastudp` was built (and unless
``KDNS_UDP_FAST=0``), it owns those buffers and answers the compiled answers of a batch
in C, exactly as ``Handler._quick`` would, and the response-cache hits the handler
remembered (``Handler.hits``) as ``Handler._outside`` would serve them; every other
datagram of the batch comes back to ``answer_udp`` in Python, and all the replies leave
in one ``sendmmsg``.

TCP frames messages with their two-byte length and answers pipelined queries in order,
a few per loop turn and read in small pieces, so one client's backlog waits in the
kernel rather than in memory or in front of other clients. A client that does not read,
drip-feeds a query, or idles is closed (:class:`TcpLimits`), and at the connection limit
the stalest connection makes room for a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import logging
import os
import socket
import struct
import sys
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from kdns.cluster import table
from kdns.cluster.resolver import FALLTHROUGH
from kdns.dns import wire
from kdns.dns.metrics import FAST_BOUND
from kdns.query import handler
from kdns.query.deferred import Deferred
from kdns.server.plan import ListenAddress

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from kdns.dns.tasks import Tasks
    from kdns.query.handler import Handler, Pending
    from kdns.server import _fastudp

LIMITS_ENV = "KDNS_TCP_LIMITS"
# Queries answered for one connection per loop turn: a client that pipelines thousands
# must not keep everyone else waiting while its backlog is answered.
TCP_BATCH = 16
TCP_READ = 16 * 1024  # bytes read from one connection at a time
BATCH_ENV = "KDNS_UDP_BATCH"
FAST_ENV = "KDNS_UDP_FAST"
FAST_ABI = 3  # _fastudp.c's ABI: its calls as this module makes them
UDP_BATCH = 32  # datagrams per recvmmsg/sendmmsg
UDP_BATCHES = 4  # recvmmsg calls per readiness event: other sockets get their turn
UDP_SLOT = 4096  # bytes per datagram buffer; a query does not come bigger
UDP_ADDRESSES = 4096  # client address tuples kept, by raw sockaddr (then start over)


@dataclass(frozen=True, slots=True)
class TcpLimits:
    """What one TCP client may hold: CoreDNS's server timeouts, and a slot and buffer cap.

    CoreDNS gives a query 3 s to arrive whole, an answer 5 s to be written, and closes a
    connection idle for 10 s. ``buffer`` is the answers kept for a client that does not
    read (the high-water mark; one more message past it is the most ever held).
    """

    connections: int = 1000
    idle: float = 10.0
    read: float = 3.0
    write: float = 5.0
    buffer: int = 32 * 1024

    @classmethod
    def from_env(cls) -> TcpLimits:
        """``KDNS_TCP_LIMITS="connections=50,read=1"``: for tests and load experiments only."""
        text = os.environ.get(LIMITS_ENV, "").strip()
        given = dict(item.strip().partition("=")[::2] for item in text.split(",") if item.strip())
        unknown = set(given) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{LIMITS_ENV}: unknown limit(s) {', '.join(sorted(unknown))}")
        base = cls()
        limits = cls(
            connections=int(given.get("connections", base.connections)),
            idle=float(given.get("idle", base.idle)),
            read=float(given.get("read", base.read)),
            write=float(given.get("write", base.write)),
            buffer=int(given.get("buffer", base.buffer)),
        )
        if min(limits.connections, limits.idle, limits.read, limits.write, limits.buffer) <= 0:
            raise ValueError(f"{LIMITS_ENV}: every limit must be positive")
        return limits


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, so no isinstance check here.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        # Read the handler per datagram: a reload swaps it on the server object.
        response = self.server.handler.answer_udp(data, addr)
        if isinstance(response, bytes):
            if self.transport is not None:
                self.transport.sendto(response, addr)
        elif response is not None:
            self.server.later(response, self._send_later(response, addr))

    def _send_later(
        self, pending: Pending, addr: tuple[str | object, ...]
    ) -> Coroutine[Any, Any, None] | None:
        """Send the reply when it comes: see :meth:`DNSServer.later`."""
        if isinstance(pending, Deferred):
            pending.then(functools.partial(self._send_reply, addr))
            return None
        return self._await_send(pending, addr)

    async def _await_send(self, pending: Pending, addr: tuple[str | object, ...]) -> None:
        self._send_reply(addr, await pending)

    def _send_reply(self, addr: tuple[str | object, ...], response: bytes | None) -> None:
        if response is not None and self.transport is not None:
            self.transport.sendto(response, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a client that went away: nothing to do.
        pass


_MSG = 64  # sizeof(struct mmsghdr) on 64-bit Linux: msghdr 56, msg_len 4, padding 4
_NAME = 28  # sizeof(struct sockaddr_in6), the largest address
_IOV = 16  # sizeof(struct iovec)
_MSGHDR = struct.Struct("QI4xQQQQi4x")  # name, namelen, iov, iovlen, control, controllen, flags
_U32 = struct.Struct("I")
_U64 = struct.Struct("Q")
# Plain ints: socket's IntFlag members cost an enum operation per use (1.1 µs a datagram).
_MSG_TRUNC = int(socket.MSG_TRUNC)
_MSG_DONTWAIT = int(socket.MSG_DONTWAIT)


def _mmsg_calls() -> tuple[Any, Any] | None:
    """libc's recvmmsg and sendmmsg, when this platform has them and the env allows."""
    if os.environ.get(BATCH_ENV, "1").strip() == "0":
        return None
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        recv, send = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recv.restype = send.restype = ctypes.c_int
    return recv, send


def _fast_batch(sock: socket.socket) -> _fastudp.Batch | None:
    """The C loop for this socket, when the extension was built and the env allows."""
    if os.environ.get(FAST_ENV, "1").strip() == "0":
        return None
    try:
        from kdns.server import _fastudp
    except ImportError:  # built without a C compiler: the ctypes loop does it
        return None
    if getattr(_fastudp, "ABI", None) != FAST_ABI:
        log.warning("kdns.server._fastudp is a stale build (reinstall kdns): UDP uses ctypes")
        return None
    return _fastudp.Batch(sock.fileno(), FALLTHROUGH, table.FOREIGN, FAST_BOUND, wire.Answer)


class _BatchedUDP:
    """A UDP socket read with recvmmsg and answered with sendmmsg, in preallocated buffers.

    Per datagram, the bytes are copied out, handed to ``answer_udp`` with the client's
    address (a tuple made once per client address and kept), and the reply copied in. A
    reply that the chain answers later is sent on its own with ``sendto``. With the C
    extension (``self.fast``), C reads the batch and answers the compiled answers and the
    remembered cache hits; only the datagrams it declines are copied out for ``answer_udp``.
    """

    def __init__(self, server: DNSServer, sock: socket.socket, calls: tuple[Any, Any]) -> None:
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.family = sock.family
        self._addrs: dict[bytes, tuple[Any, ...]] = {}  # raw sockaddr -> address tuple
        self.fast = _fast_batch(sock)
        self._declined: list[tuple[int, bytes, bytes]] = []
        if self.fast is not None:
            return  # C owns the buffers
        self._recv, self._send = calls
        self._in = ctypes.create_string_buffer(UDP_BATCH * UDP_SLOT)
        self._out = ctypes.create_string_buffer(UDP_BATCH * UDP_SLOT)
        self._names = ctypes.create_string_buffer(UDP_BATCH * _NAME)
        self._iov_in = ctypes.create_string_buffer(UDP_BATCH * _IOV)
        self._iov_out = ctypes.create_string_buffer(UDP_BATCH * _IOV)
        self._msgs_in = ctypes.create_string_buffer(UDP_BATCH * _MSG)
        self._msgs_out = ctypes.create_string_buffer(UDP_BATCH * _MSG)
        at = ctypes.addressof
        self._name_at = at(self._names)
        for i in range(UDP_BATCH):
            _U64.pack_into(self._iov_in, i * _IOV, at(self._in) + i * UDP_SLOT)
            _U64.pack_into(self._iov_in, i * _IOV + 8, UDP_SLOT)
            _U64.pack_into(self._iov_out, i * _IOV, at(self._out) + i * UDP_SLOT)
            for msgs, iov in ((self._msgs_in, self._iov_in), (self._msgs_out, self._iov_out)):
                _MSGHDR.pack_into(
                    msgs, i * _MSG, self._name_at + i * _NAME, _NAME, at(iov) + i * _IOV,
                    1, 0, 0, 0,
                )  # fmt: skip
        self._inv = memoryview(self._in).cast("B")
        self._outv = memoryview(self._out).cast("B")
        self._namev = memoryview(self._names).cast("B")
        self._mi = memoryview(self._msgs_in).cast("B")
        self._mo = memoryview(self._msgs_out).cast("B")
        self._io = memoryview(self._iov_out).cast("B")

    @property
    def path(self) -> str:
        """Which loop reads this socket, for the start-up log and the tests."""
        return "C (kdns.server._fastudp)" if self.fast is not None else "ctypes recvmmsg"

    def readable(self) -> None:
        """Answer what the socket holds: at most UDP_BATCHES batches, then the loop's turn."""
        if self.fast is not None:
            self._readable_fast(self.fast)
            return
        for _ in range(UDP_BATCHES):
            n = self._recv(self.fd, self._msgs_in, UDP_BATCH, _MSG_DONTWAIT, None)
            if n <= 0:
                return  # EAGAIN: drained; other errors (ICMP) concern no query
            self._answer(n)
            if n < UDP_BATCH:
                return

    def _answer(self, n: int) -> None:
        handler = self.server.handler  # read per batch: a reload swaps it
        inv, outv, names, mi, mo, io = (
            self._inv, self._outv, self._namev, self._mi, self._mo, self._io
        )  # fmt: skip
        unpack = _U32.unpack_from
        out = 0
        for i in range(n):
            base = i * _MSG
            size, flags = unpack(mi, base + 56)[0], unpack(mi, base + 48)[0]
            namelen = unpack(mi, base + 8)[0]
            _U32.pack_into(mi, base + 8, _NAME)  # the next recvmmsg may fill it again
            if flags & _MSG_TRUNC:
                continue  # bigger than any query: not one
            off = i * UDP_SLOT
            pkt = bytes(inv[off : off + size])
            at = i * _NAME
            replied = self._respond(handler, pkt, bytes(names[at : at + namelen]))
            if replied is None:
                continue
            response, addr = replied
            size = len(response)
            if size > UDP_SLOT:
                self._sendto(response, addr)
                continue
            slot = out * UDP_SLOT
            outv[slot : slot + size] = response
            _U64.pack_into(io, out * _IOV + 8, size)
            base = out * _MSG
            _U64.pack_into(mo, base, self._name_at + at)
            _U32.pack_into(mo, base + 8, namelen)
            out += 1
        sent = 0
        while sent < out:
            done = self._send(self.fd, ctypes.byref(self._msgs_out, sent * _MSG), out - sent, 0)
            if done <= 0:
                if ctypes.get_errno() == errno.EINTR:
                    continue
                return  # the socket's buffer is full: UDP replies may be lost, as any
            sent += done

    def _readable_fast(self, fast: _fastudp.Batch) -> None:
        declined = self._declined
        for _ in range(UDP_BATCHES):
            handler = self.server.handler  # read per batch: a reload swaps it
            route = getattr(handler, "fast", None)
            hits = getattr(handler, "hits", None)
            if route is not None:
                tbl = route.table
                n = fast.receive(
                    tbl.nodes, tbl.packed, tbl.lazy, handler.chain.routed, handler.stats,
                    route.zone, route.positive_only, handler.max_udp, declined, hits,
                )  # fmt: skip
            elif hits is not None:  # no cluster table: only the remembered cache hits
                n = fast.receive(
                    None, None, None, handler.chain.routed, handler.stats, "", False,
                    handler.max_udp, declined, hits,
                )  # fmt: skip
            else:  # not a kdns Handler: C declines every datagram
                n = fast.receive(None, None, None, None, None, "", False, 0, declined, None)
            if n <= 0:
                return
            if declined:
                try:
                    self._answer_declined(handler, fast, declined)
                finally:
                    declined.clear()
                    fast.flush()
            if n < UDP_BATCH:
                return

    def _answer_declined(
        self, handler: Handler, fast: _fastudp.Batch, declined: list[tuple[int, bytes, bytes]]
    ) -> None:
        """What C left to Python: each datagram through ``answer_udp``, replies staged."""
        for slot, pkt, raw in declined:
            replied = self._respond(handler, pkt, raw)
            if replied is not None and not fast.reply(slot, replied[0]):
                self._sendto(*replied)

    def _respond(
        self, handler: Handler, pkt: bytes, raw: bytes
    ) -> tuple[bytes, tuple[Any, ...]] | None:
        """``answer_udp`` for one datagram from the client's raw sockaddr: the reply to
        send now and the client's address, or None (nothing to say, or a reply the chain
        sends later by itself)."""
        addr = self._addrs.get(raw)
        if addr is None:
            addr = self._addr(raw)
        response = handler.answer_udp(pkt, addr)
        if response is None:
            return None
        if not isinstance(response, bytes):
            self.server.later(response, self._send_later(response, addr))
            return None
        return response, addr

    def _addr(self, raw: bytes) -> tuple[Any, ...]:
        """The client's address as Python's socket module gives it, kept for next time
        (clients keep their source ports; the tuple is what ``answer_udp`` takes)."""
        port = (raw[2] << 8) | raw[3]
        addr: tuple[Any, ...]
        if self.family == socket.AF_INET6:
            flow = int.from_bytes(raw[4:8], "big")  # network order, as the socket module reads it
            scope = _U32.unpack_from(raw, 24)[0]
            addr = (socket.inet_ntop(socket.AF_INET6, raw[8:24]), port, flow, scope)
        else:
            addr = (socket.inet_ntop(socket.AF_INET, raw[4:8]), port)
        if len(self._addrs) >= UDP_ADDRESSES:
            self._addrs.clear()
        self._addrs[raw] = addr
        return addr

    def _send_later(
        self, pending: Pending, addr: tuple[Any, ...]
    ) -> Coroutine[Any, Any, None] | None:
        """Send the reply when it comes: see :meth:`DNSServer.later`."""
        if isinstance(pending, Deferred):
            pending.then(functools.partial(self._send_reply, addr))
            return None
        return self._await_send(pending, addr)

    async def _await_send(self, pending: Pending, addr: tuple[Any, ...]) -> None:
        self._send_reply(addr, await pending)

    def _send_reply(self, addr: tuple[Any, ...], response: bytes | None) -> None:
        if response is not None:
            self._sendto(response, addr)

    def _sendto(self, response: bytes, addr: tuple[Any, ...]) -> None:
        # A plain try: contextlib.suppress costs half a microsecond per reply.
        try:  # noqa: SIM105
            self.sock.sendto(response, addr)
        except OSError:  # a full buffer, a client gone: UDP may lose it
            pass

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # no loop running: nothing to remove
            asyncio.get_running_loop().remove_reader(self.fd)
        if self.fast is not None:
            self.fast.close()
        self.sock.close()


class _TCP(asyncio.BufferedProtocol):
    """One client's stream: length-framed queries in, answers out, bounded in time and memory.

    One deadline at a time: the next query must start within ``idle`` of the last, a
    started query must be whole within ``read`` of its first byte (extra bytes never
    extend it), and a client that stops reading must drain within ``write``. While it
    does not read, no further queries are answered, so its backlog stays in the kernel.
    """

    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.limits = server.limits
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.paused = False  # our writes are above the high-water mark: the client does not read
        self.receiving = False  # part of a query is buffered: the read deadline runs
        self.family = 0
        self.remote: tuple[str, int] = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername") or ("", 0)
        self.family = handler.family_of(tuple(peer))
        self.remote = handler.remote_of(tuple(peer))
        self.transport.set_write_buffer_limits(high=self.limits.buffer)
        self.server.admit(self)
        self._expect(self.limits.idle)

    def _expect(self, seconds: float) -> None:
        """Close the connection unless the awaited progress comes within ``seconds``."""
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline = asyncio.get_running_loop().call_later(seconds, self._expired)

    def _expired(self) -> None:
        self.deadline = None
        transport = self.transport
        if transport is None:
            return
        if self.paused or transport.get_write_buffer_size():
            transport.abort()  # close() would wait for a flush that never comes
        else:
            transport.close()

    def evict(self) -> None:
        """Make room for a new client: this one has been quiet or slow the longest."""
        self.server.connections.pop(self, None)
        if self.transport is not None:
            self.transport.abort()

    def get_buffer(self, sizehint: int) -> memoryview:
        # Reads land in the server's scratch buffer: at most TCP_READ bytes a read, so a
        # flood sits in the kernel, not in our memory, until we are ready for it.
        return self.server.scratch

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.server.scratch[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        self.buffer += data
        if not self.paused:
            self._answer_buffered()
        elif len(self.buffer) > self.limits.buffer:
            self._overflow()

    def _answer_buffered(self) -> None:
        """Answer the whole queries buffered, until the client stops reading our answers."""
        buf = self.buffer
        answered = 0
        while len(buf) >= 2 and not self.paused and self.transport is not None:
            size = (buf[0] << 8) | buf[1]
            if len(buf) < 2 + size:
                break
            if answered == TCP_BATCH:
                self._yield_turn()
                break
            query = bytes(buf[2 : 2 + size])
            del buf[: 2 + size]
            answered += 1
            self._answer(query)
        if self.transport is None or self.transport.is_closing():
            return
        if self.paused:  # the write deadline runs; what is left waits for the client to read
            if len(buf) > self.limits.buffer:
                self._overflow()
            return
        if answered:
            self.server.touch(self)
        if answered or (buf and not self.receiving):
            self._await_next()

    def _yield_turn(self) -> None:
        """Let other clients, UDP and new connections in before answering the rest."""
        assert self.transport is not None
        self.transport.pause_reading()
        asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        if self.paused or self.transport is None:
            return  # resume_writing takes over
        self.transport.resume_reading()
        self._answer_buffered()

    def _await_next(self) -> None:
        """A query begun must be whole within ``read`` of now; otherwise wait ``idle``."""
        self.receiving = bool(self.buffer)
        self._expect(self.limits.read if self.receiving else self.limits.idle)

    def _answer(self, query: bytes) -> None:
        assert self.transport is not None
        response = self.server.handler.answer(query, True, self.family, self.remote)
        if isinstance(response, bytes):
            self._send(response)
        elif response is None:
            # Nothing sensible to say to this stream: RFC 7766 lets us close it.
            self.transport.close()
        else:
            # RFC 7766 lets pipelined replies leave out of order; clients match IDs.
            self.server.later(response, self._send_later(response))

    async def _send_later(self, pending: Pending) -> None:
        response = await pending
        if response is not None:
            self._send(response)

    def _send(self, response: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(len(response).to_bytes(2, "big") + response)
        if self.paused and transport.get_write_buffer_size() > self.limits.buffer + 65537:
            self._overflow()  # answers still arriving (slow path) for a client that never reads

    def _overflow(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def eof_received(self) -> bool | None:
        return None  # close once our writes are flushed

    def pause_writing(self) -> None:
        self.paused = True
        if self.transport is not None:
            self.transport.pause_reading()
            self._expect(self.limits.write)

    def resume_writing(self) -> None:
        self.paused = False
        if self.transport is None:
            return
        self.transport.resume_reading()
        self._await_next()
        # Not from inside the transport's write path: answer on the next loop turn.
        asyncio.get_running_loop().call_soon(self._resume_answering)

    def _resume_answering(self) -> None:
        if not self.paused and self.transport is not None:
            self._answer_buffered()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.server.connections.pop(self, None)
        self.transport = None


class DNSServer:
    """One UDP socket and one TCP listener on an address, both feeding one handler."""

    def __init__(
        self,
        address: ListenAddress,
        handler: Handler,
        tasks: Tasks,
        limits: TcpLimits | None = None,
    ) -> None:
        self.address = address
        self.handler = handler
        self.tasks = tasks
        self.limits = limits if limits is not None else TcpLimits.from_env()
        # Least recently answered first: who goes when a new client finds every slot taken.
        self.connections: OrderedDict[_TCP, None] = OrderedDict()
        # Shared by every connection: a read is copied out before the next one starts.
        self.scratch = memoryview(bytearray(TCP_READ))
        self._udp: asyncio.DatagramTransport | _BatchedUDP | None = None
        self._tcp: asyncio.Server | None = None

    def later(self, pending: Pending, send: Coroutine[Any, Any, None] | None) -> None:
        """Run ``send`` (awaiting the chain's ``pending`` answer) as a tracked task.

        ``send`` is None when ``pending`` is a forwarded query's Deferred: the UDP
        transports' ``_send_later`` registered their send with it instead, and the
        upstream's reader calls it, with no task. Those are bounded by the forwarder
        (``max_concurrent``, the IDs of its pooled sockets), not by the task limit.
        """
        if send is None:
            return
        if not self.tasks.spawn(send):
            pending.close()  # over the in-flight limit: the query goes unanswered

    async def start(self) -> None:
        family, host = _bind_target(self.address.host)
        # Port 0 picks a free UDP port; TCP may find that number taken, so try again.
        for attempt in range(20):
            udp_sock = _socket(family, socket.SOCK_DGRAM, host, self.address.port)
            port = udp_sock.getsockname()[1]
            try:
                tcp_sock = _socket(family, socket.SOCK_STREAM, host, port)
            except OSError:
                udp_sock.close()
                if self.address.port != 0 or attempt == 19:
                    raise
                continue
            break
        loop = asyncio.get_running_loop()
        self._tcp = await loop.create_server(lambda: _TCP(self), sock=tcp_sock, backlog=1024)
        calls = _mmsg_calls()
        if calls is not None:
            batched = _BatchedUDP(self, udp_sock, calls)
            loop.add_reader(udp_sock.fileno(), batched.readable)
            self._udp = batched
            path = batched.path
        else:
            transport, _ = await loop.create_datagram_endpoint(lambda: _UDP(self), sock=udp_sock)
            self._udp = transport
            path = "asyncio datagram endpoint"
        self.address = ListenAddress(self.address.host, port)
        log.debug("UDP on %s is read by the %s loop", self.address, path)
        log.info("serving DNS on %s (udp, tcp)", self.address)

    def admit(self, conn: _TCP) -> None:
        """Take a new client; at the limit, drop the one quiet or slow the longest.

        Refusing newcomers instead would let idle or drip-feeding clients keep every slot.
        """
        while len(self.connections) >= self.limits.connections:
            stalest = next(iter(self.connections))
            log.debug("TCP connection limit reached: closing %s:%d", *stalest.remote)
            stalest.evict()
        self.connections[conn] = None

    def touch(self, conn: _TCP) -> None:
        """``conn`` was just answered: last in line to be evicted."""
        if conn in self.connections:
            self.connections.move_to_end(conn)

    @property
    def port(self) -> int:
        return self.address.port

    def close_listeners(self) -> None:
        """Stop accepting; queries already read are still answered."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()

    async def close(self, drain: float = 1.0) -> None:
        self.close_listeners()
        if self._tcp is not None:
            for conn in list(self.connections):
                if conn.transport is not None:
                    conn.transport.close()
            try:
                await asyncio.wait_for(self._tcp.wait_closed(), drain)
            except TimeoutError:
                for conn in list(self.connections):
                    if conn.transport is not None:
                        conn.transport.abort()
            self._tcp = None


def _bind_target(host: str) -> tuple[socket.AddressFamily, str]:
    """The family and address to bind for a listen host ("" for every address).

    Every address is one dual-stack [::] socket per transport, as Go's net.Listen makes
    for CoreDNS: asyncio would bind TCP with IPV6_V6ONLY set, and refuse IPv4 clients.
    A machine without IPv6 gets 0.0.0.0 instead.
    """
    if host:
        return (socket.AF_INET6 if ":" in host else socket.AF_INET), host
    if socket.has_ipv6 and _dual_stack_ok():
        return socket.AF_INET6, "::"
    return socket.AF_INET, "0.0.0.0"


def _socket(
    family: socket.AddressFamily, kind: socket.SocketKind, host: str, port: int
) -> socket.socket:
    """A bound, non-blocking socket; IPv6 ones also accept IPv4 (v4-mapped) clients."""
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if kind == socket.SOCK_DGRAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _dual_stack_ok() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            probe.bind(("::", 0))
        return True
    except OSError:
        return False
