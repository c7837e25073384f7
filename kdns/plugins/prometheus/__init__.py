"""The ``prometheus`` plugin: /metrics with CoreDNS's names (setup; kdns.dns.metrics).

Imports kdns.corefile, dns, cluster and query only; never kdns.server, cli or another plugin.
"""
