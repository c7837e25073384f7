"""How long a change takes to reach the compiled answers, at 10,000 services.

kdns compiles answers when the cache changes, so a watch event costs a recompile of
the names it touches; while that runs the event loop answers nothing. The issue's
bar is that a single-service change at 10,000 services is reflected in under 50 ms.
This builds the cluster in-process, through the same shrink functions the informer
uses, and times what the compiler task does: a full rebuild (start-up, a re-list),
and single changes (``store.put_service`` / ``store.put_slice`` then
``table.update()``), median and max over many changes. Its own RSS after the build
says what 10,000 services cost in memory.

Run alone: ``python benchmarks/recompile_bench.py [--services N] [--changes N] [--json]``;
``dnsperf_bench.py`` runs it in a fresh process so that its RSS is not skewed.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gen_cluster

from kdns.cluster import objects, resolver, shrink, store, table

TARGET_MS = 50.0


@dataclass(frozen=True, slots=True)
class Timing:
    median_ms: float
    max_ms: float
    count: int


@dataclass(frozen=True, slots=True)
class Result:
    services: int
    compiled_names: int
    load_s: float  # shrinking the objects and putting them in the store
    rebuild_s: float  # table.rebuild() from scratch
    service_change: Timing  # put_service(modified) + table.update()
    slice_change: Timing  # put_slice(endpoint turned not ready) + table.update()
    rss_before_mib: float
    rss_after_mib: float
    target_ms: float = TARGET_MS

    @property
    def meets_target(self) -> bool:
        return max(self.service_change.max_ms, self.slice_change.max_ms) < self.target_ms


def rss_mib(pid: int | str = "self") -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB, read from /proc/PID/status."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def _timed(changes: list[Callable[[], object]], tbl: table.Table) -> Timing:
    samples: list[float] = []
    for change in changes:
        started = time.perf_counter()
        change()
        tbl.update()
        samples.append((time.perf_counter() - started) * 1000)
    return Timing(statistics.median(samples), max(samples), len(samples))


def run(count: int = 10_000, changes: int = 50, seed: int = 3) -> Result:
    gc.collect()
    rss_before, _ = rss_mib()
    services = gen_cluster.build(count)
    started = time.perf_counter()
    st = store.Store()
    for ns in gen_cluster.namespaces(count):
        st.put_namespace(objects.Namespace(ns))
    for svc in services:
        st.put_service(shrink.service(gen_cluster.service_manifest(svc)))
        st.put_slice(shrink.endpoint_slice(gen_cluster.slice_manifest(svc)))
    st.mark_synced()
    load_s = time.perf_counter() - started
    tbl = table.Table(st, resolver.Resolver(st, resolver.Settings()))
    started = time.perf_counter()
    tbl.rebuild()
    rebuild_s = time.perf_counter() - started
    gc.collect()
    rss_after, _ = rss_mib()

    rng = random.Random(seed)
    picked = [rng.choice(services) for _ in range(changes)]
    service_changes: list[Callable[[], object]] = [
        lambda svc=svc, n=n: st.put_service(  # type: ignore[misc]
            shrink.service(gen_cluster.service_manifest(svc, generation=n + 1))
        )
        for n, svc in enumerate(picked)
    ]
    slice_changes: list[Callable[[], object]] = []
    for svc in picked:
        raw = gen_cluster.slice_manifest(svc)
        raw["endpoints"][0]["conditions"]["ready"] = False
        eps = shrink.endpoint_slice(raw)
        slice_changes.append(lambda eps=eps: st.put_slice(eps))  # type: ignore[misc]
    return Result(
        services=count,
        compiled_names=len(tbl.packed),
        load_s=load_s,
        rebuild_s=rebuild_s,
        service_change=_timed(service_changes, tbl),
        slice_change=_timed(slice_changes, tbl),
        rss_before_mib=rss_before,
        rss_after_mib=rss_after,
    )


def as_dict(result: Result) -> dict[str, Any]:
    out = asdict(result)
    out["meets_target"] = result.meets_target
    return out


def report(result: Result) -> str:
    svc, eps = result.service_change, result.slice_change
    verdict = "MET" if result.meets_target else "NOT MET"
    return "\n".join(
        (
            f"recompile at {result.services} services ({result.compiled_names} compiled names):",
            f"  load into store     {result.load_s * 1000:8.0f} ms",
            f"  full rebuild        {result.rebuild_s * 1000:8.0f} ms",
            f"  service change      median {svc.median_ms:6.2f} ms  max {svc.max_ms:6.2f} ms"
            f"  ({svc.count} changes)",
            f"  endpoint change     median {eps.median_ms:6.2f} ms  max {eps.max_ms:6.2f} ms"
            f"  ({eps.count} changes)",
            f"  target < {result.target_ms:.0f} ms per change: {verdict}",
            f"  RSS {result.rss_after_mib:.1f} MiB after build"
            f" (+{result.rss_after_mib - result.rss_before_mib:.1f} MiB over the bare process)",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="kdns recompile latency at scale")
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args()
    result = run(args.services, args.changes)
    if args.json:
        json.dump(as_dict(result), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(report(result))


if __name__ == "__main__":
    main()
