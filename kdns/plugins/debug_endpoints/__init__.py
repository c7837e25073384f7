"""kdns's ``debug_endpoints`` directive: the loopback cluster inventory ``kdns explain`` reads.

Imports kdns.corefile, dns, cluster and query only; never kdns.server, kdns.cli or another plugin
folder.
"""
