"""The ``debug`` plugin: debug logging while a configuration has it (setup; build).

Imports kdns.corefile only; never kdns.server, cli or another plugin.
"""
