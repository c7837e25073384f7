"""The ``rewrite`` plugin: request rewriting before the rest of the chain, reverted in the
reply (setup: CoreDNS's rule grammar; rewrite: the rules on a query and the response mapped
back to what was asked; build: the block's instance).

Imports kdns.corefile, dns and query, and the template plugin's Go regex reader (the one
reading of Go's regex syntax); never kdns.server, kdns.cli or another plugin's chain piece.
"""
