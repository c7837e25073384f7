"""DNS over HTTPS to an upstream (``forward . https://IP[:PORT][/PATH]``), on aiohttp.

RFC 8484: the query goes out with ID 0 (so an HTTP cache may serve it), as the body of
a POST or base64url in ``?dns=`` of a GET (``doh_method``), ``application/dns-message``
both ways; only a 2xx carries an answer. The reply must ask the question we asked and
gets back the ID the forwarder chose. Connections are kept alive and reused for
``expire`` idle seconds (aiohttp's pool), counted as CoreDNS's conn-cache metrics with
proto ``https``. Every failure is raised as :class:`DohError`, which the forwarder treats
like any other transport's failure (next upstream, health check).

This module knows nothing of the forwarder (:mod:`kdns.plugins.forward.forward`): the
forwarder calls it.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Callable
from types import SimpleNamespace

import aiohttp

from kdns import errors

MIME = "application/dns-message"
MAX_MESSAGE = 65535
MAX_CONNECTIONS = 16
"""Connections per upstream at once, like the TCP pool's idle cap."""


class DohError(errors.KdnsError):
    """The DoH upstream gave no usable answer."""


class DohClient:
    """One DoH upstream: its URL, its TLS settings and a pool of kept-alive connections."""

    def __init__(
        self,
        url: str,
        tls: ssl.SSLContext,
        server_name: str | None,
        method: str,
        expire: float,
        on_connection: Callable[[bool], None] = lambda reused: None,
    ) -> None:
        self.url = url
        self._tls = tls
        self._server_name = server_name
        self._get = method == "GET"
        self._expire = expire
        self._on_connection = on_connection
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        trace = aiohttp.TraceConfig()

        async def created(
            session: aiohttp.ClientSession, ctx: SimpleNamespace, params: object
        ) -> None:
            self._on_connection(False)

        async def reused(
            session: aiohttp.ClientSession, ctx: SimpleNamespace, params: object
        ) -> None:
            self._on_connection(True)

        trace.on_connection_create_end.append(created)
        trace.on_connection_reuseconn.append(reused)
        connector = aiohttp.TCPConnector(
            ssl=self._tls,
            limit=MAX_CONNECTIONS,
            keepalive_timeout=self._expire if self._expire > 0 else None,
            force_close=self._expire <= 0,
        )
        return aiohttp.ClientSession(
            connector=connector,
            trace_configs=[trace],
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )

    async def exchange(self, msg: bytes, qkey: bytes, deadline: float) -> bytes:
        """The reply to ``msg``, carrying ``msg``'s ID; DohError when there is none."""
        if self._session is None or self._session.closed:
            self._session = self._open()
        wire = b"\x00\x00" + msg[2:]
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise DohError(f"{self.url}: no time left")
        timeout = aiohttp.ClientTimeout(total=remaining)
        headers = {"Accept": MIME}
        try:
            if self._get:
                encoded = base64.urlsafe_b64encode(wire).rstrip(b"=").decode("ascii")
                request = self._session.get(
                    self.url,
                    params={"dns": encoded},
                    headers=headers,
                    timeout=timeout,
                    server_hostname=self._server_name,
                )
            else:
                request = self._session.post(
                    self.url,
                    data=wire,
                    headers={**headers, "Content-Type": MIME},
                    timeout=timeout,
                    server_hostname=self._server_name,
                )
            async with request as resp:
                if not 200 <= resp.status < 300:
                    raise DohError(f"{self.url}: HTTP {resp.status}")
                body = await resp.content.read(MAX_MESSAGE + 1)
        except TimeoutError:
            raise DohError(f"{self.url}: i/o timeout") from None
        except (aiohttp.ClientError, ssl.SSLError) as err:
            raise DohError(f"{self.url}: {err}") from None
        if len(body) > MAX_MESSAGE or not _answers(body, qkey):
            raise DohError(f"{self.url}: the reply does not answer the query")
        return msg[:2] + body[2:]

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def _answers(data: bytes, qkey: bytes) -> bool:
    """A response with one question, the one asked (compared as CoreDNS's request.Match)."""
    if len(data) < 12 or not data[2] & 0x80 or data[4:6] != b"\x00\x01":
        return False
    end = 12 + len(qkey)
    return len(data) >= end and data[12 : end - 4].lower() + data[end - 4 : end] == qkey
