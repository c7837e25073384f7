"""The DoH listener's metric, under CoreDNS's name."""

from __future__ import annotations

import prometheus_client

from kdns.dns import metrics

HTTPS_RESPONSES = prometheus_client.Counter(
    "coredns_https_responses_total",
    "Counter of DoH responses per server and http status code.",
    ["server", "status"],
    registry=metrics.REGISTRY,
)
"""``coredns_https_responses_total{server,status}``: one per DoH request answered."""
