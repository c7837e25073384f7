"""The ``tls`` plugin: the certificate of ``tls://`` (DoT) and ``https://`` (DoH) server
blocks (setup: syntax; context: the listening SSL context that follows its files; metrics).

Imports kdns.corefile and dns only; never kdns.server, kdns.cli or another plugin folder (the
DoT and DoH listeners in kdns.server.encrypted use what is here).
"""
