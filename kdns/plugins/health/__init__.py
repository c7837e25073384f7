"""The ``health`` plugin: /health on its own port, 200 until shutdown's lameduck ends (setup).

Imports kdns.corefile, dns, cluster and query only; never kdns.server, cli or another plugin.
"""
