"""``kdns explain``: why a name answers what it answers, from the same resolver the server uses.

Imports kdns.dns, kdns.cluster and kdns.plugins; never kdns.server or kdns.cli.
"""
