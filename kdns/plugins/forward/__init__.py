"""The ``forward`` plugin: queries proxied upstream over pooled sockets (setup; forward: proxy,
metrics; doh: DNS over HTTPS upstreams).

Imports kdns.corefile, dns, cluster and query only; never kdns.server, kdns.cli or another plugin
folder.
"""
