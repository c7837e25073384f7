"""The ``cache`` plugin: forwarded answers kept for their TTL (setup: syntax; respcache: the
cache).

Imports kdns.corefile, dns, cluster and query only; never kdns.server, kdns.cli or another plugin
folder.
"""
