"""Process limits a DNS server needs lifted before it serves.

Container runtimes and systemd hand processes a soft RLIMIT_NOFILE of 1024 (or less)
under a far higher hard limit, expecting servers to raise it themselves. Go programs
such as CoreDNS get that for free (the Go runtime raises the soft limit to the hard one
at start since Go 1.19); Python does not, so a busy kdns would meet EMFILE where CoreDNS
never does.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)


def raise_nofile() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard one; returns the (soft, hard) in force.

    A refusal (a hard limit the kernel's ``fs.nr_open`` caps lower) is logged and kdns
    runs with what it has: fewer descriptors is a capacity limit, not a reason to exit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == hard:
        log.debug("open files limit: soft %s, hard %s (left as is)", soft, hard)
        return soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as exc:
        log.warning("cannot raise the open files limit from %d to %d: %s", soft, hard, exc)
        return soft, hard
    log.debug("open files limit: soft %d raised to the hard limit %d", soft, hard)
    return hard, hard
