"""The command line's small verbs, run as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.process import ROOT

EXAMPLES = ROOT / "Corefile.compat" / "examples"


def kdns(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kdns", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def test_version_and_plugins() -> None:
    version = kdns("-version")
    assert version.returncode == 0 and version.stdout.startswith("kdns-")
    plugins = kdns("-plugins")
    assert plugins.returncode == 0
    for name in ("kubernetes", "forward", "cache", "health", "ready", "prometheus", "reload"):
        assert f"dns.{name}\n" in plugins.stdout


def test_validate_accepts_a_default_and_explains_a_legacy_corefile() -> None:
    ok = kdns("validate", str(EXAMPLES / "kubeadm.Corefile"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip().endswith(": OK")
    legacy = kdns("validate", "bad-legacy-proxy.Corefile", cwd=EXAMPLES)
    assert legacy.returncode == 1
    assert "Unknown directive 'proxy'" in legacy.stdout
    assert "hint:" in legacy.stdout and "forward" in legacy.stdout


def test_validate_refuses_what_the_server_refuses_at_start(tmp_path: Path) -> None:
    """A check one plugin makes of another runs when the server plans the Corefile, after
    it is read: ``kdns validate`` (migrate.sh's pre-flight) must fail where ``kdns -conf``
    exits, with the same message."""
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        ".:1053 {\n"
        "    kubernetes cluster.local {\n"
        f"        manifests {ROOT / 'examples' / 'cluster'}\n"
        "    }\n"
        "    autopath @kubernetes\n"
        "    forward . 127.0.0.1\n"
        "}\n"
    )
    checked = kdns("validate", str(corefile))
    started = kdns("-conf", str(corefile))
    message = "plugin/autopath: kubernetes plugin must have 'pods verified'"
    assert started.returncode == 1 and message in started.stderr, started.stderr
    assert checked.returncode == 1, checked.stdout
    assert message in checked.stdout and ": OK" not in checked.stdout


def test_missing_corefile_is_reported_like_coredns(tmp_path: Path) -> None:
    result = kdns("-conf", str(tmp_path / "nope"))
    assert result.returncode == 1
    assert "no such file or directory" in result.stderr


def test_unknown_subcommand_is_a_usage_error() -> None:
    result = kdns("frobnicate")
    assert result.returncode == 2
    assert "usage:" in result.stderr
