"""What ``debug`` does in kdns: the ``kdns`` loggers log at DEBUG while it is configured.

In CoreDNS the directive turns on ``[DEBUG]`` lines (``log.Debug`` in the plugins) and
stops the ``errors``/server recovery of panics; kdns has no panics to leave unrecovered,
so the directive sets the level of the ``kdns`` logger tree to DEBUG for as long as a
running configuration has it (a reload that removes it restores the level). The
startup switch is ``kdns serve --debug`` or ``KDNS_LOG_LEVEL=debug``.
"""

from __future__ import annotations

import asyncio
import logging

_users = 0
_previous = logging.NOTSET


async def debug_logging() -> None:
    """A generation's task: DEBUG while it runs, the previous level once the last one ends."""
    global _users, _previous
    logger = logging.getLogger("kdns")
    if _users == 0:
        _previous = logger.level
        logger.setLevel(logging.DEBUG)
        logger.debug("plugin/debug: debug logging on")
    _users += 1
    try:
        await asyncio.Event().wait()  # lives as long as its generation
    finally:
        _users -= 1
        if _users == 0:
            logger.setLevel(_previous)
