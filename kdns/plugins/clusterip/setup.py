"""kdns's ``clusterip`` directive: the ClusterIP allocator's CIDRs, reserved addresses, path.

The Corefile loader keeps the directive's tokens (:func:`kdns.corefile.setup.raw`);
:func:`config` reads them with :func:`kdns.ipam.config.parse_clusterip` when the plan
is built.
"""

from __future__ import annotations

from kdns.corefile import config as cfg
from kdns.corefile.setup import ParseFunc, raw, raw_config
from kdns.ipam.config import ClusterIPConfig, parse_clusterip

parse: ParseFunc = raw("clusterip")


def config(block: cfg.Block) -> ClusterIPConfig | None:
    """The block's ``clusterip`` settings, or None; CorefileError when they are wrong."""
    return raw_config(block, "clusterip", parse_clusterip)
