"""The ``autopath`` plugin: search paths completed on the server (setup: syntax; autopath:
the walk; build: the block's instance and CoreDNS's startup check; metrics).

Imports kdns.corefile, dns, cluster and query only; never kdns.server, kdns.cli or another
plugin folder (the planner hands it the kubernetes plugin's ``pods`` mode).
"""
