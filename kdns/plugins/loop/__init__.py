"""The ``loop`` plugin: a forwarding loop found at start by a probe query (setup; probe).

Imports kdns.corefile, dns, cluster and query only; never kdns.server, cli or another plugin.
"""
