"""The ``acl`` plugin: allow, block, filter or drop queries by type and client network, and
kdns's ``isolate`` (setup: the Corefile syntax; acl: the policy walk and namespace
visibility; build: the block's instance and its checks; metrics: CoreDNS's four counters).

Imports kdns.corefile, dns, cluster (the store isolate reads) and query; never kdns.server,
kdns.cli or another plugin folder (the planner hands it the kubernetes plugin's settings).
"""
