"""Give the C heap's free pages back to the kernel after a burst.

A burst of TLS connections allocates a few hundred KiB each (OpenSSL's state, the event
loop's 256 KiB read buffer) interleaved with longer-lived objects; once they are freed,
glibc's malloc only returns memory at the top of the heap, so most of the burst stays
in RSS for good (measured: 44 MiB at rest, 66 MiB after six bursts of 500 connections
even with the connection cap, 44 MiB again after ``malloc_trim(0)``, which also
releases whole free pages in the middle of every arena). Where the C library has no
``malloc_trim`` (musl, macOS) this does nothing.

:func:`tune` fixes glibc's mmap threshold at start. By default glibc raises it to the size
of each large block freed (up to 32 MiB), so after the first LIST page's buffers are
freed every later page, and every big dict table the store grows, comes from the heap
and leaves holes there that a trim cannot return; a fixed threshold keeps blocks of
128 KiB and up in their own mappings, returned whole when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return trim


M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024
"""glibc's own starting value, kept instead of letting it grow."""


@functools.cache
def _mallopt() -> Callable[[int, int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt: Callable[[int, int], int] = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return None
    return mallopt


def tune() -> bool:
    """Fix the mmap and trim thresholds (once, before the cluster is loaded); True if set."""
    mallopt = _mallopt() if _malloc_trim() is not None else None  # glibc only
    if mallopt is None:
        return False
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    done = bool(mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD)) and done
    log.debug("mallopt: mmap threshold %d %s", MMAP_THRESHOLD, "set" if done else "refused")
    return done


def trim() -> bool:
    """Return free heap pages to the kernel; True if the C library could."""
    function = _malloc_trim()
    if function is None:
        return False
    released = bool(function(0))
    log.debug("malloc_trim: %s", "released memory" if released else "nothing to release")
    return True
