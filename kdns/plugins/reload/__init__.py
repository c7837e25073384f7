"""The ``reload`` plugin: the Corefile re-read on change (setup; the swap is
kdns.server.lifecycle's).

Imports kdns.corefile, dns, cluster and query only; never kdns.server, kdns.cli or another plugin
folder.
"""
