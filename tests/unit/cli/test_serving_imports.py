"""What the serving command loads, in a fresh interpreter (issue 15: pay only for what runs).

``kdns serve`` and ``kdns -conf`` import the lifecycle, the planner and the API client;
the ops endpoints run on aiohttp's low-level server, so ``aiohttp.web`` (and the webhook
modules that need it) load only with a webhook; and ``kdns.cli`` asks frozenlist for its
pure-Python FrozenList before aiohttp imports it, so the C++ runtime its compiled one
needs (2.4 MiB of RSS) never maps in. An explicit ``FROZENLIST_NO_EXTENSIONS`` is kept.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, sys
import kdns.cli
from kdns.server import lifecycle, planner
from kdns.cluster.kube import client, config, informer
import frozenlist
with open("/proc/self/maps") as maps:
    cxx = "libstdc++" in maps.read()
print(json.dumps({
    "modules": sorted(sys.modules),
    "pure_frozenlist": frozenlist.FrozenList is frozenlist.PyFrozenList,
    "cxx": cxx,
}))
"""


def _probe(**env: str) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if k != "FROZENLIST_NO_EXTENSIONS"}
    reply = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found: dict[str, object] = json.loads(reply.stdout)
    return found


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc")
def test_serving_loads_no_web_framework_and_no_cxx_runtime() -> None:
    found = _probe()
    modules = set(found["modules"])  # type: ignore[call-overload]
    assert {"kdns.server.lifecycle", "kdns.server.ops", "aiohttp.web_server"} <= modules
    loaded = sorted(
        m
        for m in ("aiohttp.web", "aiohttp.web_app", "kdns.admission", "kdns.server.http")
        if m in modules
    )
    assert loaded == []
    assert found["pure_frozenlist"] is True
    assert found["cxx"] is False


def test_an_explicit_frozenlist_setting_is_kept() -> None:
    found = _probe(FROZENLIST_NO_EXTENSIONS="")  # empty: the compiled FrozenList
    assert found["pure_frozenlist"] is False
