"""The webhook listener of a running kdns against hostile clients (issue 12, item 9).

One kdns process serves ``envinject`` over real TLS from a manifests folder; the clients
are raw asyncio TLS streams, so each test controls every byte and its timing: a request
dripping its headers or its body, a flood of sockets that never speak, a body nested
100,000 levels deep, and bursts of fresh TLS connections against the process's RSS.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from kdns import admission
from kdns.server import http as httplisten
from tests.support.process import EXAMPLES, ROOT, KdnsCommand, free_port, wait_until

REVIEW = json.dumps(
    {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u-1", "operation": "DELETE", "kind": {"kind": "Pod"}},
    }
).encode()
LIMITS = httplisten.Limits()


@dataclass
class Webhook:
    proc: KdnsCommand
    port: int
    context: ssl.SSLContext

    @property
    def pid(self) -> int:
        return self.proc.proc.pid

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_mib(self) -> float:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def hook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    tmp = tmp_path_factory.mktemp("listener")
    certs = tmp / "tls"
    subprocess.run(
        [sys.executable, "-m", "kdns", "envinject", "certs", "--out", str(certs)],
        check=True,
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    shutil.copytree(EXAMPLES, tmp / "cluster")
    dns_port, port = free_port(), free_port()
    corefile = tmp / "Corefile"
    corefile.write_text(
        f"""cluster.local:{dns_port} {{
    kubernetes {{
        manifests {tmp / "cluster"}
    }}
    envinject 127.0.0.1:{port} {{
        tls {certs / "tls.crt"} {certs / "tls.key"}
    }}
}}
"""
    )
    proc = KdnsCommand(["-conf", str(corefile)], dns_port)
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    context.check_hostname = False  # the certificate names the webhook Service
    webhook = Webhook(proc, port, context)
    try:
        wait_until(lambda: _serving(webhook), timeout=20)
        yield webhook
    finally:
        proc.stop()


def _serving(hook: Webhook) -> bool:
    hook.proc.alive()
    try:
        return asyncio.run(_post(hook, REVIEW))[0] == 200
    except OSError:
        return False


def _request(body: bytes, length: int | None = None) -> bytes:
    head = (
        "POST /inject HTTP/1.1\r\nHost: kdns\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    )
    return head.encode() + body


async def _post(hook: Webhook, body: bytes, timeout: float = 5) -> tuple[int, bytes]:
    """A well-behaved client: one request on a fresh TLS connection, status and body."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", hook.port, ssl=hook.context)
        try:
            writer.write(_request(body))
            status_line = await reader.readline()
            headers = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in headers.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            return int(status_line.split()[1]), await reader.readexactly(length)
        finally:
            writer.close()


async def _drip(hook: Webhook, first: bytes, drip: bytes, limit: float) -> tuple[float, bytes]:
    """Send ``first``, then ``drip`` a byte every 0.2 s until the server closes.

    Returns the seconds the connection lived and what the server sent; gives up (and
    fails the test) after ``limit`` seconds.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", hook.port, ssl=hook.context)
    started = time.monotonic()
    writer.write(first)

    async def dripping() -> None:
        for byte in drip:
            await asyncio.sleep(0.2)
            writer.write(bytes([byte]))
            await writer.drain()

    feeder = asyncio.ensure_future(dripping())
    received = b""
    try:
        async with asyncio.timeout(limit):
            while chunk := await reader.read(4096):
                received += chunk
    except (ConnectionError, ssl.SSLError):
        pass
    except TimeoutError:
        raise AssertionError(f"connection still open after {limit}s") from None
    finally:
        feeder.cancel()
        writer.close()
    return time.monotonic() - started, received


def test_slow_headers_and_slow_body_are_cut_within_their_timeouts(hook: Webhook) -> None:
    async def both() -> tuple[tuple[float, bytes], tuple[float, bytes]]:
        limit = max(LIMITS.header_timeout, admission.BODY_TIMEOUT) + 5
        headers = _drip(hook, b"POST /inject HTTP/1.1\r\n", b"X-Slow: " + b"a" * 200, limit)
        body = _drip(hook, _request(b"", length=len(REVIEW)), REVIEW, limit)
        return await asyncio.gather(headers, body)

    (head_time, head_got), (body_time, body_got) = asyncio.run(both())
    assert head_time < LIMITS.header_timeout + 1.5
    assert head_got == b""
    assert body_time < admission.BODY_TIMEOUT + 1.5
    assert body_got.startswith(b"HTTP/1.1 408 ")
    assert asyncio.run(_post(hook, REVIEW))[0] == 200


def test_a_flood_of_silent_sockets_is_capped_and_a_real_client_gets_through(
    hook: Webhook,
) -> None:
    """Sockets that connect and never say a word hold no more than the cap."""
    flood = LIMITS.max_connections + 200
    before = hook.fds()

    async def run() -> tuple[int, float]:
        writers = []
        try:
            for _ in range(flood):
                writers.append((await asyncio.open_connection("127.0.0.1", hook.port))[1])
            started = time.monotonic()
            # Accepts are in order: once this one is answered, the whole flood was accepted.
            status, _ = await _post(hook, REVIEW, timeout=10)
            return status, time.monotonic() - started
        finally:
            for writer in writers:
                writer.close()

    status, took = asyncio.run(run())
    assert status == 200
    assert took < 3
    assert hook.fds() - before <= LIMITS.max_connections + 4
    wait_until(lambda: hook.fds() <= before + 2, timeout=5)


def test_a_deeply_nested_body_is_a_400_not_a_500(hook: Webhook) -> None:
    depth = 100_000
    status, body = asyncio.run(_post(hook, b"[" * depth + b"]" * depth))
    assert status == 400
    assert b"nested too deeply" in body
    assert asyncio.run(_post(hook, REVIEW))[0] == 200


def test_rss_stays_bounded_under_bursts_of_fresh_tls_connections(hook: Webhook) -> None:
    """Each burst opens more connections than the cap at once; the heap goes back after."""
    bursts, size = 6, 300

    async def burst() -> None:
        results = await asyncio.gather(
            *(_post(hook, REVIEW, timeout=30) for _ in range(size)), return_exceptions=True
        )
        failed = [r for r in results if not (isinstance(r, tuple) and r[0] == 200)]
        assert not failed, failed[:3]

    at_rest = hook.rss_mib()
    peaks = []
    for _ in range(bursts):
        asyncio.run(burst())
        peaks.append(hook.rss_mib())
    settled: list[float] = []

    def back_to_rest() -> bool:
        settled.append(hook.rss_mib())
        return settled[-1] < at_rest + 12

    try:
        wait_until(back_to_rest, timeout=5, interval=0.2)
    finally:
        print(f"RSS at rest {at_rest:.0f} MiB, after each burst {[round(p) for p in peaks]},")
        print(f"then {settled[-1]:.0f} MiB")


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        REVIEW[:-2] + b',"object":' + b"[" * 10_000 + b"]" * 10_000 + b"}}",
    ],
    ids=["array", "object", "inside-a-review"],
)
def test_the_shared_envelope_refuses_deep_nesting_as_a_bad_request(body: bytes) -> None:
    """``/inject`` and ``/allocate`` both parse through :func:`kdns.admission.parse`."""
    with pytest.raises(admission.BadRequest, match="nested too deeply"):
        admission.parse(body)
