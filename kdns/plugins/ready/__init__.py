"""The ``ready`` plugin: /ready on its own port, 200 once every cluster source synced (setup).

Imports kdns.corefile, dns, cluster and query only; never kdns.server, cli or another plugin.
"""
