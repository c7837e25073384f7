"""A server TLS context whose certificate follows the files on disk.

cert-manager (or the kubelet's secret volume swap) replaces the key pair while kdns
runs; a webhook that kept the old certificate would fail every call the day it
expires, and with ``failurePolicy: Ignore`` it would fail silently. So the files are
checked at every handshake (two small reads, far cheaper than the handshake itself,
and webhook connections are few and long-lived) and a changed pair is loaded into a
fresh context that the handshake switches to. A pair that does not load (the cert
written, the key not yet) keeps the last good one serving and is retried next time.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

log = logging.getLogger(__name__)


class ReloadingContext:
    """Owns the listening SSLContext; give :attr:`context` to the server."""

    def __init__(self, cert_file: str | Path, key_file: str | Path) -> None:
        self._cert_file = Path(cert_file)
        self._key_file = Path(key_file)
        self._seen = self._read()
        self.context = self._load()  # raises at start-up: no pair, no webhook
        self.context.sni_callback = self._on_hello
        self._current = self.context
        self._failed: tuple[bytes, bytes] | None = None
        self.reloads = 0

    @property
    def current(self) -> ssl.SSLContext:
        """The context new handshakes use after the next file check."""
        return self._current

    def _read(self) -> tuple[bytes, bytes]:
        return self._cert_file.read_bytes(), self._key_file.read_bytes()

    def _load(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self._cert_file, self._key_file)
        return ctx

    def check(self) -> bool:
        """Reload when the files differ from the last loaded pair; True if reloaded."""
        try:
            pair = self._read()
        except OSError as err:
            self._warn_once((b"", b""), f"cannot read TLS pair: {err}")
            return False
        if pair == self._seen:
            return False
        try:
            ctx = self._load()
        except (OSError, ssl.SSLError) as err:
            self._warn_once(pair, f"keeping previous TLS pair, new one does not load: {err}")
            return False
        # The files may have changed again between the read and the load; then the
        # next check sees a difference and loads once more, so this converges.
        self._seen, self._current, self._failed = pair, ctx, None
        self.reloads += 1
        return True

    def _warn_once(self, pair: tuple[bytes, bytes], message: str) -> None:
        if self._failed != pair:
            self._failed = pair
            log.warning("%s (%s, %s)", message, self._cert_file, self._key_file)

    def _on_hello(
        self, conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, ctx: ssl.SSLContext
    ) -> None:
        # Called for every ClientHello, server name or not: the one hook that runs
        # before the certificate is chosen.
        self.check()
        conn.context = self._current
