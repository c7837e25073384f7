"""The benchmarks still run: a tiny cluster, one second per load, every peer.

``make bench`` is run by hand, so nothing else would notice when a change to kdns or
the generator breaks it. This runs the real scripts as subprocesses, exactly as
``make bench`` does, and checks that they produce every figure they promise. It
asserts no speed: the targets are reported by the benchmark, and a loaded CI machine
would make a speed assertion flaky.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def _run(script: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _missing(*tools: str) -> bool:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return any(shutil.which(tool, path=path) is None for tool in tools) or (os.cpu_count() or 1) < 2


def _needs(*tools: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        _missing(*tools),
        reason=f"needs {', '.join(tools)} and two cores (make debs-bench installs the tools)",
    )


def _check_load(run: dict[str, Any]) -> None:
    assert run["completed"] > 0 and run["qps"] > 0, run
    assert run["us_per_query"] > 0 and run["cpu_pct"] > 0, run
    assert run["rss_mib"] > 0 and run["hwm_mib"] >= run["rss_mib"], run


def test_recompile_bench_reports_every_figure() -> None:
    result = _run("recompile_bench.py", "--services", "200", "--changes", "5")
    assert result["services"] == 200
    assert isinstance(result["compiled_names"], int) and result["compiled_names"] >= 200
    for key in ("service_change", "slice_change"):
        timing = result[key]
        assert isinstance(timing, dict) and timing["count"] == 5
        assert 0 < timing["median_ms"] <= timing["max_ms"]
    assert isinstance(result["rss_after_mib"], float) and result["rss_after_mib"] > 0
    assert isinstance(result["meets_target"], bool)


PEERS = ("dnsmasq", "dnsmasq-srv", "nsd")


@_needs("dnsperf", "dnsmasq", "nsd", "taskset")
def test_cluster_bench_runs_every_peer_on_both_mixes() -> None:
    report = _run(
        "dnsperf_bench.py",
        "--services", "100", "--seconds", "0.5", "--warmup", "0.2",
        "--recompile-services", "0",
    )  # fmt: skip
    runs = report["runs"]
    seen = {(run["server"], run["mix"]) for run in runs}
    servers = ("kdns", *PEERS)
    assert seen == {(s, m) for s in servers for m in ("normal", "miss-heavy")}
    for run in runs:
        _check_load(run)
        if run["server"] != "dnsmasq":  # which has no SRV names, so more NXDOMAIN
            # The mixes are what they claim: about 10 % and 70 % NXDOMAIN.
            share = run["rcodes"].get("NXDOMAIN", 0) / run["completed"]
            assert (0.03 < share < 0.2) if run["mix"] == "normal" else (0.6 < share < 0.8), run
    assert set(report["ratios"]) == {
        f"{mix} vs {s}" for mix in ("normal", "miss-heavy") for s in PEERS
    }
    # Every set-up answers the sampled queries as kdns does (dnsmasq without SRV records
    # is only compared on A and AAAA).
    assert report["mismatches"] == {}


@_needs("dnsperf", "dnsmasq", "unbound", "nsd", "taskset")
def test_traffic_bench_measures_external_names_and_churn() -> None:
    result = _run("traffic_bench.py", "--quick")
    seen = {(r["server"], r["mix"]) for r in result["loads"]}
    assert seen == {
        ("kdns", "compiled"), ("kdns", "hits"), ("kdns", "ndots"), ("dnsmasq", "hits"),
        ("dnsmasq", "ndots"),
        ("unbound", "hits"), ("unbound", "ndots"), ("kdns-nocache", "forwarded"),
        ("dnsmasq-nocache", "forwarded"), ("kdns-churn", "ndots quiet"),
        ("kdns-churn", "ndots+churn"),
    }  # fmt: skip
    for run in result["loads"]:
        _check_load(run)
        codes, done = run["rcodes"], run["completed"]
        if run["mix"].startswith("ndots"):
            # 3 cluster-zone misses, then the external name: 75 % NXDOMAIN.
            assert 0.7 < codes.get("NXDOMAIN", 0) / done < 0.8, run
        else:  # every external name exists upstream, every service in the cluster
            assert codes.get("NOERROR", 0) == done, run
    assert set(result["ratios"]) == {
        "kdns hits/compiled", "hits kdns/dnsmasq", "hits kdns/unbound", "ndots kdns/dnsmasq",
        "ndots kdns/unbound", "forwarded kdns/dnsmasq", "churn kdns/quiet",
    }  # fmt: skip
    (churn,) = result["churn"]
    assert churn["rate"] == 20 and churn["writes"] >= 10 and churn["errors"] == 0


@_needs("taskset")
def test_headless_bench_reports_startup_change_and_worst_query() -> None:
    result = _run("headless_bench.py", "--quick")
    (row,) = result["sizes"]
    assert "stopped" not in row, row
    for key in ("first_answer_s", "first_headless_answer_s", "settled_s", "change_visible_s"):
        assert isinstance(row[key], float) and 0 < row[key] < 30, row
    assert row["first_answer_s"] <= row["first_headless_answer_s"] <= row["settled_s"], row
    assert row["probes_during_change"] > 0 and row["worst_unrelated_ms"] > 0, row
    assert row["probes_lost"] == 0, row


@_needs("dnsperf", "taskset")
def test_breakdown_bench_splits_a_query() -> None:
    result = _run("breakdown_bench.py", "--quick", "--top", "5")
    us = result["us_per_query"]
    assert us["kdns_total"] > 0 and us["floor_total"] > 0
    assert abs(us["kdns_user"] + us["kdns_kernel"] - us["kdns_total"]) < 0.1
    assert len(result["profile"]["top"]) == 5
    if shutil.which("strace"):
        assert result["syscalls"]["total_per_query"] > 0


def test_bench_rejects_an_unknown_part() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "bench.py"), "--only", "external,bogus"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "bogus" in done.stderr


@_needs("taskset")
def test_bench_runs_one_part_and_summarises_it() -> None:
    result = _run("bench.py", "--quick", "--only", "headless")
    assert set(result) >= {"machine", "headless", "elapsed_s"}
    assert "cluster" not in result and "traffic" not in result


def test_memory_scale_runs_every_phase_against_the_real_process() -> None:
    """Issue 15's benchmark, tiny: kdns as a process against the emulator, with pods
    verified (the Corefile path), through a forced relist and an API outage."""
    report = _run("memory_scale.py", "--quick", "--pods", "1500")
    assert report["case"] == "pods verified" and report["cluster"]["pods"] == 1500
    phases = report["phases"]
    assert phases["ready"]["seconds"] > 0 and phases["ready"]["rss_mib"] > 0
    for name in ("settled", "relist", "outage"):
        phase = phases[name]
        assert phase["hwm_mib"] >= phase["rss_mib"] > 0, phase
        assert phase["answers"]["checked"] > 0
        assert phase["answers"]["correct"] == phase["answers"]["checked"], phase["answers"]
    for name in ("relist", "outage"):
        assert set(phases[name]["list_pages"]) >= {"services", "endpointslices", "pods"}
    throughput = phases["throughput"]
    assert throughput["first_pass"]["completed"] > 0 and throughput["warm"]["qps"] > 0
    formula = report["coredns_formula"]
    assert formula["autopath_mb"] == (1500 + 300) / 250 + 56
    assert [t["pass"] for t in report["targets"]][-1] is True  # every name answered
    assert all(isinstance(t["pass"], bool) for t in report["targets"])
