"""autopath's metric, under CoreDNS's name."""

from __future__ import annotations

import prometheus_client

from kdns.dns import metrics

SUCCESS = prometheus_client.Counter(
    "coredns_autopath_success",
    "Counter of requests that did autopath.",
    ["server"],
    registry=metrics.REGISTRY,
)
"""``coredns_autopath_success_total{server}``: queries answered with a completed name."""
