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


def test_missing_corefile_is_reported_like_coredns(tmp_path: Path) -> None:
    result = kdns("-conf", str(tmp_path / "nope"))
    assert result.returncode == 1
    assert "no such file or directory" in result.stderr


def test_unknown_subcommand_is_a_usage_error() -> None:
    result = kdns("frobnicate")
    assert result.returncode == 2
    assert "usage:" in result.stderr
