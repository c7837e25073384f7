"""``reload`` with a Corefile that is empty, missing, a directory or broken.

An operator emptying the ConfigMap by mistake, or a volume remount that briefly shows no
file, must not take DNS down: under ``reload`` each of those is a failed reload like a
syntax error. The running configuration keeps serving, the failure is logged, and
``coredns_reload_failed_total`` counts it. Before this was fixed an empty file closed
every listener and fell back to ``.:53 { whoami log }``, and no failure was counted.

SIGUSR1 asks kdns to check the Corefile at once (as it does CoreDNS), so the test does
not sit out the 2 s interval after each edit.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.rcode
import pytest

from tests.support.process import (
    EXAMPLES,
    KdnsCommand,
    free_port,
    http_get,
    obeys_file_modes,
    wait_until,
)

_FAILED = re.compile(r"^coredns_reload_failed_total (\S+)$", re.MULTILINE)
WEB = "web.default.svc.cluster.local"


def _corefile(dns: int, metrics: int, cluster: Path, ttl: int) -> str:
    return f""".:{dns} {{
    kubernetes cluster.local {{
        ttl {ttl}
        manifests {cluster}
    }}
    prometheus 127.0.0.1:{metrics}
    reload 2s
}}
"""


class Reloading:
    """A kdns under ``reload 2s`` and the means to edit its Corefile and read its metrics."""

    def __init__(self, tmp_path: Path, wrapper: tuple[str, ...] = ()) -> None:
        self.cluster = tmp_path / "cluster"
        shutil.copytree(EXAMPLES, self.cluster)
        self.dns, self.metrics = free_port(), free_port()
        self.path = tmp_path / "Corefile"
        self.good = _corefile(self.dns, self.metrics, self.cluster, ttl=30)
        self.path.write_text(self.good)
        self.proc = KdnsCommand(["-conf", str(self.path)], self.dns, wrapper=wrapper)
        wait_until(lambda: self.proc.rcode(WEB) == dns.rcode.NOERROR, timeout=20)
        # SIGUSR1 before the reload loop installs its handler would kill the process.
        wait_until(lambda: "Running configuration SHA512" in self.proc.log, timeout=10)

    def failed(self) -> float:
        status, text = http_get(f"http://127.0.0.1:{self.metrics}/metrics")
        assert status == 200, text
        match = _FAILED.search(text)
        assert match is not None, text
        return float(match.group(1))

    def check_now(self) -> None:
        self.proc.proc.send_signal(signal.SIGUSR1)

    def break_with(self, edit: Callable[[Path], None]) -> None:
        """Apply a bad edit and wait until kdns has counted it as a failed reload."""
        before = self.failed()
        edit(self.path)
        self.check_now()
        wait_until(lambda: self.failed() > before, timeout=10)
        self.proc.alive()
        assert self.proc.rcode(WEB) == dns.rcode.NOERROR
        assert self.proc.query(WEB).answer[0].ttl == 30

    def stop(self) -> None:
        self.proc.stop(graceful=False)


@pytest.fixture
def reloading(tmp_path: Path) -> Iterator[Reloading]:
    kdns = Reloading(tmp_path)
    yield kdns
    kdns.stop()


def _replace(path: Path, text: str) -> None:
    """Write the Corefile in one step, as a ConfigMap update does: no half-written file."""
    staged = path.with_name(path.name + ".new")
    staged.write_text(text)
    os.replace(staged, path)


def _empty(path: Path) -> None:
    _replace(path, "")


def _comments_only(path: Path) -> None:
    _replace(path, "# emptied by mistake\n")


def _delete(path: Path) -> None:
    path.unlink()


def _directory(path: Path) -> None:
    """A symlink to a directory swapped in, as a ConfigMap volume swaps its ``..data`` link."""
    folder = path.with_name("a-directory")
    folder.mkdir(exist_ok=True)
    link = path.with_name(path.name + ".link")
    link.symlink_to(folder)
    os.replace(link, path)


def _good(path: Path) -> str:
    return path.parent.joinpath("good").read_text()


def _broken(path: Path) -> None:
    _replace(path, _good(path).replace("reload", "forwad ."))


def _restore(path: Path) -> None:
    _replace(path, _good(path))


def test_bad_corefiles_are_failed_reloads_and_a_good_one_reloads(reloading: Reloading) -> None:
    assert reloading.failed() == 0
    (reloading.path.parent / "good").write_text(reloading.good)
    for edit in (_empty, _comments_only, _delete, _directory):
        reloading.break_with(edit)
        _restore(reloading.path)
    reloading.break_with(_broken)
    assert reloading.failed() == 5
    assert "whoami" not in reloading.proc.log
    for needle in ("empty", "no such file", "directory", "Unknown directive"):
        assert needle in reloading.proc.log.lower() or needle in reloading.proc.log, needle

    # The same broken file checked again is logged again but counted once, not once
    # per interval.
    said = reloading.proc.log.count("Unknown directive")
    reloading.check_now()
    wait_until(lambda: reloading.proc.log.count("Unknown directive") > said, timeout=5)
    assert reloading.failed() == 5

    _replace(reloading.path, reloading.good.replace("ttl 30", "ttl 12"))
    reloading.check_now()
    wait_until(lambda: reloading.proc.query(WEB).answer[0].ttl == 12, timeout=10)
    assert reloading.failed() == 5


PREFIX = obeys_file_modes()


@pytest.mark.skipif(PREFIX is None, reason="root reads a mode-000 file without setpriv")
def test_an_unreadable_corefile_is_a_failed_reload(tmp_path: Path) -> None:
    assert PREFIX is not None
    reloading = Reloading(tmp_path, wrapper=PREFIX)
    try:
        reloading.break_with(lambda path: path.chmod(0))
        assert reloading.proc.query(WEB).rcode() == dns.rcode.NOERROR  # still serving
    finally:
        reloading.stop()
