"""kdns's ``manifests`` directive: a folder of YAML as the cluster source (setup).

Imports kdns.corefile, dns, cluster and query only; never kdns.server, cli or another plugin.
"""
