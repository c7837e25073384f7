"""DoT and DoH listeners: ``tls://.:853`` and ``https://.:443`` server blocks.

Both hand query bytes to :meth:`kdns.query.handler.Handler.answer`, as the UDP/TCP
listener does, so answers, metrics (proto ``tcp``, server ``tls://:853`` /
``https://:443``, as CoreDNS labels them) and the plugin chain are the same; only the
framing differs.

* DoT (RFC 7858) is kdns's DNS-over-TCP protocol (the length-framed connections of
  :class:`kdns.server.transport.DNSServer`, with their limits) behind a TLS handshake;
  no UDP.
* DoH (RFC 8484) answers ``GET /dns-query?dns=`` and ``POST /dns-query`` with an
  ``application/dns-message`` body, over HTTP/2 (negotiated by ALPN, what ``dig
  +https`` speaks; the ``h2`` state machine) or HTTP/1.1 (aiohttp's low-level server).
  Anything else is 404 (another path) or 400, as CoreDNS answers, counted in
  ``coredns_https_responses_total{server,status}``.

The certificate follows its files (:class:`kdns.plugins.tls.context.ServerTLS`). Without
a ``tls`` directive the block listens unencrypted, as CoreDNS does (plain DNS over TCP,
plain HTTP), and kdns warns.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import socket
import urllib.parse
from typing import TYPE_CHECKING, Any

import dnslib
from aiohttp import web_request, web_response, web_server

from kdns.corefile import keys
from kdns.dns import metrics, wire
from kdns.plugins.tls import context
from kdns.plugins.tls.metrics import HTTPS_RESPONSES
from kdns.plugins.tls.setup import TlsConfig
from kdns.query import handler as query_handler
from kdns.server import transport
from kdns.server.plan import ListenAddress

if TYPE_CHECKING:
    from kdns.dns.tasks import Tasks
    from kdns.query.handler import Handler
    from kdns.server.doh_h2 import H2Protocol

log = logging.getLogger(__name__)

DOH_PATH = "/dns-query"
MIME = "application/dns-message"
MAX_MESSAGE = 65535
HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 120.0
"""An HTTP/2 connection without a request for this long is closed (Go's IdleTimeout)."""
MIN_TTL = 5.0  # CoreDNS's dnsutil.MinimalDefaultTTL: errors and empty answers
MAX_TTL = 3600.0  # dnsutil.MaximumDefaulTTL


def open_listener(
    scheme: str,
    tls: TlsConfig | None,
    label: str,
    address: ListenAddress,
    handler: Handler,
    tasks: Tasks,
) -> Listener:
    """The listener of a server block's transport (``dns``, ``tls`` or ``https``)."""
    if scheme == keys.TLS:
        return DotServer(address, handler, tasks, tls, label)
    if scheme == keys.HTTPS:
        return DohServer(address, handler, tasks, tls, label)
    return transport.DNSServer(address, handler, tasks)


def reconfigure(srv: Listener, scheme: str, tls: TlsConfig | None) -> None:
    """Carry a reload's ``tls`` into a listener that stays; ValueError if it cannot."""
    kind = keys.DNS
    if isinstance(srv, DohServer):
        kind = keys.HTTPS
    elif isinstance(srv, DotServer):
        kind = keys.TLS
    if kind != scheme:
        raise ValueError(
            f"{srv.address}: changing a listener from {kind}:// to {scheme}:// needs a restart"
        )
    if not isinstance(srv, DotServer | DohServer):
        return  # dns:// to dns://: no tls to carry (the tls directive is warned about)
    if (srv.tls is None) != (tls is None):
        raise ValueError(f"{srv.address}: adding or removing tls needs a restart")
    if srv.tls is not None and tls is not None:
        srv.tls.reconfigure(tls)
        _watch_certificate(srv.label, srv.tls)


def _watch_certificate(label: str, tls: context.ServerTLS | None) -> None:
    """Export the served certificate's notAfter, as the webhooks' is (issue 17's
    ``kdns_tls_certificate_expiry_timestamp_seconds{listener, path}``)."""
    metrics.CERTIFICATES.forget(label)
    if tls is not None:
        metrics.CERTIFICATES.watch(label, tls.config.cert)


def _listen_socket(address: ListenAddress) -> socket.socket:
    family, host = transport._bind_target(address.host)
    return transport._socket(family, socket.SOCK_STREAM, host, address.port)


class DotServer(transport.DNSServer):
    """DNS over TLS: the TCP listener of :class:`kdns.server.transport.DNSServer` behind TLS."""

    def __init__(
        self,
        address: ListenAddress,
        handler: Handler,
        tasks: Tasks,
        tls: TlsConfig | None,
        label: str,
    ) -> None:
        super().__init__(address, handler, tasks)
        self.label = label
        self.tls = context.server_tls(tls, ("dot",))  # RFC 7858's ALPN token

    async def start(self) -> None:
        sock = _listen_socket(self.address)
        loop = asyncio.get_running_loop()
        ctx = self.tls.context if self.tls is not None else None
        self._tcp = await loop.create_server(
            lambda: transport._TCP(self),
            sock=sock,
            backlog=1024,
            ssl=ctx,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT if ctx is not None else None,
        )
        self.address = ListenAddress(self.address.host, sock.getsockname()[1])
        _watch_certificate(self.label, self.tls)
        log.info("serving DNS on %s (%s)", self.address, "tls" if ctx else "tcp, no tls")

    async def close(self, drain: float = 1.0) -> None:
        metrics.CERTIFICATES.forget(self.label)
        await super().close(drain)


class DohServer:
    """DNS over HTTPS on one address: HTTP/2 or HTTP/1.1, chosen by ALPN."""

    def __init__(
        self,
        address: ListenAddress,
        handler: Handler,
        tasks: Tasks,
        tls: TlsConfig | None,
        label: str,
    ) -> None:
        self.address = address
        self.handler = handler  # swapped by a reload, read per request
        self.tasks = tasks
        self.label = label
        self.tls = context.server_tls(tls, ("h2", "http/1.1"))
        self._server: asyncio.Server | None = None
        self._http1: web_server.Server | None = None
        self._h2: set[H2Protocol] = set()

    @property
    def port(self) -> int:
        return self.address.port

    async def start(self) -> None:
        sock = _listen_socket(self.address)
        loop = asyncio.get_running_loop()
        self._http1 = web_server.Server(self._on_http1, access_log=None)
        ctx = self.tls.context if self.tls is not None else None
        self._server = await loop.create_server(
            lambda: _Negotiate(self),
            sock=sock,
            backlog=1024,
            ssl=ctx,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT if ctx is not None else None,
        )
        self.address = ListenAddress(self.address.host, sock.getsockname()[1])
        _watch_certificate(self.label, self.tls)
        log.info("serving DNS on %s (%s)", self.address, "https" if ctx else "http, no tls")

    def close_listeners(self) -> None:
        if self._server is not None:
            self._server.close()

    async def close(self, drain: float = 1.0) -> None:
        metrics.CERTIFICATES.forget(self.label)
        self.close_listeners()
        for conn in list(self._h2):
            conn.close()
        if self._http1 is not None:
            await self._http1.shutdown(drain)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), drain)
            self._server = None

    # -- one request, whatever the HTTP version ------------------------------------

    async def exchange(
        self,
        method: str,
        target: str,
        content_type: str | None,
        body: bytes,
        peer: tuple[Any, ...],
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """(status, headers, body) for one DoH request (CoreDNS's ServeHTTP)."""
        url = urllib.parse.urlsplit(target)
        if url.path != DOH_PATH:
            return self._status(404, b"")
        if method == "GET":
            values = urllib.parse.parse_qs(url.query).get("dns")
            if not values:
                return self._status(400, b"no 'dns' query parameter found\n")
            text = values[0]
            try:
                query = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            except (binascii.Error, ValueError):
                return self._status(400, b"bad base64url in the 'dns' parameter\n")
        elif method == "POST":
            if content_type is not None and content_type.split(";")[0].strip() != MIME:
                return self._status(400, f"unsupported content type {content_type}\n".encode())
            query = body
        else:
            return self._status(400, f"unexpected method {method}\n".encode())
        if len(query) < 12 or len(query) > MAX_MESSAGE:
            return self._status(400, b"not a DNS message\n")
        response = await self._answer(query, peer)
        if response is None:
            return self._status(500, b"No response\n")
        HTTPS_RESPONSES.labels(self.label, "200").inc()
        headers = [
            ("content-type", MIME),
            ("cache-control", f"max-age={_max_age(response):f}"),
        ]
        return 200, headers, response

    def _status(self, status: int, text: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        HTTPS_RESPONSES.labels(self.label, str(status)).inc()
        return status, [("content-type", "text/plain; charset=utf-8")], text

    async def _answer(self, query: bytes, peer: tuple[Any, ...]) -> bytes | None:
        # A reload may swap the handler; this request keeps the one it started with.
        found = self.handler.answer(
            query, True, query_handler.family_of(peer), query_handler.remote_of(peer)
        )
        if found is None or isinstance(found, bytes):
            return found
        return await found

    # -- HTTP/1.1 on aiohttp ---------------------------------------------------------

    async def _on_http1(self, request: web_request.BaseRequest) -> web_response.StreamResponse:
        body = b""
        if request.method == "POST":
            body = await request.content.read(MAX_MESSAGE + 1)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        status, headers, payload = await self.exchange(
            request.method,
            request.path_qs,
            request.headers.get("Content-Type"),
            body,
            tuple(peer or ("", 0)),
        )
        return web_response.Response(status=status, body=payload, headers=dict(headers))


class _Negotiate(asyncio.Protocol):
    """Hands a new connection to HTTP/2 or to aiohttp's HTTP/1.1, as ALPN decided."""

    def __init__(self, owner: DohServer) -> None:
        self.owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sslobj = transport.get_extra_info("ssl_object")
        alpn = sslobj.selected_alpn_protocol() if sslobj is not None else None
        inner: asyncio.BaseProtocol
        if alpn == "h2":
            from kdns.server import doh_h2  # h2 only once a client negotiates HTTP/2

            inner = doh_h2.H2Protocol(self.owner, MAX_MESSAGE, IDLE_TIMEOUT)
        else:
            assert self.owner._http1 is not None
            inner = self.owner._http1()
        transport.set_protocol(inner)
        inner.connection_made(transport)


def _max_age(response: bytes) -> float:
    """Cache-Control max-age of a DoH answer: its smallest TTL (CoreDNS's MinimalTTL)."""
    try:
        msg = dnslib.DNSRecord.parse(response)
    except Exception:  # dnslib raises several types for what it cannot read
        return MIN_TTL
    if msg.header.rcode not in (wire.NOERROR, wire.NXDOMAIN):
        return MIN_TTL
    records = [*msg.rr, *msg.auth]
    if not records:
        return MIN_TTL
    extra = [rr.ttl for rr in msg.ar if rr.rtype != wire.OPT]
    return float(min([MAX_TTL, *(rr.ttl for rr in records), *extra]))


Listener = transport.DNSServer | DohServer
"""What a server block listens with: UDP+TCP (and DoT, a subclass), or DoH."""

__all__ = ["DohServer", "DotServer", "Listener", "open_listener", "reconfigure"]
