"""The ``kdns`` command: CoreDNS's flags and kdns's own subcommands.

Imports anything it needs; nothing in kdns imports it.
"""

from kdns.cli.main import main

__all__ = ["main"]
