"""The allocator as the manifests source sees it: Services in, Services with IPs out.

The manifests folder is never rewritten; each load hands every Service to
:func:`kdns.ipam.local.assign`, which keeps addresses stable through its store, and
the Services without a ``clusterIP`` come back with the one the API server would have
given them. Problems are logged once per distinct message, not on every reload.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Sequence

from kdns.cluster import objects
from kdns.ipam import config, local, status, store

log = logging.getLogger(__name__)


class LocalAllocator:
    """Callable for :class:`kdns.cluster.manifests.ManifestsSource`'s ``assign_ips`` hook."""

    def __init__(self, cfg: config.ClusterIPConfig, seed: int | None = None) -> None:
        self.cfg = cfg
        self.memory = store.Store(cfg.store) if cfg.store else store.Store(":memory:")
        self.random = random.Random(seed)
        self.last: local.Result | None = None
        self._reported: set[str] = set()

    def __call__(self, services: Sequence[objects.Service]) -> Sequence[objects.Service]:
        result = local.assign(self.cfg, services, self.memory, self.random)
        self.last = result
        messages = [f"{p.reason}: {p.message}" for p in result.problems]
        messages += [f"{ns}/{name}: {err}" for (ns, name), err in result.errors.items()]
        for message in messages:
            if message not in self._reported:
                self._reported.add(message)
                log.warning("clusterip: %s", message)
        out = []
        for svc in services:
            ips = result.cluster_ips.get(svc.key, svc.cluster_ips)
            if svc.cluster_ips or not ips or svc.is_external_name:
                out.append(svc)
                continue
            families = result.families.get(svc.key, svc.ip_families)
            out.append(dataclasses.replace(svc, cluster_ips=ips, ip_families=families))
        return out

    def status_text(self) -> str:
        if self.last is None or self.last.pool is None:
            return "no allocation yet\n"
        return status.render_text(status.pool_status(self.last.pool))
