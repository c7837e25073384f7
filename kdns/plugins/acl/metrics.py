"""CoreDNS's acl counters, same names, labels and help texts."""

from __future__ import annotations

from prometheus_client import Counter

from kdns.dns.metrics import REGISTRY

BLOCKED = Counter(
    "coredns_acl_blocked_requests",
    "Counter of DNS requests being blocked.",
    ["server", "zone", "view"],
    registry=REGISTRY,
)
FILTERED = Counter(
    "coredns_acl_filtered_requests",
    "Counter of DNS requests being filtered.",
    ["server", "zone", "view"],
    registry=REGISTRY,
)
ALLOWED = Counter(
    "coredns_acl_allowed_requests",
    "Counter of DNS requests being allowed.",
    ["server", "view"],
    registry=REGISTRY,
)
DROPPED = Counter(
    "coredns_acl_dropped_requests",
    "Counter of DNS requests being dropped.",
    ["server", "zone", "view"],
    registry=REGISTRY,
)
