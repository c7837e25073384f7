"""File descriptors and the forwarder, through the real ``kdns`` process (issue 12, items 8, 14).

kdns is started with a soft RLIMIT_NOFILE far below its hard limit, as container runtimes
do (1024 soft is common), and must lift it; forwarding load must cost a bounded number
of sockets, not one per query in flight; a manifests folder that cannot be read must keep
serving what it last held; and forward latency must be measured below the millisecond.
"""

from __future__ import annotations

import os
import re
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from tests.support.process import (
    EXAMPLES,
    ROOT,
    KdnsCommand,
    free_port,
    http_get,
    obeys_file_modes,
    wait_until,
)
from tests.support.upstreams import Dnsmasq, needs_dnsmasq

pytestmark = [needs_dnsmasq, pytest.mark.timeout(90)]

LOW_SOFT_LIMIT = 256
"""Below what 2,000 concurrent forwards need with a socket each, far above a pool's needs."""


class LimitedKdns(KdnsCommand):
    """``python -m kdns ARGS`` started with a lowered soft fd limit and an optional wrapper."""

    def __init__(
        self, args: Sequence[str], dns_port: int, soft_nofile: int, wrapper: Sequence[str] = ()
    ) -> None:
        self.port = dns_port
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.hard_nofile = hard

        def lower() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft_nofile, hard))

        self.proc = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "kdns", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=lower,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()


def soft_nofile(pid: int) -> int:
    """The soft 'Max open files' of a process, as the kernel reports it."""
    text = Path(f"/proc/{pid}/limits").read_text()
    match = re.search(r"^Max open files\s+(\d+)\s+(\d+)", text, re.M)
    assert match, text
    return int(match.group(1))


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture(scope="module")
def dnsmasq() -> Iterator[Dnsmasq]:
    server = Dnsmasq({"example.org": "192.0.2.1"})
    yield server
    server.stop()


def forwarding_corefile(tmp_path: Path, port: int, upstream: int, metrics_port: int) -> Path:
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        f".:{port} {{\n"
        "    bind 127.0.0.1\n"
        f"    prometheus 127.0.0.1:{metrics_port}\n"
        "    kubernetes cluster.local in-addr.arpa ip6.arpa {\n"
        f"        manifests {EXAMPLES}\n"
        "    }\n"
        f"    forward . 127.0.0.1:{upstream}\n"
        "}\n"
    )
    return corefile


@pytest.fixture
def forwarding_kdns(tmp_path: Path, dnsmasq: Dnsmasq) -> Iterator[tuple[LimitedKdns, int]]:
    """kdns forwarding to dnsmasq, started with a soft fd limit of 256; (process, metrics port)."""
    port, metrics_port = free_port(), free_port()
    corefile = forwarding_corefile(tmp_path, port, dnsmasq.port, metrics_port)
    server = LimitedKdns(["-conf", str(corefile)], port, LOW_SOFT_LIMIT)
    try:
        wait_until(lambda: server.rcode("web.default.svc.cluster.local") is not None, timeout=20)
        yield server, metrics_port
    finally:
        server.stop(graceful=False)


# -- the limit ------------------------------------------------------------------------


def test_soft_fd_limit_is_raised_to_the_hard_limit(
    forwarding_kdns: tuple[LimitedKdns, int],
) -> None:
    server, _ = forwarding_kdns
    assert server.hard_nofile > LOW_SOFT_LIMIT, "the test needs a hard limit above 256"
    assert soft_nofile(server.proc.pid) == server.hard_nofile


# -- forwarding load --------------------------------------------------------------------


class FdSampler:
    """The peak count of a process's open fds, sampled in a thread until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = open_fds(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 60
        while not self._stop.is_set() and time.monotonic() < deadline:
            self.peak = max(self.peak, open_fds(self.pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def burst(port: int, count: int, sockets: int = 8, rounds: int = 4) -> dict[int, int]:
    """Send ``count`` distinct queries at once from a few sockets; {query id: rcode}.

    Queries lost in a full socket buffer are sent again, at most ``rounds`` times in all.
    """
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(sockets)]
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        s.connect(("127.0.0.1", port))
    wires = {i: dns.message.make_query(f"q{i}.example.org", "A") for i in range(count)}
    for i, q in wires.items():
        q.id = i
    answered: dict[int, int] = {}
    try:
        for _ in range(rounds):
            missing = [i for i in wires if i not in answered]
            if not missing:
                break
            for i in missing:
                socks[i % sockets].send(wires[i].to_wire())
            _collect(socks, answered, count)
    finally:
        for s in socks:
            s.close()
    return answered


def _collect(socks: list[socket.socket], answered: dict[int, int], count: int) -> None:
    """Read replies until all came or the sockets stay quiet for half a second."""
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        for _ in range(count * 2):
            ready = sel.select(0.5)
            if not ready or len(answered) == count:
                return
            for key, _ in ready:
                reply = dns.message.from_wire(key.fileobj.recv(4096))  # type: ignore[union-attr]
                answered[reply.id] = reply.rcode()


def test_forwarding_load_keeps_open_fds_bounded(
    forwarding_kdns: tuple[LimitedKdns, int],
) -> None:
    server, _ = forwarding_kdns
    pid = server.proc.pid
    server.query("warm.example.org")  # the upstream's sockets exist before the baseline
    before = open_fds(pid)
    sampler = FdSampler(pid)
    answered = burst(server.port, 2000)
    peak = sampler.stop()
    after = open_fds(pid)
    sys.stderr.write(f"open fds: before {before}, peak {peak}, after {after}\n")
    server.alive()
    assert len(answered) == 2000
    assert set(answered.values()) == {dns.rcode.NOERROR}
    assert peak - before <= 16, f"fds grew from {before} to {peak} under forwarding load"
    assert server.records("web.default.svc.cluster.local") == ["10.96.0.20"]


# -- latency metric ---------------------------------------------------------------------


def _metric(text: str, name: str) -> dict[str, float]:
    """{label text: value} of every sample called ``name``."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) :].rsplit(" ", 1)
            found[labels] = float(value)
    return found


def test_forward_latency_is_measured_below_the_millisecond(
    forwarding_kdns: tuple[LimitedKdns, int], dnsmasq: Dnsmasq
) -> None:
    server, metrics_port = forwarding_kdns
    for i in range(30):
        assert server.query(f"lat{i}.example.org").rcode() == dns.rcode.NOERROR
    status, text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert status == 200
    to = f'to="127.0.0.1:{dnsmasq.port}"'
    name = "coredns_forward_request_duration_seconds"
    [total] = [v for k, v in _metric(text, name + "_sum").items() if to in k]
    [count] = [v for k, v in _metric(text, name + "_count").items() if to in k]
    buckets = {k: v for k, v in _metric(text, name + "_bucket").items() if to in k}
    [sub_ms] = [v for k, v in buckets.items() if 'le="0.001"' in k]
    assert count >= 30
    assert total > 0
    # A clock ticking in whole milliseconds can only ever sum to whole milliseconds.
    assert abs(total * 1000 - round(total * 1000)) > 1e-6, total
    assert sub_ms >= 1, buckets


# -- an unreadable manifests folder -----------------------------------------------------


MODES_PREFIX = obeys_file_modes()
needs_mode_checks = pytest.mark.skipif(
    MODES_PREFIX is None, reason="root ignores file modes without setpriv"
)


@needs_mode_checks
def test_unreadable_manifests_folder_keeps_serving_its_names(tmp_path: Path) -> None:
    folder = tmp_path / "cluster"
    shutil.copytree(EXAMPLES, folder / "team")
    port = free_port()
    wrapper = MODES_PREFIX or ()
    args = ["serve", "--manifests", str(folder), "--listen", f"127.0.0.1:{port}"]
    server = LimitedKdns(args, port, LOW_SOFT_LIMIT, wrapper)
    name = "web.default.svc.cluster.local"
    try:
        wait_until(lambda: server.rcode(name) == dns.rcode.NOERROR, timeout=20)
        said = _said(server, "cannot read")
        for unreadable in (folder, folder / "team"):  # the folder itself, then a subfolder
            server.lines.clear()
            unreadable.chmod(0o000)
            try:
                # Either kdns says it cannot read the folder, or the name is gone.
                wait_until(lambda: said() or server.rcode(name) != dns.rcode.NOERROR)
                assert server.records(name) == ["10.96.0.20"]
                assert said()
            finally:
                unreadable.chmod(0o755)
            # Readable again: changes are picked up as before.
            (folder / "extra.yaml").write_text(EXTRA)
            wait_until(lambda: server.rcode("extra.default.svc.cluster.local") == 0)
            (folder / "extra.yaml").unlink()
            wait_until(lambda: server.rcode("extra.default.svc.cluster.local") == 3)
    finally:
        for path in (folder, folder / "team"):
            path.chmod(0o755)
        server.stop(graceful=False)


def _said(server: KdnsCommand, text: str) -> Callable[[], bool]:
    return lambda: any(text in line for line in server.lines)


EXTRA = """\
apiVersion: v1
kind: Service
metadata: {name: extra, namespace: default}
spec: {clusterIP: 10.96.0.99, ports: [{port: 80}]}
"""
