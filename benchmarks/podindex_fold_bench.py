"""Pod index folds and the event loop (issue 15, ``pods verified``), in process.

A relist fills a pod index with ``--pods`` pods (one IPv4 address each, all packed),
then ``--changes`` pod changes are written under a running asyncio loop, as the pod
informer writes them: a pod deleted, a new one with a new address (a rollout), the loop
given a turn every 64 changes. Around the threshold (a quarter of the pods) a fold
starts. Printed:

* the longest synchronous ``put``/``delete`` call (perf_counter around each);
* the loop's lateness: a task sleeping 1 ms records how late it wakes, so a fold's
  thread holding the GIL shows here too;
* how long beginning a fold (its copies) and ending it (install + journal replay) took.

Wall-clock figures: on a shared machine run it a few times.
Run from the project root: ``.venv/bin/python benchmarks/podindex_fold_bench.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kdns.cluster import objects, podindex
from kdns.cluster.store import Store


def _ip(i: int) -> str:
    return f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"


def _timed(calls: dict[str, list[float]], name: str) -> None:
    """Time every call of ``PodIndex.<name>`` (if this version has it) into ``calls``."""
    method: Callable[..., Any] | None = getattr(podindex.PodIndex, name, None)
    if method is None:
        return

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            calls.setdefault(name, []).append(time.perf_counter() - start)

    setattr(podindex.PodIndex, name, wrapper)


async def _run(pods: int, changes: int) -> str:
    store = Store()
    relist = store.relist("pod_addresses")
    for i in range(pods):
        relist.put(objects.PodAddress(f"ns-{i % 100}", f"web-{i}", (_ip(i),)))
    relist.prepare()
    relist.finish()
    calls: dict[str, list[float]] = {}
    for name in ("compact", "begin_fold", "end_fold"):
        _timed(calls, name)
    late: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            late.append(time.perf_counter() - start - 0.001)

    steps: list[float] = []
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(probe())
        await asyncio.sleep(0.01)
        for j in range(changes):
            i = j // 2 if j % 2 == 0 else pods + j // 2
            pod = objects.PodAddress(f"ns-{i % 100}", f"web-{i}", (_ip(i),))
            start = time.perf_counter()
            if j % 2 == 0:
                store.delete_pod_address(pod.namespace, pod.name)
            else:
                store.put_pod_address(pod)
            steps.append(time.perf_counter() - start)
            if j % 64 == 0:
                await asyncio.sleep(0)
        index = store._pod_index
        while (folding := getattr(index, "folding", None)) is not None:
            await asyncio.wait([folding])
            await asyncio.sleep(0)  # the fold's install runs
        done.set()
    steps.sort()
    late.sort()
    folds = "; ".join(
        f"{name} x{len(times)} longest {max(times) * 1e3:.2f} ms" for name, times in calls.items()
    )
    return (
        f"pods {pods}, changes {changes}: longest put/delete {steps[-1] * 1e3:.2f} ms "
        f"(next {steps[-2] * 1e3:.2f}); loop lateness max {late[-1] * 1e3:.2f} ms, "
        f"p99 {late[int(len(late) * 0.99)] * 1e3:.2f} ms; {folds or 'no fold'}; "
        f"pods after {store.pod_count}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=150_000)
    parser.add_argument("--changes", type=int, default=40_000)
    args = parser.parse_args()
    print(asyncio.run(_run(args.pods, args.changes)))


if __name__ == "__main__":
    main()
