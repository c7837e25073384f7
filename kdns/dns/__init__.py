"""DNS pieces every part shares: wire names, rcode/type names, prebuilt sections, metrics, tasks.

Imports nothing from kdns but kdns.errors (and the version): no cluster, plugin or server code.
"""
