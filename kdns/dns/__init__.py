"""DNS protocol pieces every part shares: wire names, prebuilt answer sections, the request metrics.

Imports nothing from kdns but kdns.errors (and the version): no cluster, plugin or server code.
"""
