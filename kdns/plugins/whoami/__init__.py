"""The ``whoami`` plugin: the client's address and port, as in CoreDNS's default server block.

Imports kdns.corefile, dns, cluster and query only; never kdns.server, kdns.cli or another plugin
folder.
"""
