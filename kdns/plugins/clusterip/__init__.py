"""kdns's ``clusterip`` directive: the ClusterIP allocator (setup; kdns.ipam).

Imports kdns.corefile and kdns.ipam only; never kdns.server, kdns.cli or another plugin folder.
"""
