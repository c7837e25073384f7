"""The Corefile directives, one folder each (setup: syntax and config type; the implementation
beside it), the registry in plugin.cfg order (registry), and the loader turning a Corefile into
typed configs.

Imports kdns.corefile, dns, cluster, query, envinject and ipam; never kdns.server, kdns.explain or
kdns.cli.
"""
