"""The ``errors`` plugin: SERVFAIL causes logged, rate-limited (setup; kdns.query.chain writes the
line).

Imports kdns.corefile, dns, cluster and query only; never kdns.server, kdns.cli or another plugin
folder.
"""
