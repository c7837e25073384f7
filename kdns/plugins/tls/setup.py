"""``tls CERT KEY [CA] { client_auth ...; keylog FILE }``: the certificate of DoT and DoH.

CoreDNS's *tls* plugin only configures; the ``tls://`` and ``https://`` listeners use it
(:mod:`kdns.server.encrypted`, through :mod:`kdns.plugins.tls.context`). In a ``dns://``
block nothing uses it, which CoreDNS ignores silently and kdns warns about. Files are
checked here, at load and on every reload, and a missing one is warned about (``kdns
validate`` shows it); the listener then fails to start, as CoreDNS's setup fails.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from kdns.corefile import keys
from kdns.corefile.dispenser import Dispenser
from kdns.corefile.setup import SetupContext, stanzas, where

# Go's tls.ClientAuthType names, as the plugin spells them. OpenSSL (Python's ssl) only
# requests a client certificate in order to verify it, so the two modes that accept an
# unverified certificate cannot be had and are refused rather than quietly tightened.
CLIENT_AUTH = ("nocert", "request", "require", "verify_if_given", "require_and_verify")
UNVERIFIED_CLIENT_AUTH = ("request", "require")
NO_LISTENER_WHY = "only tls:// and https:// server blocks use it (as in CoreDNS)"


@dataclass(frozen=True, slots=True)
class TlsConfig:
    NAME: ClassVar[str] = "tls"

    cert: str
    key: str
    ca: str = ""
    client_auth: str = "nocert"
    keylog: str = ""

    def files(self) -> tuple[str, ...]:
        """The files whose change rotates the listener's certificate."""
        return tuple(f for f in (self.cert, self.key, self.ca) if f)


def parse(d: Dispenser, ctx: SetupContext) -> list[TlsConfig]:
    """Every stanza is set up in turn and the last one stands, as CoreDNS's loop does."""
    found: TlsConfig | None = None
    first_at = ""
    for _ in stanzas(d):
        at = where(d)
        first_at = first_at or at
        args = d.remaining_args()
        if len(args) < 2 or len(args) > 3:
            raise d.arg_err()
        client_auth = "nocert"
        keylog = ""
        while d.next_block():
            option = d.val()
            if option == "client_auth":
                values = d.remaining_args()
                if len(values) != 1:
                    raise d.arg_err()
                if values[0] not in CLIENT_AUTH:
                    raise d.err(f"unknown authentication type '{values[0]}'")
                if values[0] in UNVERIFIED_CLIENT_AUTH:
                    raise d.err(
                        f"client_auth {values[0]} is not supported by kdns: OpenSSL cannot "
                        "accept a client certificate without verifying it; use "
                        "verify_if_given or require_and_verify with a CA"
                    )
                client_auth = values[0]
            elif option == "keylog":
                values = d.remaining_args()
                if len(values) != 1:
                    raise d.arg_err()
                keylog = values[0]
            else:
                raise d.err(f"unknown option '{option}'")
        for path in args:
            if not os.path.isfile(path):
                ctx.warn("tls", f"{at} - open {path}: no such file or directory (not served)")
        if found is not None:
            ctx.not_acted_on("tls", first_at, "tls", f"a later tls line ({at}) replaces it")
        found = TlsConfig(args[0], args[1], args[2] if len(args) == 3 else "", client_auth, keylog)
    if found is None:
        return []
    if not any(key.startswith((keys.TLS + "://", keys.HTTPS + "://")) for key in ctx.keys):
        ctx.not_acted_on("tls", first_at, "tls", NO_LISTENER_WHY)
    return [found]
