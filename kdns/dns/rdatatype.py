"""Record types by name, written once: miekg/dns's Type.String and CoreDNS's metric labels."""

from __future__ import annotations

import dnslib

# Types CoreDNS labels by name; others count as "other" (plugin/metrics/vars/report.go).
METRIC_TEXT = {
    1: "A",
    28: "AAAA",
    5: "CNAME",
    13: "HINFO",
    15: "MX",
    2: "NS",
    41: "OPT",
    12: "PTR",
    6: "SOA",
    33: "SRV",
    16: "TXT",
    64: "SVCB",
    65: "HTTPS",
    255: "ANY",
    252: "AXFR",
    251: "IXFR",
    48: "DNSKEY",
    43: "DS",
    46: "RRSIG",
    47: "NSEC",
    50: "NSEC3",
    257: "CAA",
}


def to_text(qtype: int) -> str:
    """miekg/dns Type.String(): the mnemonic, or ``TYPE<n>`` (the log plugin's ``{type}``)."""
    name = dnslib.QTYPE.forward.get(qtype)
    return name if isinstance(name, str) else f"TYPE{qtype}"


def metric_label(qtype: int) -> str:
    """The ``type`` label of CoreDNS's request metrics: a known mnemonic, else ``other``."""
    return METRIC_TEXT.get(qtype, "other")
