"""Shared fixtures: kdns as a real process on real sockets, and DNS clients to ask it.

kdns runs as ``python -m kdns serve`` in a subprocess, exactly as a user starts it; it
listens on port 0 and the fixture reads the port it got from its log line, so tests
never race each other for ports.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.process import (
    EXAMPLES,
    ROOT,
    KdnsCommand,
    KdnsProcess,
    free_port,
    http_get,
    rrset_texts,
    wait_until,
)

# Hermetic: kdns serve forwards names outside the cluster zones to resolv.conf's
# nameservers by default; in the tests it reads no nameserver, so those names stay REFUSED
# unless a test names its upstream (tests/integration/test_serve_forward.py).
os.environ.setdefault("KDNS_RESOLV_CONF", os.devnull)

__all__ = [
    "EXAMPLES",
    "ROOT",
    "KdnsCommand",
    "KdnsProcess",
    "free_port",
    "http_get",
    "rrset_texts",
    "wait_until",
]


@pytest.fixture(scope="session")
def example_server() -> Iterator[KdnsProcess]:
    """kdns serving the bundled example cluster, shared by read-only tests."""
    server = KdnsProcess(EXAMPLES)
    yield server
    server.stop()


@pytest.fixture
def kdns_factory() -> Iterator[type[KdnsProcess]]:
    """Start kdns on a folder of the test's own; every process is stopped afterwards."""
    started: list[KdnsProcess] = []

    class Factory(KdnsProcess):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    yield Factory
    for server in started:
        server.stop()


@pytest.fixture
def manifests_dir(tmp_path: Path) -> Path:
    """A copy of the example cluster the test may edit."""
    target = tmp_path / "cluster"
    shutil.copytree(EXAMPLES, target)
    return target
