"""kdns's ``envinject`` directive: the service-variables webhook's listener, TLS pair and path.

The Corefile loader keeps the directive's tokens (:func:`kdns.corefile.setup.raw`);
:func:`config` reads them with :func:`kdns.envinject.config.parse_envinject` when the
plan is built, so a CoreDNS-only tool still loads the file.
"""

from __future__ import annotations

from kdns.corefile import config as cfg
from kdns.corefile.setup import ParseFunc, raw, raw_config
from kdns.envinject.config import EnvInjectConfig, parse_envinject

parse: ParseFunc = raw("envinject")


def config(block: cfg.Block) -> EnvInjectConfig | None:
    """The block's ``envinject`` settings, or None; CorefileError when they are wrong."""
    return raw_config(block, "envinject", parse_envinject)
