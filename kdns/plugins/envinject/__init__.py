"""kdns's ``envinject`` directive: the service-variables webhook (setup; kdns.envinject).

Imports kdns.corefile and kdns.envinject only; never kdns.server, kdns.cli or another plugin folder.
"""
