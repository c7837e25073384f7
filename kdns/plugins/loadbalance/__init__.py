"""The ``loadbalance`` plugin: A/AAAA answers rotated (setup; kdns.cluster.table rotates).

Imports kdns.corefile, dns, cluster and query only; never kdns.server, cli or another plugin.
"""
