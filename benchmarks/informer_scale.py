"""Informer scale benchmark: time to synced, RSS, and watch-to-answer propagation.

Seeds an API emulator (its own process, so its memory is not counted) with N Services
and N EndpointSlices carrying E endpoints in total, then runs kdns's informers, store,
resolver, compiled table and compiler in this process, as the server does:

* time from start to every informer synced, and to the compiled table being built;
* RSS (VmRSS, and the peak VmHWM) of this process after sync, minus nothing: the
  interpreter and imports are included, as a container limit would count them;
* propagation: at ~R updates/s, each a Service's clusterIP changed through the
  emulator's side channel, the delay from just before the update is sent to the new
  address being present in the compiled answer (checked when each compile finishes).

Run from the project root: ``.venv/bin/python benchmarks/informer_scale.py``
(``--services 1000 --endpoints 5000`` for a quick run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kdns.cluster import compiler, resolver, store, table  # noqa: E402
from kdns.cluster.kube import client, config, informer, metrics  # noqa: E402
from kdns.dns import names, wire  # noqa: E402


def rss_mib() -> tuple[float, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def service(ns: str, name: str, ip: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                     "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                     "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP",
                                "targetPort": 8080}]}}  # fmt: skip


def endpoint_slice(ns: str, name: str, ips: list[str]) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-x7k2p", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": name,
                                    "endpointslice.kubernetes.io/managed-by":
                                        "endpointslice-controller.k8s.io"},
                         "annotations": {"endpoints.kubernetes.io/last-change-trigger-time":
                                         "2025-01-01T00:00:00Z"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True, "serving": True,
                                                             "terminating": False},
                           "nodeName": f"node-{i % 50}",
                           "targetRef": {"kind": "Pod", "name": f"{name}-pod-{i}",
                                         "namespace": ns}} for i, ip in enumerate(ips)],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}  # fmt: skip


def ip(base: int, n: int) -> str:
    return f"{base}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def start_emulator() -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.apiemu", "--bookmark-interval", "5"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    urls = json.loads(proc.stdout.readline())
    return proc, urls["url"], urls["control"]


async def _post(http: aiohttp.ClientSession, url: str, body: Any) -> None:
    async with http.post(url, json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"seeding failed: {resp.status} {(await resp.text())[:200]}")


async def seed(
    control: str, services: int, endpoints: int, namespaces: int
) -> list[tuple[str, str]]:
    """Batches stay under aiohttp's 1 MiB request body limit on the emulator side."""
    keys = []
    per_slice = max(1, endpoints // services)
    async with aiohttp.ClientSession() as http:
        nss = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{i}"}}
               for i in range(namespaces)]  # fmt: skip
        await _post(http, f"{control}/_emu/objects", nss)
        batch: list[dict[str, Any]] = []
        for n in range(services):
            ns, name = f"ns-{n % namespaces}", f"svc-{n}"
            keys.append((ns, name))
            batch.append(service(ns, name, ip(10, n + 1)))
            batch.append(endpoint_slice(ns, name, [ip(11, n * per_slice + k + 1)
                                                   for k in range(per_slice)]))  # fmt: skip
            if len(batch) >= 400:
                await _post(http, f"{control}/_emu/objects", batch)
                batch = []
        if batch:
            await _post(http, f"{control}/_emu/objects", batch)
    return keys


async def main(args: argparse.Namespace) -> dict[str, Any]:
    proc, url, control = start_emulator()
    try:
        keys = await seed(control, args.services, args.endpoints, args.namespaces)
        baseline = rss_mib()[0]
        st = store.Store()
        answers = table.Table(st, resolver.Resolver(st, resolver.Settings()))
        registry = metrics.Metrics()
        api = client.Client(config.load(config.ConnectionOptions(endpoint=url)))
        informers = informer.Informers(st, api, informer.Options(), stats=registry)
        pending: dict[bytes, tuple[bytes, float]] = {}
        delays: list[float] = []
        drained = asyncio.Event()

        def compiled(seconds: float) -> None:
            informers.compiled(seconds)
            now = time.perf_counter()
            for qname, (want, sent) in list(pending.items()):
                answer = answers.lookup(qname, wire.A)
                if answer is not None and want in answer.body:
                    delays.append(now - sent)
                    del pending[qname]
            if not pending:
                drained.set()

        comp = compiler.Compiler(st, answers, observe=compiled)
        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            run = group.create_task(informers.run())
            compile_task = group.create_task(comp.run())
            await informers.synced.wait()
            synced = time.perf_counter() - started
            rss_synced = rss_mib()[0]
            await asyncio.sleep(0)
            await comp.idle.wait()
            built = time.perf_counter() - started
            rss, peak = rss_mib()
            counts = (len(st.services), len(st.slices),
                      sum(len(e.endpoints) for e in st.slices.values()))  # fmt: skip
            # Churn: ~rate updates/s, each a new clusterIP for some Service.
            async with aiohttp.ClientSession() as http:
                interval = 1.0 / args.rate
                next_at = time.perf_counter()
                for n in range(int(args.rate * args.seconds)):
                    ns, name = keys[(n * 7919) % len(keys)]
                    new_ip = ip(12, n + 1)
                    qname = names.to_wire(f"{name}.{ns}.svc.cluster.local.")
                    pending[qname] = (socket.inet_aton(new_ip), time.perf_counter())
                    await _post(http, f"{control}/_emu/objects", service(ns, name, new_ip))
                    next_at += interval
                    await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                if pending:
                    drained.clear()
                    async with asyncio.timeout(10):
                        await drained.wait()
            run.cancel()
            compile_task.cancel()
    finally:
        proc.terminate()
        proc.wait(10)
    delays.sort()
    hist = registry.registry
    return {
        "services": counts[0],
        "endpoint_slices": counts[1],
        "endpoints": counts[2],
        "synced_seconds": round(synced, 2),
        "table_built_seconds": round(built, 2),
        "rss_mib_at_synced": round(rss_synced, 1),
        "rss_mib_after_table_built": round(rss, 1),
        "rss_mib_baseline_before_start": round(baseline, 1),
        "rss_mib_peak": round(peak, 1),
        "updates": len(delays),
        "propagation_ms_p50": round(1000 * statistics.median(delays), 2),
        "propagation_ms_p99": round(1000 * delays[int(0.99 * (len(delays) - 1))], 2),
        "propagation_ms_max": round(1000 * delays[-1], 2),
        "kdns_propagation_seconds_mean_ms": round(
            1000 * (hist.get_sample_value("kdns_propagation_seconds_sum") or 0)
            / max(1.0, hist.get_sample_value("kdns_propagation_seconds_count") or 1), 2),
    }  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=50_000)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0, help="updates per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="churn duration")
    parser.add_argument("--no-uvloop", action="store_true")
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.chdir(ROOT)
    if options.no_uvloop:
        result = asyncio.run(main(options))
    else:
        import uvloop

        result = uvloop.run(main(options))
    print(json.dumps(result, indent=2))
