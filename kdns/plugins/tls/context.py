"""The listening SSLContext of a ``tls://`` or ``https://`` block, following its files.

A :class:`ServerTLS` re-reads CERT, KEY and CA at a handshake at most once a second
and, when they changed and load, moves that and every later handshake to a fresh
context; established connections keep theirs. A pair caught half-written keeps the last
good one serving. A reload that changes the ``tls`` line moves later handshakes to the
new files (:meth:`ServerTLS.reconfigure`).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Sequence
from pathlib import Path

from kdns.plugins.tls.setup import TlsConfig

log = logging.getLogger(__name__)

CHECK_EVERY = 1.0
"""Seconds between two looks at the certificate files (at a handshake, never idle)."""

_VERIFY = {
    "nocert": ssl.CERT_NONE,
    "verify_if_given": ssl.CERT_OPTIONAL,
    "require_and_verify": ssl.CERT_REQUIRED,
}


class ServerTLS:
    """The listening SSLContext of one block, following its certificate files."""

    def __init__(self, config: TlsConfig, alpn: Sequence[str]) -> None:
        self.config = config
        self.alpn = tuple(alpn)
        self._seen = self._read()
        self.context = self._build()  # raises at start: no certificate, no listener
        self.context.sni_callback = self._on_hello
        self._current = self.context
        self._checked = time.monotonic()
        self._failed: tuple[bytes, ...] | None = None
        self.reloads = 0

    def _read(self) -> tuple[bytes, ...]:
        return tuple(Path(name).read_bytes() for name in self.config.files())

    def _build(self) -> ssl.SSLContext:
        cfg = self.config
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # CoreDNS's hardened minimum
        ctx.load_cert_chain(cfg.cert, cfg.key)
        if cfg.ca:
            ctx.load_verify_locations(cafile=cfg.ca)
        elif cfg.client_auth != "nocert":
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)  # "system CAs", as CoreDNS
        ctx.verify_mode = _VERIFY[cfg.client_auth]
        if cfg.keylog:
            ctx.keylog_filename = cfg.keylog
        ctx.set_alpn_protocols(list(self.alpn))
        return ctx

    def reconfigure(self, config: TlsConfig) -> None:
        """A reload changed the ``tls`` line: later handshakes use the new files."""
        if config == self.config:
            return
        old = self.config
        self.config = config
        try:
            ctx = self._build()
            self._seen = self._read()
        except BaseException:
            self.config = old
            raise
        self._current = ctx

    def check(self, now: float | None = None) -> bool:
        """Load the files again if they changed; True when later handshakes get them."""
        now = time.monotonic() if now is None else now
        if now - self._checked < CHECK_EVERY:
            return False
        self._checked = now
        try:
            seen = self._read()
        except OSError as err:
            self._warn_once((), f"cannot read the certificate files: {err}")
            return False
        if seen == self._seen:
            return False
        try:
            ctx = self._build()
        except (OSError, ssl.SSLError) as err:
            self._warn_once(seen, f"keeping the previous certificate, the new one fails: {err}")
            return False
        self._seen, self._current, self._failed = seen, ctx, None
        self.reloads += 1
        log.info("plugin/tls: certificate %s reloaded", self.config.cert)
        return True

    def _warn_once(self, seen: tuple[bytes, ...], message: str) -> None:
        if self._failed != seen:
            self._failed = seen
            log.warning("plugin/tls: %s (%s)", message, ", ".join(self.config.files()))

    def _on_hello(
        self, conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, ctx: ssl.SSLContext
    ) -> None:
        # Called at every ClientHello, with or without SNI, before a certificate is chosen.
        self.check()
        if self._current is not ctx:
            conn.context = self._current


def server_tls(config: TlsConfig | None, alpn: Sequence[str]) -> ServerTLS | None:
    """The rotating context of a block's ``tls`` line; None without one (unencrypted)."""
    return None if config is None else ServerTLS(config, alpn)
