"""The ``bind`` plugin: the addresses a server block listens on (setup only: the transports bind
them).

Imports kdns.corefile, dns, cluster and query only; never kdns.server, kdns.cli or another plugin
folder.
"""
