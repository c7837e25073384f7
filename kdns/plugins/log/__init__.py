"""The ``log`` plugin: a line per query in CoreDNS's format (setup; querylog: the formatter).

Imports kdns.corefile, dns, cluster and query only; never kdns.server, kdns.cli or another plugin
folder.
"""
