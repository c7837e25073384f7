"""The ``kdns`` command: CoreDNS's flags and kdns's own subcommands.

Imports anything it needs; nothing in kdns imports it.

Before anything imports aiohttp: frozenlist (aiohttp's signals and trace lists, never on
a query's path) is asked for its pure-Python FrozenList. Its compiled one is C++ and
brings the C++ runtime into the process, 2.4 MiB of RSS of the ~48 a kdns holds before
any cluster data (issue 15). An explicit ``FROZENLIST_NO_EXTENSIONS`` is left as set.
"""

import os

os.environ.setdefault("FROZENLIST_NO_EXTENSIONS", "1")

from kdns.cli.main import main  # after the switch above

__all__ = ["main"]
