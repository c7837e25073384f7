"""API errors are reported and retried at the pace the server asks for (issue 12, item 15).

A run of 429s must not grow the backoff past what the server's Retry-After says: once
the API answers again, a Service created meanwhile is served within Retry-After + 5 s.
Each failure is logged with its HTTP status, rate-limited.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator

import pytest

from tests.integration.test_informer import aio, running
from tests.support import apiemu
from tests.support.apiemu import builders
from tests.support.process import KdnsCommand, free_port, wait_until

pytestmark = pytest.mark.timeout(90)

RETRY_AFTER = 1
THROTTLED = 6


@pytest.fixture
def emulator() -> Iterator[apiemu.EmulatorThread]:
    with apiemu.EmulatorThread(bookmark_interval=0.5) as emu:
        emu.put(builders.service("web", cluster_ip="10.96.0.20"))
        yield emu


def _serve(emu: apiemu.EmulatorThread) -> KdnsCommand:
    port = free_port()
    return KdnsCommand(["serve", "--endpoint", emu.url, "--listen", f"127.0.0.1:{port}"], port)


def test_new_objects_appear_soon_after_a_run_of_429s(emulator: apiemu.EmulatorThread) -> None:
    proc = _serve(emulator)
    try:
        wait_until(lambda: proc.rcode("web.default.svc.cluster.local") == 0, timeout=20)
        emulator.wait_for_watchers(3, timeout=10)
        emulator.fail_next(THROTTLED, 429, RETRY_AFTER, path_contains="/api/v1/services")
        cut_at = time.time()
        emulator.cut_watches(apiemu.Cut.RESET)
        emulator.put(builders.service("late", cluster_ip="10.96.0.40"))
        wait_until(lambda: proc.rcode("late.default.svc.cluster.local") == 0, timeout=60)
        served_at = time.time()
        tries = [
            r.at for r in emulator.requests() if r.path == "/api/v1/services" and r.at >= cut_at
        ]
        assert len(tries) > THROTTLED, tries
        recovered_at = tries[THROTTLED - 1]  # the last 429: the next request succeeds
        assert served_at - recovered_at <= RETRY_AFTER + 5, (served_at - recovered_at, tries)
        reports = [line for line in proc.lines if re.search(r"services: .*\b429\b.*retrying", line)]
        assert reports, proc.log
        assert len(reports) < THROTTLED, reports  # rate-limited, with a count
        assert re.search(
            r"services: connected again after \d+ failed attempts \(6 x 429\b", proc.log
        ), proc.log
    finally:
        proc.stop()


@aio
async def test_server_errors_are_logged_with_their_status_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kdns.cluster.kube.informer")
    async with running(start=False) as run:
        run.emu.fail_next(5, code=500, path_contains="endpointslices")
        run.start()
        async with asyncio.timeout(8):
            await run.informers.synced.wait()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("endpoint")]
    failures = [line for line in lines if "retrying" in line]
    assert len(failures) == 1 and "500" in failures[0], lines
    assert any("connected again after 5 failed attempts (5 x 500)" in line for line in lines)
