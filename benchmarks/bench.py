"""Every benchmark of issue 14 in one command (``make bench``), or one of them.

Parts (``--only``, repeatable or comma-separated; all by default, in this order):

* ``cluster``   -- cluster names: kdns vs dnsmasq (2 set-ups) and nsd (:mod:`dnsperf_bench`),
  then the recompile latency at 10,000 services (:mod:`recompile_bench`);
* ``external``  -- external names through an nsd upstream: kdns (kubeadm Corefile) vs
  dnsmasq and unbound; cache hits, the ndots:5 mix, every query forwarded
  (:mod:`traffic_bench`);
* ``churn``     -- the ndots:5 mix quiet and under 20 EndpointSlice changes/s
  (:mod:`traffic_bench`);
* ``headless``  -- one headless service of 5,000 and 10,000 endpoints: first answer, one
  change, the worst unrelated query (:mod:`headless_bench`);
* ``breakdown`` -- where one compiled answer's microseconds go (:mod:`breakdown_bench`).

Each part prints its figures and its ratios to the peers measured in the same run; a
summary closes the output. ``--duration`` is each dnsperf run's length; ``--quick``
runs everything tiny (a few seconds a part, for the smoke test). The server under test
is pinned to core 1, dnsperf and the peers' helpers to core 0 (see :mod:`harness`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import breakdown_bench
import dnsperf_bench
import harness as h
import headless_bench
import traffic_bench

PARTS = ("cluster", "external", "churn", "headless", "breakdown")


def _num(value: Any, unit: str, fmt: str = ".2f") -> str:
    """A figure with its unit, or what the benchmark said instead ("> 120 s", "-")."""
    return f"{format(value, fmt)} {unit}" if isinstance(value, int | float) else str(value)


def summary(results: dict[str, Any]) -> str:
    """The issue's table: one row per traffic, kdns and its peers, in one run."""
    rows: list[tuple[str, str, str, str, str, str]] = []

    def qps(loads: list[dict[str, Any]], server: str, mix: str) -> dict[str, Any] | None:
        return next((r for r in loads if r["server"] == server and r["mix"] == mix), None)

    def cell(run: dict[str, Any] | None) -> str:
        if run is None:
            return "-"
        return f"{run['qps']:,.0f} ({run['us_per_query']:.1f} µs)"

    cluster = results.get("cluster")
    if cluster:
        for mix in ("normal", "miss-heavy"):
            k = qps(cluster["runs"], "kdns", mix)
            d, n = qps(cluster["runs"], "dnsmasq", mix), qps(cluster["runs"], "nsd", mix)
            ratios = cluster["ratios"]
            per_cpu = cluster["ratios_per_cpu_second"]
            text = ", ".join(
                f"{ratios[key]:.2f}x ({per_cpu[key]:.2f}x/CPU) {peer}"
                for peer in ("dnsmasq", "nsd")
                if (key := f"{mix} vs {peer}") in ratios
            )
            rows.append((f"cluster names, {mix}", cell(k), cell(d), "-", cell(n), text))
    traffic = results.get("traffic")
    if traffic:
        loads, ratios = traffic["loads"], traffic["ratios"]

        def rat(*keys: str) -> str:
            return ", ".join(
                f"{ratios[k]['qps']:.2f}x ({ratios[k]['per_cpu']:.2f}x/CPU) {k.split('/')[-1]}"
                for k in keys
                if k in ratios
            )

        if qps(loads, "kdns", "hits"):
            rows.append(("external, cache hits", cell(qps(loads, "kdns", "hits")),
                         cell(qps(loads, "dnsmasq", "hits")), cell(qps(loads, "unbound", "hits")),
                         "-", rat("hits kdns/dnsmasq", "hits kdns/unbound")))  # fmt: skip
            rows.append(("ndots:5 mix (3 misses + name)", cell(qps(loads, "kdns", "ndots")),
                         cell(qps(loads, "dnsmasq", "ndots")),
                         cell(qps(loads, "unbound", "ndots")), "-",
                         rat("ndots kdns/dnsmasq", "ndots kdns/unbound")))  # fmt: skip
            rows.append(("every query forwarded", cell(qps(loads, "kdns-nocache", "forwarded")),
                         cell(qps(loads, "dnsmasq-nocache", "forwarded")), "-", "-",
                         rat("forwarded kdns/dnsmasq")))  # fmt: skip
        quiet = qps(loads, "kdns-churn", "ndots quiet")
        if quiet:
            label = f"ndots:5 mix, {traffic['services']:,} services, quiet"
            rows.append((label, cell(quiet), "", "", "", ""))
            for c in traffic["churn"]:
                mix = "ndots+churn" if c is traffic["churn"][0] else f"ndots+churn{c['rate']:g}/s"
                rows.append((f"  the same, {c['rate']:g} EndpointSlices/s",
                             cell(qps(loads, "kdns-churn", mix)), "", "", "",
                             rat("churn kdns/quiet")))  # fmt: skip
    lines = [
        "",
        "SUMMARY: queries/s (server CPU µs per query); kdns's ratios of queries/s (and of "
        "queries per server CPU second, the steadier figure on a busy machine)",
    ]
    if rows:
        head = ("traffic", "kdns", "dnsmasq", "unbound", "nsd", "kdns ratio")
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(6)]
        for r in [head, *rows]:
            lines.append("  ".join(v.ljust(widths[i]) for i, v in enumerate(r)).rstrip())
    headless = results.get("headless")
    if headless:
        for row in headless["sizes"]:
            lines.append(
                f"headless {row['endpoints']:,} endpoints: first answer "
                f"{_num(row.get('first_answer_s', '-'), 's')}, settled "
                f"{_num(row.get('settled_s', '-'), 's')}, one change shows in "
                f"{_num(row.get('change_visible_s', '-'), 's')}, worst unrelated query "
                f"{_num(row.get('worst_unrelated_ms', '-'), 'ms', '.0f')}"
                + (f" ({row['stopped']})" if "stopped" in row else "")
            )
    brk = results.get("breakdown")
    if brk:
        us = brk["us_per_query"]
        sc = brk.get("syscalls", {})
        lines.append(
            f"compiled answer: {us['kdns_total']:.1f} µs/query of server CPU (kernel "
            f"{us['kdns_kernel']:.1f}); a bare uvloop UDP server {us['floor_total']:.1f} µs; "
            f"{sc.get('total_per_query', '?')} system calls per query"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every selected part; a part that cannot run is reported and the others still run."""
    results: dict[str, Any] = {"machine": h.machine(), "duration": args.duration, "errors": {}}
    dur = [f"--duration={args.duration:g}"]
    quick = ["--quick"] if args.quick else []
    started = time.monotonic()

    def part(name: str, body: Any) -> None:
        try:
            body()
        except h.BenchError as exc:
            results["errors"][name] = str(exc)
            print(f"{name}: could not run: {exc}\n", file=sys.stderr, flush=True)

    def cluster() -> None:
        argv = [f"--seconds={args.duration:g}", f"--warmup={min(args.duration, 3):g}"]
        if args.quick:
            argv = ["--services=100", "--seconds=0.5", "--warmup=0.2", "--recompile-services=0"]
        report = dnsperf_bench.run(dnsperf_bench.parse_args(argv))
        print(dnsperf_bench.render(report), "\n", flush=True)
        results["cluster"] = report.as_dict()

    def traffic() -> None:
        wanted = [p for p in ("external", "churn") if p in args.parts]
        argv = dur + quick + [f"--only={p}" for p in wanted]
        result = traffic_bench.run(traffic_bench.parse_args(argv))
        print(traffic_bench.render(result), "\n", flush=True)
        results["traffic"] = result.as_dict()
        results["errors"].update(result.errors)

    def headless() -> None:
        hl = headless_bench.run(headless_bench.parse_args(quick))
        print(headless_bench.render(hl), "\n", flush=True)
        results["headless"] = hl

    def breakdown() -> None:
        brk = breakdown_bench.run(breakdown_bench.parse_args(dur + quick))
        print(breakdown_bench.render(brk), "\n", flush=True)
        results["breakdown"] = brk

    if "cluster" in args.parts:
        part("cluster", cluster)
    if "external" in args.parts or "churn" in args.parts:
        part("external/churn", traffic)
    if "headless" in args.parts:
        part("headless", headless)
    if "breakdown" in args.parts:
        part("breakdown", breakdown)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", action="append", metavar="PART",
                        help=f"run only these parts: {', '.join(PARTS)}")  # fmt: skip
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds per dnsperf run (10)")  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="everything tiny, a few seconds a part (the smoke test)")  # fmt: skip
    parser.add_argument("--json", action="store_true",
                        help="JSON on stdout (the tables go to stderr)")  # fmt: skip
    args = parser.parse_args(argv)
    parts = [p.strip() for o in (args.only or []) for p in o.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    args.parts = parts or list(PARTS)
    if args.quick:
        args.duration = 0.5
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.json:
        sys.stdout = sys.stderr  # the parts' tables; the document goes to the real stdout
    try:
        results = run(args)
    finally:
        sys.stdout = sys.__stdout__
    if args.json:
        print(summary(results), file=sys.stderr)
        json.dump(results, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(summary(results))
    for name, error in results["errors"].items():
        sys.stderr.write(f"bench: {name} did not run: {error.splitlines()[0]}\n")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
