"""Forwarding to upstream resolvers, as CoreDNS's ``forward`` plugin does it.

A :class:`Forwarder` is one ``forward FROM TO...`` stanza; a :class:`Chain` is the
stanzas of one server block in Corefile order (``next RCODE`` hands a reply on). What
clients and dashboards can observe follows CoreDNS, not a cleaner idea of forwarding:

* Upstream protocol: the client's, unless ``force_tcp`` (always TCP) or ``prefer_udp``
  (always UDP first). A truncated UDP reply goes back to the client as is, which retries
  over TCP itself; only with ``prefer_udp`` does kdns retry over TCP for it, because then
  it was kdns that chose UDP.
* One query gets at most :data:`DEFAULT_TIMEOUT` (5 s) across all tries, each try at most
  :data:`READ_TIMEOUT` (2 s); an exhausted budget is SERVFAIL built from the query.
* An error kicks off a health probe of that upstream (``. IN NS`` every ``health_check``
  interval until one succeeds); every failed probe adds a fail, a success clears them,
  and an upstream with *more* than ``max_fails`` fails is down and skipped. When every
  upstream is down the health checks are assumed broken and one random upstream is tried
  anyway (``failfast_all_unhealthy_upstreams`` answers SERVFAIL instead).
* Beyond ``max_concurrent`` queries in flight the answer is REFUSED, counted.
* Replies must carry the ID we sent and the question we asked; anything else on the
  socket is dropped and we keep listening, so a spoofed packet cannot win the race.

UDP goes through a few connected sockets per upstream (:data:`UDP_SOCKETS`, round-robin)
that many queries share, each sent with a fresh random ID and told apart by ID and
question; a socket per query in flight ran a busy server out of file descriptors. TCP
connections are pooled per upstream. Both are closed after ``expire`` idle seconds. The
pool takes query bytes as they are and only rewrites the ID, so a caller that never
parsed the query can use it.

A query is forwarded by callbacks (:meth:`Chain.send`, :meth:`Forwarder.send`; ``forward``
awaits them): a try on an open pooled UDP socket is answered from that socket's reader
and timed out by one timer per forwarder (:class:`_Flight`, :class:`_Expiry`), with no
task or coroutine per query; only tries that must await (TCP, TLS, DoH, a socket to
open) run as tasks.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
import random
import socket
import ssl
import struct
import time
import weakref
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, cast

import prometheus_client
from prometheus_client import CollectorRegistry

from kdns import errors as kdns_errors
from kdns.corefile import goparse, keys
from kdns.dns import metrics, names
from kdns.dns.metrics import Buckets
from kdns.plugins.forward import doh
from kdns.plugins.forward import metrics as forward_metrics
from kdns.plugins.forward.setup import ForwardConfig, Upstream

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
"""The whole forwarding budget of one query, every try included (CoreDNS defaultTimeout)."""
READ_TIMEOUT = 2.0
"""One try: CoreDNS's static per-upstream read timeout."""
HEALTH_TIMEOUT = 1.0
"""One health probe (CoreDNS's health checker read/write timeout)."""
MAX_PASSES = 3
"""Passes over the upstream list per query: fast failures (refused) must not spin 5 s."""
MAX_IDLE_TCP = 16
"""Idle pooled TCP connections kept per upstream: pooling must not grow without bound."""
UDP_SOCKETS = 4
"""Connected UDP sockets per upstream, used in turn: a few source ports, not one a query."""
MAX_PENDING = 16384
"""Queries in flight on one UDP socket: a quarter of the ID space at most, so a fresh ID
is found in a few draws and a blind spoofer must still guess port, ID and question."""
_ID_DRAWS = 8
"""Random IDs tried before a socket counts as full: bounded, and at most a quarter taken."""
MIN_HEALTH_INTERVAL = 0.05
"""``health_check 0`` would be a busy loop; this is the floor."""
TIME_BUCKETS = metrics.DURATION_BUCKETS
"""plugin.TimeBuckets: 0.25 ms to 8 s."""

NOERROR = 0
SERVFAIL = 2
REFUSED = 5
_OPT = 41
_NS = 2
_TC = 0x02
_LEN = struct.Struct("!H")


class UpstreamError(kdns_errors.KdnsError):
    """The upstream gave no usable answer."""


class UpstreamTimeout(UpstreamError):
    """No matching answer from the upstream in time."""


class CachedConnClosed(UpstreamError):
    """The upstream closed a pooled TCP connection; a fresh one is worth trying at once."""


FAILURES = (OSError, UpstreamError, ssl.SSLError, doh.DohError)
"""What one exchange with an upstream may fail with: try the next one, probe this one."""


_ids: list[int] = []


def _random_id() -> int:
    """A random query ID (CoreDNS's dns.Id: unpredictable, 16 bits), from the OS's CSPRNG
    a thousand at a time: one getrandom call, not one per query."""
    if not _ids:
        _ids.extend(struct.unpack("!1024H", os.urandom(2048)))
    return _ids.pop()


def rcode_name(rcode: int) -> str:
    return metrics.rcode_name(rcode)


# -- message bits ------------------------------------------------------------------


def question_end(msg: bytes) -> int:
    """Offset just past the first question; ValueError if there is none or it is bad.

    The question name is the first name in a message, so it cannot be compressed.
    """
    if len(msg) < 12 or msg[4:6] == b"\x00\x00":
        raise ValueError("no question")
    end = names.name_end(msg) + 4  # names.BadName is a ValueError
    if end > len(msg):
        raise ValueError("bad question")
    return end


def question_key(msg: bytes, end: int) -> bytes:
    """The question with the name lower-cased: what a reply's question must equal."""
    return msg[12 : end - 4].lower() + msg[end - 4 : end]


def _opt_after(query: bytes, qend: int) -> tuple[int, bool] | None:
    """(UDP size, DO) of an OPT record right after the question, if there is one."""
    if query[10:12] == b"\x00\x00" or len(query) < qend + 11 or query[qend] != 0:
        return None
    rtype, size, _ext, _ver, flags = struct.unpack_from("!HHBBH", query, qend + 1)
    if rtype != _OPT:
        return None
    return size, bool(flags & 0x8000)


def error_reply(query: bytes, rcode: int) -> bytes | None:
    """A reply carrying only ``rcode`` and the query's question, as CoreDNS's SetRcode.

    ID, opcode, RD and CD come from the query; an OPT record is echoed (size and DO) when
    the query had one. None for something that is not a query at all.
    """
    if len(query) < 12 or query[2] & 0x80:
        return None
    flags = bytes((0x80 | (query[2] & 0x79), (query[3] & 0x10) | (rcode & 0x0F)))
    try:
        qend = question_end(query)
    except ValueError:
        return query[:2] + flags + b"\x00" * 8
    opt = _opt_after(query, qend)
    if opt is None:
        return query[:2] + flags + b"\x00\x01\x00\x00\x00\x00\x00\x00" + query[12:qend]
    size, do = opt
    record = b"\x00" + struct.pack("!HHBBHH", _OPT, size, 0, 0, 0x8000 if do else 0, 0)
    return query[:2] + flags + b"\x00\x01\x00\x00\x00\x00\x00\x01" + query[12:qend] + record


def qname_of(query: bytes) -> str:
    """The question name as lower-case text with a trailing dot (``\\.``-escaped dots)."""
    labels = names.wire_labels(query[12 : question_end(query) - 4]) or ()
    escaped = [raw.decode("latin-1").lower().replace(".", "\\.") for raw in labels]
    return ".".join(escaped) + "." if escaped else "."


def _valid_reply(data: bytes, ident: bytes, qkey: bytes) -> bool:
    """Our ID, a response, exactly one question, and the question we asked (request.Match)."""
    if len(data) < 12 or data[:2] != ident or not data[2] & 0x80 or data[4:6] != b"\x00\x01":
        return False
    try:
        end = question_end(data)
    except ValueError:
        return False
    return question_key(data, end) == qkey


def _asks(data: bytes, qkey: bytes) -> bool:
    """:func:`_valid_reply` for a datagram already matched by its ID: a response with
    exactly the one question ``qkey`` (its name lower-cased), without walking the name.

    ``qkey`` is a well-formed question, so a reply whose bytes there equal it once
    lower-cased asks the same (length octets are below 64: lower() leaves them alone,
    and cannot turn anything else into one).
    """
    end = 12 + len(qkey)
    return (
        len(data) >= end
        and data[2] & 0x80 != 0
        and data[4:6] == b"\x00\x01"
        and data[end - 4 : end] == qkey[-4:]
        and data[12 : end - 4].lower() == qkey[:-4]
    )


def in_zone(name: str, zone: str) -> bool:
    """``name`` is ``zone`` or below it; both absolute and lower-case."""
    return zone == "." or name == zone or name.endswith("." + zone)


# -- metrics -----------------------------------------------------------------------


class _Metrics:
    """CoreDNS's forward metrics: the current ``coredns_proxy_*`` names, and the
    ``coredns_forward_*`` names of CoreDNS < 1.11 that common dashboards still query.

    One instance per registry, shared by every forwarder registered there, because a
    registry refuses a second collector with the same name.
    """

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry
        c = prometheus_client.Counter
        # requests, responses and the two duration histograms: counted per query as
        # plain integers, exported by this collector (kdns.plugins.forward.metrics).
        self.tallies = forward_metrics.Collector()
        if r is not None:
            r.register(self.tallies)
        self.hc_failures = c(
            "coredns_forward_healthcheck_failures_total",
            "Counter of the number of failed healthchecks.",
            ["to"],
            registry=r,
        )
        self.conn_hits = c(
            "coredns_forward_conn_cache_hits_total",
            "Counter of connection cache hits per upstream and protocol.",
            ["to", "proto"],
            registry=r,
        )
        self.conn_misses = c(
            "coredns_forward_conn_cache_misses_total",
            "Counter of connection cache misses per upstream and protocol.",
            ["to", "proto"],
            registry=r,
        )
        self.proxy_hc_failures = c(
            "coredns_proxy_healthcheck_failures_total",
            "Count of failed health checks per upstream.",
            ["proxy_name", "to"],
            registry=r,
        )
        self.proxy_conn_hits = c(
            "coredns_proxy_conn_cache_hits_total",
            "Counter of connection cache hits per upstream and protocol.",
            ["proxy_name", "to", "proto"],
            registry=r,
        )
        self.proxy_conn_misses = c(
            "coredns_proxy_conn_cache_misses_total",
            "Counter of connection cache misses per upstream and protocol.",
            ["proxy_name", "to", "proto"],
            registry=r,
        )
        self.hc_broken = c(
            "coredns_forward_healthcheck_broken_total",
            "Counter of the number of complete failures of the healthchecks.",
            registry=r,
        )
        self.max_concurrent_rejects = c(
            "coredns_forward_max_concurrent_rejects_total",
            "Counter of the number of queries rejected because the concurrent queries were "
            "at maximum.",
            registry=r,
        )


_shared_metrics: weakref.WeakKeyDictionary[CollectorRegistry, _Metrics] = (
    weakref.WeakKeyDictionary()
)


def _metrics_for(registry: CollectorRegistry | None) -> _Metrics:
    if registry is None:
        return _Metrics(None)  # private: counted, never exported
    found = _shared_metrics.get(registry)
    if found is None:
        found = _shared_metrics[registry] = _Metrics(registry)
    return found


# -- one upstream ------------------------------------------------------------------


@dataclass(slots=True)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    used: float


class _Waiter:
    """A coroutine's exchange on a pooled socket (health probes, and tries that had to
    open a socket first): the future its reply settles."""

    __slots__ = ("future", "qkey")

    def __init__(self, qkey: bytes, future: asyncio.Future[bytes]) -> None:
        self.qkey = qkey
        self.future = future

    def got(self, data: bytes) -> None:
        if not self.future.done():
            self.future.set_result(data)

    def lost(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class _UdpSocket(asyncio.DatagramProtocol):
    """One connected UDP socket to an upstream, shared by every query in flight on it.

    Each query goes out under an ID no other pending query on this socket holds; a
    datagram is handed to the query whose ID it carries only if it also asks that
    query's question (CoreDNS's request.Match), anything else is dropped and the query
    keeps waiting, so a spoofed reply cannot win the race. The kernel already drops
    datagrams from any address but the upstream's, because the socket is connected.

    A pending query is a :class:`_Flight` (forwarded by callbacks, the usual case) or a
    :class:`_Waiter` (a coroutine awaiting a future): both take ``got`` and ``lost``.
    """

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, _Waiter | _Flight] = {}
        self.used = time.monotonic()
        self.closed = False
        self.loop = asyncio.get_running_loop()  # the loop its replies and timeouts run on

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) < 12:
            return
        waiter = self.pending.get((data[0] << 8) | data[1])
        if waiter is None:
            return  # late (its query timed out) or unsolicited
        if _asks(data, waiter.qkey):
            waiter.got(data)

    def error_received(self, exc: Exception) -> None:
        """ICMP unreachable on a connected socket: the upstream, not one query, failed."""
        self._fail_all(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail_all(exc or ConnectionResetError("pooled udp socket closed"))

    def _fail_all(self, exc: Exception) -> None:
        # A failed flight tries the next upstream at once, which may add to pending.
        for waiter in list(self.pending.values()):
            waiter.lost(exc)

    def full(self) -> bool:
        return self.closed or len(self.pending) >= MAX_PENDING

    def idle_since(self, before: float) -> bool:
        return not self.pending and self.used < before

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, msg: bytes, qkey: bytes, deadline: float | None = None) -> bytes:
        """Send ``msg`` under a fresh ID; the matching reply, still carrying that ID.

        TimeoutError at ``deadline`` (loop time), when given: one timer, cheaper than a
        timeout context around the await.
        """
        ident = self._fresh_id()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self.pending[ident] = _Waiter(qkey, future)
        self.used = time.monotonic()
        timer = None if deadline is None else loop.call_at(deadline, _time_out, future)
        try:
            assert self.transport is not None
            self.transport.sendto(ident.to_bytes(2, "big") + msg[2:])
            return await future
        finally:
            if timer is not None:
                timer.cancel()
            del self.pending[ident]

    def launch(self, flight: _Flight) -> None:
        """Send ``flight``'s query under a fresh ID; its ``got`` or ``lost`` follows (or
        the forwarder's expiry times it out). UpstreamError when no ID is free, OSError
        when the send fails: then nothing is pending."""
        ident = self._fresh_id()
        assert self.transport is not None
        self.pending[ident] = flight
        flight.sock = self
        flight.ident = ident
        self.used = time.monotonic()
        try:
            self.transport.sendto(ident.to_bytes(2, "big") + flight.query[2:])
        except BaseException:
            del self.pending[ident]
            raise

    def _fresh_id(self) -> int:
        """A random ID no pending query holds (CoreDNS's dns.Id: unpredictable, 16 bits)."""
        for _ in range(_ID_DRAWS):
            ident = _random_id()
            if ident not in self.pending:
                return ident
        raise UpstreamError("no free query ID on the pooled socket")


def _time_out(future: asyncio.Future[bytes]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class Proxy:
    """One upstream: its sockets, its fail count, its health probe, its metric children."""

    def __init__(
        self,
        upstream: Upstream,
        forwarder: Forwarder,
        metrics: _Metrics,
        proxy_name: str,
    ) -> None:
        self.upstream = upstream
        self.addr = goparse.join_host_port(upstream.host, upstream.port)
        self.family = socket.AF_INET6 if ":" in upstream.host else socket.AF_INET
        self.fails = 0
        self._forwarder = forwarder
        self._metrics = metrics
        self._proxy_name = proxy_name
        self._idle: list[_Conn] = []
        self._udp_socks: list[_UdpSocket | None] = [None] * UDP_SOCKETS
        self._udp_turn = 0
        self._udp_opening = asyncio.Lock()
        self._probe: asyncio.Task[None] | None = None
        self._requests = metrics.tallies.requests_of(self.addr)
        self._hc_failures = (
            metrics.hc_failures.labels(self.addr),
            metrics.proxy_hc_failures.labels(proxy_name, self.addr),
        )
        self._by_rcode: dict[int, Buckets] = {}  # the reply durations, by rcode
        self.tls: ssl.SSLContext | None = None
        self.server_name: str | None = None
        self.doh: doh.DohClient | None = None  # https:// upstreams (DNS over HTTPS)

    def __repr__(self) -> str:
        return f"Proxy({self.addr}, fails={self.fails})"

    def down(self, max_fails: int) -> bool:
        """More fails than ``max_fails`` (CoreDNS's Down); ``max_fails 0`` is never down."""
        return max_fails != 0 and self.fails > max_fails

    # -- exchanges --

    async def exchange(self, msg: bytes, qkey: bytes, use_tcp: bool, deadline: float) -> bytes:
        """Send the query ``msg`` under a fresh random ID; the matching reply, with that ID.

        ``msg`` is the client's query bytes as they are: only its ID is rewritten.
        """
        self._requests.n += 1
        if self.doh is not None:
            return await self.doh.exchange(msg, qkey, deadline)
        if self.tls is not None or use_tcp:
            for _ in range(MAX_IDLE_TCP + 1):
                try:
                    return await self._tcp(msg, qkey, deadline)
                except CachedConnClosed:
                    continue
            raise UpstreamError("every pooled connection was closed by the upstream")
        return await self._udp(msg, qkey, deadline)

    def ready_udp(self) -> _UdpSocket | None:
        """The next pooled socket in turn if it is open and has room (the usual case),
        taking its turn; None when a socket must be opened or looked for first."""
        i = (self._udp_turn + 1) % UDP_SOCKETS
        sock = self._udp_socks[i]
        if sock is not None and not sock.full():
            self._udp_turn = i
            return sock
        return None

    async def _udp(self, msg: bytes, qkey: bytes, deadline: float) -> bytes:
        try:
            sock = self.ready_udp()
            if sock is not None:
                return await sock.exchange(msg, qkey, deadline)
            async with asyncio.timeout_at(deadline):
                sock = await self._udp_socket()
                return await sock.exchange(msg, qkey)
        except TimeoutError:
            raise UpstreamTimeout(f"read udp {self.addr}: i/o timeout") from None

    async def _udp_socket(self) -> _UdpSocket:
        """The next pooled socket in turn that has room, opened on first use."""
        for _ in range(UDP_SOCKETS):
            i = self._udp_turn = (self._udp_turn + 1) % UDP_SOCKETS
            sock = self._udp_socks[i]
            if sock is None or sock.closed:
                sock = await self._open_udp(i)
            if not sock.full():
                return sock
        raise UpstreamError(f"udp {self.addr}: {UDP_SOCKETS * MAX_PENDING} queries in flight")

    async def _open_udp(self, slot: int) -> _UdpSocket:
        """Open the socket of ``slot`` unless a query that waited longer already did."""
        async with self._udp_opening:
            sock = self._udp_socks[slot]
            if sock is None or sock.closed:
                loop = asyncio.get_running_loop()
                _, sock = await loop.create_datagram_endpoint(
                    _UdpSocket,
                    remote_addr=(self.upstream.host, self.upstream.port),
                    family=self.family,
                )
                self._udp_socks[slot] = sock
            return sock

    def _proto(self) -> str:
        return "tcp-tls" if self.tls is not None else "tcp"

    def _take_idle(self) -> _Conn | None:
        now = time.monotonic()
        expire = self._forwarder.config.expire
        while self._idle:
            conn = self._idle.pop(0)  # oldest first, as CoreDNS (source-port diversity)
            if now - conn.used > expire or conn.writer.is_closing():
                conn.writer.close()
                continue
            return conn
        return None

    async def _tcp(self, msg: bytes, qkey: bytes, deadline: float) -> bytes:
        proto = self._proto()
        conn = self._take_idle()
        cached = conn is not None
        m = self._metrics
        if conn is None:
            m.conn_misses.labels(self.addr, proto).inc()
            m.proxy_conn_misses.labels(self._proxy_name, self.addr, proto).inc()
        else:
            m.conn_hits.labels(self.addr, proto).inc()
            m.proxy_conn_hits.labels(self._proxy_name, self.addr, proto).inc()
        ident = _random_id().to_bytes(2, "big")
        msg = ident + msg[2:]
        try:
            async with asyncio.timeout_at(deadline):
                if conn is None:
                    reader, writer = await asyncio.open_connection(
                        self.upstream.host,
                        self.upstream.port,
                        ssl=self.tls,
                        server_hostname=self.server_name if self.tls else None,
                    )
                    conn = _Conn(reader, writer, time.monotonic())
                conn.writer.write(_LEN.pack(len(msg)) + msg)
                await conn.writer.drain()
                while True:  # drop out-of-order replies; bounded by the timeout
                    (size,) = _LEN.unpack(await conn.reader.readexactly(2))
                    data = await conn.reader.readexactly(size)
                    if _valid_reply(data, ident, qkey):
                        break
        except TimeoutError:
            if conn is not None:
                conn.writer.close()
            raise UpstreamTimeout(f"read tcp {self.addr}: i/o timeout") from None
        except (asyncio.IncompleteReadError, ConnectionError) as err:
            if conn is not None:
                conn.writer.close()
            if cached:
                raise CachedConnClosed(str(err)) from None
            raise UpstreamError(f"tcp {self.addr}: {err!r}") from None
        except BaseException:
            if conn is not None:
                conn.writer.close()
            raise
        conn.used = time.monotonic()
        if len(self._idle) < MAX_IDLE_TCP:
            self._idle.append(conn)
        else:
            conn.writer.close()
        return data

    def observe(self, rcode: int, seconds: float) -> None:
        """A reply: its rcode and round trip (responses and both duration histograms)."""
        hist = self._by_rcode.get(rcode)
        if hist is None:
            tallies = self._metrics.tallies
            name = rcode_name(rcode)
            hist = self._by_rcode[rcode] = tallies.replies_of(self._proxy_name, self.addr, name)
        hist.observe(seconds)

    def close_idle(self, only_expired: bool = False) -> None:
        """Close pooled connections and sockets: all of them, or those idle beyond ``expire``."""
        now = time.monotonic()
        keep = []
        for conn in self._idle:
            if only_expired and now - conn.used <= self._forwarder.config.expire:
                keep.append(conn)
            else:
                conn.writer.close()
        self._idle = keep
        before = now - self._forwarder.config.expire
        for i, sock in enumerate(self._udp_socks):
            if sock is not None and (not only_expired or sock.idle_since(before)):
                sock.close()
                self._udp_socks[i] = None

    # -- health --

    def kick_health_check(self) -> None:
        """Start probing unless a probe already runs: at most one in flight (up.Probe)."""
        if self._probe is None or self._probe.done():
            self._probe = self._forwarder.spawn(self._probe_loop())

    async def _probe_loop(self) -> None:
        interval = max(self._forwarder.config.health_check, MIN_HEALTH_INTERVAL)
        while True:
            if await self.check():
                return
            await asyncio.sleep(interval)

    async def check(self) -> bool:
        """One ``. IN NS`` probe; any reply with our ID counts as healthy."""
        config = self._forwarder.config
        ident = random.getrandbits(16)
        flags = 0x0100 if config.health_check_recursion else 0
        qname = _name_wire(config.health_check_domain)
        ping = struct.pack("!HHHHHH", ident, flags, 1, 0, 0, 0) + qname + b"\x00\x02\x00\x01"
        qkey = question_key(ping, len(ping))
        try:
            deadline = asyncio.get_running_loop().time() + HEALTH_TIMEOUT
            await self.exchange_raw(ping, qkey, config.force_tcp, deadline)
        except FAILURES:
            self.fails += 1
            for child in self._hc_failures:
                child.inc()
            return False
        self.fails = 0
        return True

    async def exchange_raw(self, msg: bytes, qkey: bytes, use_tcp: bool, deadline: float) -> bytes:
        """An exchange that does not count as a forwarded request (health probes)."""
        if self.doh is not None:
            return await self.doh.exchange(msg, qkey, deadline)
        if self.tls is not None or use_tcp:
            return await self._tcp(msg, qkey, deadline)
        return await self._udp(msg, qkey, deadline)


def _name_wire(name: str) -> bytes:
    labels = [label for label in name.rstrip(".").split(".") if label]
    return b"".join(bytes((len(raw := lab.encode()),)) + raw for lab in labels) + b"\x00"


def _tls_context(config: ForwardConfig) -> ssl.SSLContext:
    """``tls [CERT KEY] [CA]``: system CAs unless a CA file is given."""
    ctx = ssl.create_default_context()
    args = config.tls
    if len(args) in (1, 3):
        ctx.load_verify_locations(cafile=args[-1])
    if len(args) >= 2:
        ctx.load_cert_chain(args[0], args[1])
    return ctx


def _doh_client(proxy: Proxy, tls: ssl.SSLContext, config: ForwardConfig) -> doh.DohClient:
    """A DoH upstream whose connection reuse counts as CoreDNS's conn-cache metrics."""
    m, name, addr = proxy._metrics, proxy._proxy_name, proxy.addr
    hits = (m.conn_hits.labels(addr, "https"), m.proxy_conn_hits.labels(name, addr, "https"))
    misses = (m.conn_misses.labels(addr, "https"), m.proxy_conn_misses.labels(name, addr, "https"))

    def count(reused: bool) -> None:
        for child in hits if reused else misses:
            child.inc()

    return doh.DohClient(
        f"https://{proxy.addr}{proxy.upstream.path}",
        tls,
        config.tls_servername or None,
        config.doh_method,
        config.expire,
        count,
    )


# -- one stanza --------------------------------------------------------------------


class Forwarder:
    """One ``forward`` stanza: picks upstreams by policy, retries, health-checks them."""

    def __init__(
        self,
        config: ForwardConfig,
        registry: CollectorRegistry | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        proxy_name: str = "forward",
    ) -> None:
        self.config = config
        self.from_zone = config.from_zone.lower()
        self.except_zones = tuple(z.lower() for z in config.except_zones)
        # The same as lower-case wire names, for queries nobody turned into text.
        self._from_wire = frozenset((_name_wire(self.from_zone),))
        self._except_wires = frozenset(_name_wire(z) for z in self.except_zones)
        self.everything = self.from_zone == "." and not self.except_zones
        self.next_rcodes = frozenset(config.next_rcodes)
        self._timeout = timeout
        self._read_timeout = read_timeout
        self._metrics = _metrics_for(registry)
        self._tasks: set[asyncio.Task[None]] = set()
        self._trying: set[asyncio.Task[None]] = set()  # tries that await (see _run_try)
        self._expiry = _Expiry()
        self._stopped = False
        self._inflight = 0
        self._robin = 0
        self._sweeper: asyncio.Task[None] | None = None
        self.proxies = [Proxy(u, self, self._metrics, proxy_name) for u in config.to]
        tls = None
        for proxy in self.proxies:
            if proxy.upstream.transport == keys.TLS:
                tls = tls or _tls_context(config)
                proxy.tls = tls
                proxy.server_name = proxy.upstream.server_name or config.tls_servername or None
            elif proxy.upstream.transport == keys.HTTPS:  # DNS over HTTPS
                tls = tls or _tls_context(config)
                proxy.doh = _doh_client(proxy, tls, config)
        _warn_loopback(config)

    # -- lifecycle --

    async def start(self) -> None:
        """Start the sweeper that closes pooled TCP connections idle beyond ``expire``."""
        self._stopped = False
        if self._sweeper is None:
            self._sweeper = self.spawn(self._sweep())

    async def stop(self) -> None:
        """Stop health probes and the sweeper, close pooled connections."""
        self._stopped = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._sweeper = None
        for proxy in self.proxies:
            proxy.close_idle()
            if proxy.doh is not None:
                await proxy.doh.close()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        """Run a background coroutine kept in a tracked set, so stop() can end it."""
        if self._stopped:
            coro.close()
            return None
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _sweep(self) -> None:
        interval = max(self.config.expire, 1.0)
        while True:
            await asyncio.sleep(interval)
            for proxy in self.proxies:
                proxy.close_idle(only_expired=True)

    # -- queries --

    def matches(self, qname: str) -> bool:
        """FROM covers ``qname`` and no ``except`` zone does (FROM itself always matches)."""
        name = qname.lower()
        if not name.endswith("."):
            name += "."
        if not in_zone(name, self.from_zone):
            return False
        if name == self.from_zone:
            return True
        return not any(in_zone(name, zone) for zone in self.except_zones)

    def matches_wire(self, name: bytes) -> bool:
        """:meth:`matches` for a lower-cased wire name."""
        if self.everything:
            return True
        if names.wire_zone(name, self._from_wire) is None:
            return False
        if name in self._from_wire:
            return True
        return not self._except_wires or names.wire_zone(name, self._except_wires) is None

    def wants_next(self, reply: bytes) -> bool:
        """The reply's RCODE is one of ``next RCODE...``: the next stanza should try."""
        return bool(self.next_rcodes) and rcode_name(reply[3] & 0x0F) in self.next_rcodes

    def list(self) -> list[Proxy]:
        """The upstreams in the order this query tries them (the policy)."""
        proxies = self.proxies
        policy = self.config.policy
        if policy == "sequential" or len(proxies) == 1:
            return proxies
        if policy == "round_robin":
            self._robin = (self._robin + 1) & 0xFFFFFFFF
            i = self._robin % len(proxies)
            return [proxies[i], *proxies[:i], *proxies[i + 1 :]]
        return random.sample(proxies, len(proxies))

    async def forward(self, query: bytes, tcp: bool) -> bytes | None:
        """The upstream's reply with the client's ID, or an error reply built from the query.

        None only for something that must not be answered (no header, or a response).
        :meth:`send` awaited.
        """
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self.send(query, tcp, functools.partial(_settle, future))
        return await future

    def send(self, query: bytes, tcp: bool, done: Done) -> None:
        """Forward ``query``; ``done`` gets what :meth:`forward` would return, once,
        perhaps before this returns (REFUSED over ``max_concurrent``).

        No task and no coroutine while the upstream is plain UDP on a pooled socket
        that is open: the reply calls back from the socket's reader (:class:`_Flight`).
        A try that needs more (TCP, TLS, DoH, a socket to open) runs as a task.
        """
        if len(query) < 12 or query[2] & 0x80:
            done(None)
            return
        self._send_at(query, -1, b"", tcp, done)

    def _send_at(self, query: bytes, qend: int, name: bytes, tcp: bool, done: Done) -> None:
        """:meth:`send` for a query, with the offset past its question and its
        lower-cased name when known (else -1 and b"")."""
        limit = self.config.max_concurrent
        if limit and self._inflight >= limit:
            self._metrics.max_concurrent_rejects.inc()
            done(error_reply(query, REFUSED))
            return
        if qend > 0:
            qkey = name + query[qend - 4 : qend]  # question_key, from what the chain read
        else:
            try:
                qkey = question_key(query, question_end(query))
            except ValueError:
                done(error_reply(query, SERVFAIL))
                return
        self._inflight += 1
        deadline = time.monotonic() + self._timeout
        _Flight(self, query, qkey, tcp, done, self.list(), deadline).step()

    def _run_try(self, coro: Coroutine[Any, Any, None]) -> None:
        """A try that must await (TCP, TLS, DoH, opening a socket): a task held until it
        ends. Not one of :meth:`stop`'s: a query in flight ends by its own deadline."""
        task = asyncio.get_running_loop().create_task(coro)
        self._trying.add(task)
        task.add_done_callback(self._trying.discard)

    async def _try(
        self, proxy: Proxy, query: bytes, qkey: bytes, tcp: bool, deadline: float
    ) -> bytes:
        """One upstream, with the TCP retry of a truncated reply when UDP was our choice.

        Each exchange gets the read timeout, clipped to the query's overall ``deadline``.
        The round trip is timed with ``perf_counter``: the loop's clock ticks in whole
        milliseconds under uvloop, which read a LAN round trip as 0.
        """
        config = self.config
        loop = asyncio.get_running_loop()
        use_tcp = config.force_tcp or (tcp and not config.prefer_udp)
        started = time.perf_counter()
        reply = await proxy.exchange(
            query, qkey, use_tcp, min(loop.time() + self._read_timeout, deadline)
        )
        if reply[2] & _TC and not use_tcp and config.prefer_udp:
            now = loop.time()
            if now >= deadline:
                raise UpstreamTimeout(f"tcp retry to {proxy.addr}: no time left")
            reply = await proxy.exchange(query, qkey, True, min(now + self._read_timeout, deadline))
        proxy.observe(reply[3] & 0x0F, time.perf_counter() - started)
        return query[:2] + reply[2:]


Done = Callable[[bytes | None], None]
"""Who gets a forwarded query's reply (:meth:`Forwarder.send`)."""


def _settle(future: asyncio.Future[bytes | None], reply: bytes | None) -> None:
    if not future.done():  # the awaiting task may have been cancelled
        future.set_result(reply)


CLOCK_SLACK = 0.001
"""uvloop's timers count whole milliseconds: one may fire up to a tick early."""


class _Flight:
    """One query on its way through :meth:`Forwarder.send`: the policy loop of CoreDNS's
    forward (upstreams in policy order, down ones skipped, up to MAX_PASSES passes
    within the query's deadline), run by callbacks between tries.

    A try on plain UDP with an open pooled socket is sent at once (:meth:`_send`); its
    reply comes to :meth:`got` from the socket's reader, its timeout to
    :meth:`timed_out` from the forwarder's :class:`_Expiry`, a socket error to
    :meth:`lost`. Any other try is :meth:`Forwarder._try` in a task. Every path ends in
    exactly one :meth:`finish`.
    """

    __slots__ = (
        "deadline",
        "done",
        "expires",
        "fails",
        "forwarder",
        "i",
        "ident",
        "proxies",
        "proxy",
        "qkey",
        "query",
        "sock",
        "started",
        "tcp",
        "timer",
        "tries",
    )
    proxy: Proxy
    sock: _UdpSocket
    ident: int
    expires: float
    started: float

    def __init__(
        self,
        forwarder: Forwarder,
        query: bytes,
        qkey: bytes,
        tcp: bool,
        done: Done,
        proxies: list[Proxy],
        deadline: float,
    ) -> None:
        self.forwarder = forwarder
        self.query = query
        self.qkey = qkey
        self.tcp = tcp
        self.done = done
        self.proxies = proxies
        self.deadline = deadline
        self.i = self.fails = self.tries = 0
        self.timer: asyncio.TimerHandle | None = None
        # proxy, sock, ident, expires and started: set by each try before it is sent.

    def step(self) -> None:
        """The next try, or SERVFAIL when the passes or the time ran out."""
        forwarder = self.forwarder
        config = forwarder.config
        proxies = self.proxies
        n = len(proxies)
        while self.tries < MAX_PASSES * n:
            if time.monotonic() >= self.deadline:
                break
            if self.i >= n:
                self.i = self.fails = 0
            proxy = proxies[self.i]
            self.i += 1
            if proxy.down(config.max_fails):
                self.fails += 1
                if self.fails < n:
                    continue
                forwarder._metrics.hc_broken.inc()
                if config.failfast_all_unhealthy_upstreams:
                    break
                proxy = random.choice(forwarder.proxies)
            self.tries += 1
            self.proxy = proxy
            if not self._send(proxy):
                forwarder._run_try(self._try_later(proxy))
            return
        self.finish(error_reply(self.query, SERVFAIL))

    def _send(self, proxy: Proxy) -> bool:
        """Send the try on an open pooled UDP socket; False when it takes more than that."""
        forwarder = self.forwarder
        config = forwarder.config
        if (
            proxy.doh is not None
            or proxy.tls is not None
            or config.force_tcp
            or (self.tcp and not config.prefer_udp)
        ):
            return False
        sock = proxy.ready_udp()
        if sock is None:
            return False
        proxy._requests.n += 1
        expires = time.monotonic() + forwarder._read_timeout
        self.expires = expires if expires < self.deadline else self.deadline
        self.started = time.perf_counter()
        # Timed before it is sent: asyncio's transport reports a send error to
        # error_received at once, which fails this try (lost) inside launch.
        forwarder._expiry.add(self, sock.loop)
        try:
            sock.launch(self)
        except FAILURES:
            forwarder._expiry.remove(self)
            self.failed(proxy)
        return True

    def got(self, data: bytes) -> None:
        """The upstream's reply to the try in flight (ID and question matched)."""
        sock, proxy = self.sock, self.proxy
        del sock.pending[self.ident]
        self.forwarder._expiry.remove(self)
        if data[2] & _TC and self.forwarder.config.prefer_udp:
            # UDP was kdns's choice, not the client's: retry over TCP (Forwarder._try).
            self.forwarder._run_try(self._tcp_retry(proxy))
            return
        proxy.observe(data[3] & 0x0F, time.perf_counter() - self.started)
        self.finish(self.query[:2] + data[2:])

    def lost(self, exc: BaseException) -> None:
        """The socket of the try in flight failed (ICMP unreachable, closed)."""
        self.sock.pending.pop(self.ident, None)
        self.forwarder._expiry.remove(self)
        self.failed(self.proxy)

    def timed_out(self) -> None:
        """No matching reply within the read timeout (the expiry let go of it already)."""
        self.timer = None
        self.sock.pending.pop(self.ident, None)
        self.failed(self.proxy)

    def failed(self, proxy: Proxy) -> None:
        """A try failed: probe that upstream, and try the next one if this pass may."""
        forwarder = self.forwarder
        if forwarder.config.max_fails != 0 and not forwarder._stopped:
            proxy.kick_health_check()
        if self.fails < len(self.proxies):
            self.step()
        else:
            self.finish(error_reply(self.query, SERVFAIL))

    def finish(self, reply: bytes | None) -> None:
        self.forwarder._inflight -= 1
        self.done(reply)

    def loop_deadline(self, loop: asyncio.AbstractEventLoop) -> float:
        """The query's deadline on the loop's clock, for the tries that await."""
        return loop.time() + (self.deadline - time.monotonic())

    async def _try_later(self, proxy: Proxy) -> None:
        """A try that awaits: :meth:`Forwarder._try` (TCP, TLS, DoH, a socket to open)."""
        try:
            deadline = self.loop_deadline(asyncio.get_running_loop())
            reply = await self.forwarder._try(proxy, self.query, self.qkey, self.tcp, deadline)
        except FAILURES:
            self.failed(proxy)
            return
        except BaseException:  # cancelled at shutdown, or a bug: this query fails alone
            self.finish(error_reply(self.query, SERVFAIL))
            raise
        self.finish(reply)

    async def _tcp_retry(self, proxy: Proxy) -> None:
        """The rest of :meth:`Forwarder._try` after a truncated UDP reply (prefer_udp)."""
        forwarder = self.forwarder
        loop = asyncio.get_running_loop()
        try:
            now, deadline = loop.time(), self.loop_deadline(loop)
            if now >= deadline:
                raise UpstreamTimeout(f"tcp retry to {proxy.addr}: no time left")
            reply = await proxy.exchange(
                self.query, self.qkey, True, min(now + forwarder._read_timeout, deadline)
            )
        except FAILURES:
            self.failed(proxy)
            return
        except BaseException:
            self.finish(error_reply(self.query, SERVFAIL))
            raise
        proxy.observe(reply[3] & 0x0F, time.perf_counter() - self.started)
        self.finish(self.query[:2] + reply[2:])


class _Expiry:
    """The read timeouts of a forwarder's UDP tries in flight: one loop timer for them
    all, where a timer per try cost 3 µs to arm and cancel under uvloop.

    Tries are kept in the order they were sent. A try expires the read timeout after it
    was sent, so that is also the order in which they expire, and the timer only ever
    waits for the first. A try clipped by its query's overall deadline, which may expire
    before tries sent earlier, gets a timer of its own. Times are ``time.monotonic()``:
    ``asyncio.get_running_loop()`` costs a getpid system call on Python 3.11, and the
    loop comes with the socket the try went out on.
    """

    __slots__ = ("flights", "last", "loop", "timer")

    def __init__(self) -> None:
        self.flights: dict[_Flight, None] = {}
        self.last = 0.0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.timer: asyncio.TimerHandle | None = None

    def add(self, flight: _Flight, loop: asyncio.AbstractEventLoop) -> None:
        expires = flight.expires
        if expires < self.last:
            flight.timer = loop.call_later(expires - time.monotonic(), flight.timed_out)
            return
        self.last = expires
        self.flights[flight] = None
        if self.timer is None or self.loop is not loop:  # none armed, or on a closed loop
            self.loop = loop
            self.timer = loop.call_later(expires - time.monotonic(), self._fire)

    def remove(self, flight: _Flight) -> None:
        timer = flight.timer
        if timer is None:
            self.flights.pop(flight, None)
        else:
            flight.timer = None
            timer.cancel()

    def _fire(self) -> None:
        self.timer = None
        now = time.monotonic() + CLOCK_SLACK
        expired: list[_Flight] = []
        for flight in self.flights:
            if flight.expires > now:
                assert self.loop is not None
                self.timer = self.loop.call_later(flight.expires - now, self._fire)
                break
            expired.append(flight)
        for flight in expired:
            del self.flights[flight]
        for flight in expired:  # each may send its next try, and come back here
            flight.timed_out()


def _warn_loopback(config: ForwardConfig) -> None:
    """Say at load time what CoreDNS's ``loop`` plugin would later say with a crash loop."""
    files: dict[str, list[str]] = {}
    for upstream in config.to:
        if not upstream.resolv_conf:
            continue
        try:
            loopback = ipaddress.ip_address(upstream.host).is_loopback
        except ValueError:
            continue
        if loopback:
            files.setdefault(upstream.resolv_conf, []).append(upstream.host)
    for path, hosts in files.items():
        log.warning(
            "plugin/forward: %s lists loopback nameserver(s) %s: forwarding there sends "
            "queries back to this host (systemd-resolved's stub is 127.0.0.53), a loop that "
            "crash-loops CoreDNS; point the kubelet at --resolv-conf=/run/systemd/resolve/"
            "resolv.conf or forward to real upstreams",
            path,
            ", ".join(hosts),
        )


class Chain:
    """The ``forward`` stanzas of one server block, in Corefile order (CoreDNS >= 1.9.4).

    The first stanza whose FROM matches answers; a later one sees the query only when the
    earlier one's reply has an RCODE listed in its ``next``. With no later stanza that
    matches, that reply stands.
    """

    def __init__(self, forwarders: Sequence[Forwarder]) -> None:
        self.forwarders = tuple(forwarders)

    def matches(self, qname: str) -> bool:
        return any(f.matches(qname) for f in self.forwarders)

    def matches_wire(self, name: bytes) -> bool:
        """:meth:`matches` for a lower-cased wire name."""
        return any(f.matches_wire(name) for f in self.forwarders)

    async def forward(self, query: bytes, tcp: bool, qname: str | None = None) -> bytes | None:
        """Like :meth:`Forwarder.forward`; without ``qname``, stanzas match the query's
        question name as it is on the wire (no text made).

        REFUSED when no stanza matches (CoreDNS: no plugin handled the name).
        """
        name = b""
        if qname is None:
            try:
                name = query[12 : question_end(query) - 4].lower()
            except ValueError:
                return error_reply(query, SERVFAIL)
        reply: bytes | None = None
        for f in self.forwarders:
            if not (f.matches(qname) if qname is not None else f.matches_wire(name)):
                continue
            reply = await f.forward(query, tcp)
            if reply is None or not f.wants_next(reply):
                return reply
        return reply if reply is not None else error_reply(query, REFUSED)

    def send(self, query: bytes, tcp: bool, done: Done) -> None:
        """:meth:`forward` (stanzas matched on the wire name) by callback: ``done`` gets
        its reply once, perhaps before this returns (:meth:`Forwarder.send`)."""
        if len(query) < 12 or query[2] & 0x80:
            done(None)  # what every stanza's forward says to it
            return
        try:
            qend = question_end(query)
        except ValueError:
            done(error_reply(query, SERVFAIL))
            return
        self._send_from(0, query, qend, query[12 : qend - 4].lower(), tcp, done, None)

    def _send_from(
        self,
        index: int,
        query: bytes,
        qend: int,
        name: bytes,
        tcp: bool,
        done: Done,
        reply: bytes | None,
    ) -> None:
        forwarders = self.forwarders
        for j in range(index, len(forwarders)):
            f = forwarders[j]
            if not f.matches_wire(name):
                continue
            if f.next_rcodes and j + 1 < len(forwarders):
                after = functools.partial(self._after, j, f, query, qend, name, tcp, done)
                f._send_at(query, qend, name, tcp, after)
            else:
                f._send_at(query, qend, name, tcp, done)
            return
        done(reply if reply is not None else error_reply(query, REFUSED))

    def _after(
        self,
        j: int,
        f: Forwarder,
        query: bytes,
        qend: int,
        name: bytes,
        tcp: bool,
        done: Done,
        reply: bytes | None,
    ) -> None:
        """A stanza with ``next`` answered: its reply stands, or the next stanza tries."""
        if reply is None or not f.wants_next(reply):
            done(reply)
        else:
            self._send_from(j + 1, query, qend, name, tcp, done, reply)

    async def start(self) -> None:
        for f in self.forwarders:
            await f.start()

    async def stop(self) -> None:
        for f in self.forwarders:
            await f.stop()
