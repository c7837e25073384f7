"""``runtime_metrics``: the interpreter's collector while a configuration asks for it.

CoreDNS 1.12+ exports Go's runtime metrics only with this option; kdns registers
Python's garbage-collector metrics (``python_gc_objects_collected_total``,
``python_gc_collections_total``...) instead. The process metrics coredns-mixin reads
(``process_resident_memory_bytes``, ``process_cpu_seconds_total``) are always there.
"""

from __future__ import annotations

import asyncio

from kdns.dns import metrics


async def runtime_metrics() -> None:
    """A generation's task: the collector is registered while it runs."""
    metrics.RUNTIME.acquire()
    try:
        await asyncio.Event().wait()  # lives as long as its generation
    finally:
        metrics.RUNTIME.release()
