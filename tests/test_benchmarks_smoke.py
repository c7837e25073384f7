"""The benchmarks still run: a tiny cluster, one second per load, both servers.

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

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def _run(script: str, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


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


@pytest.mark.skipif(
    any(
        shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None
        for tool in ("dnsperf", "dnsmasq", "taskset")
    ),
    reason="dnsperf, dnsmasq or taskset is not installed (make debs-test installs them)",
)
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the benchmark pins to two cores")
def test_dnsperf_bench_runs_both_servers_on_both_mixes() -> None:
    report = _run(
        "dnsperf_bench.py",
        "--services", "100", "--seconds", "1", "--warmup", "1",
        "--recompile-services", "0",
    )  # fmt: skip
    runs = report["runs"]
    assert isinstance(runs, list)
    seen = {(run["server"], run["mix"]) for run in runs}
    servers = ("kdns", "dnsmasq", "dnsmasq-srv")
    assert seen == {(s, m) for s in servers for m in ("normal", "miss-heavy")}
    for run in runs:
        assert run["completed"] > 0 and run["qps"] > 0, run
        assert run["rss_mib"] > 0 and run["hwm_mib"] >= run["rss_mib"], run
        if run["server"] != "dnsmasq":  # which has no SRV names, so more NXDOMAIN
            # The mixes are what they claim: about 10 % and 70 % NXDOMAIN.
            share = run["rcodes"].get("NXDOMAIN", 0) / run["completed"]
            assert (0.03 < share < 0.2) if run["mix"] == "normal" else (0.6 < share < 0.8), run
    ratios = report["ratios"]
    assert isinstance(ratios, dict) and set(ratios) == {
        f"{mix} vs {s}" for mix in ("normal", "miss-heavy") for s in servers[1:]
    }
    # Every set-up answers the sampled queries as kdns does (dnsmasq without SRV records
    # is only compared on A and AAAA).
    assert report["mismatches"] == {}
