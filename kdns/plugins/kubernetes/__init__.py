"""The ``kubernetes`` plugin's Corefile syntax; its names are answered by kdns.cluster (resolver,
table).

Imports kdns.corefile, dns, cluster and query only; never kdns.server, kdns.cli or another plugin
folder.
"""
