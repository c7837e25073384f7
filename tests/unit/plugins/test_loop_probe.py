"""The loop plugin's startup probe against an upstream that does not answer.

CoreDNS declares a loop only when its own probe name comes back to it more than twice
within one exchange; a probe that times out resets the count and is tried again later.
A black-holed, slow or still-starting upstream must therefore never stop the process:
before this was fixed, kdns's own retransmissions of the probe counted as the loop and
it exited after about two seconds, a crash loop on any node whose upstream blips.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dnslib
import pytest

from kdns.plugins.loop import probe as loop_probe
from kdns.query import chain
from kdns.server.plan import ListenAddress
from tests.support.process import EXAMPLES, KdnsCommand, free_port, wait_until


class BlackHole:
    """A UDP socket on 127.0.0.1 that reads queries and never answers them.

    It records when each HINFO query arrives, so a test can wait until the probe has
    been tried over a span of time instead of sleeping.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.hinfo: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                record = dnslib.DNSRecord.parse(data)
            except Exception:
                continue
            if record.q.qtype == dnslib.QTYPE.HINFO:
                self.hinfo.append(time.monotonic())

    def span(self) -> float:
        """Seconds between the first and the last probe the upstream was sent."""
        seen = list(self.hinfo)
        return seen[-1] - seen[0] if len(seen) > 1 else 0.0

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


def test_a_black_holed_upstream_is_not_a_loop(tmp_path: Path, black_hole: BlackHole) -> None:
    port = free_port()
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        f""".:{port} {{
    kubernetes cluster.local {{
        manifests {EXAMPLES}
    }}
    forward . 127.0.0.1:{black_hole.port}
    loop
}}
"""
    )
    proc = KdnsCommand(["-conf", str(corefile)], port)
    try:
        wait_until(lambda: proc.rcode("web.default.svc.cluster.local") == 0, timeout=20)
        # The old code exited after ~2 s; 6 s of unanswered probes covers several
        # probe attempts (2 s timeout + 1 s pause each) without any of them counting.
        wait_until(lambda: proc.proc.poll() is not None or black_hole.span() >= 6.0, timeout=20)
        proc.alive()
        assert "detected" not in proc.log
        assert proc.rcode("web.default.svc.cluster.local") == 0
    finally:
        proc.stop(graceful=False)


def _pipeline() -> chain.Pipeline:
    from kdns.dns import metrics

    return chain.Pipeline([chain.Block(zones=(".",))], metrics.QueryStats("dns://:0"))


def test_probe_count_resets_after_an_unanswered_exchange() -> None:
    """Three arrivals spread over three timed-out exchanges are not a loop."""
    pipe = _pipeline()
    found: list[str] = []
    pipe.on_loop = found.append
    probe = loop_probe.LoopProbe(pipe, ListenAddress("127.0.0.1", 1), ".")
    for _ in range(3):
        pipe.loop_seen(probe.qname, dnslib.QTYPE.HINFO)
        probe.unanswered()
    assert found == []
    for _ in range(3):
        pipe.loop_seen(probe.qname, dnslib.QTYPE.HINFO)
    assert found == [probe.qname]


def test_probe_name_other_types_do_not_count() -> None:
    pipe = _pipeline()
    found: list[str] = []
    pipe.on_loop = found.append
    probe = loop_probe.LoopProbe(pipe, ListenAddress("127.0.0.1", 1), ".")
    for _ in range(5):
        pipe.loop_seen(probe.qname, dnslib.QTYPE.A)
    assert found == []
