"""The ``hosts`` plugin: answers from a hosts file, re-read when it changes (setup; hosts: the
table).

Imports kdns.corefile, dns, cluster and query only; never kdns.server, kdns.cli or another plugin
folder.
"""
