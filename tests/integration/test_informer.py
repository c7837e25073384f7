"""list+watch against the API emulator: every scenario ends with the store equal to the
emulator's state, shrunk the same way.

The emulator runs on the test's own event loop (``apiemu.serving``), so a test can
change the world, cut streams or take the API down between two awaits, and waits on
store changes (bounded) rather than sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from kdns.cluster import objects, shrink
from kdns.cluster.kube import client, config, informer, metrics, snapshot
from kdns.cluster.store import Store
from tests.support import apiemu
from tests.support.apiemu import builders

pytestmark = pytest.mark.timeout(60)

FAST = informer.Options(
    page_size=3,
    watch_timeout=30,
    inactivity_timeout=10.0,
    backoff=informer.Backoff(initial=0.05, factor=2.0, cap=0.3),
    startup_timeout=2.0,
)
WATCHED = 3  # namespaces, services, endpointslices


def aio(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh loop, bounded."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        async def bounded() -> None:
            async with asyncio.timeout(45):
                await fn(*args, **kwargs)

        asyncio.run(bounded())

    return run


def expected(emu: apiemu.Emulator) -> tuple[dict[Any, Any], dict[Any, Any], dict[Any, Any]]:
    """What the store must hold: every valid emulator object, shrunk."""

    def shrunk(api_version: str, kind: str, fn: Callable[[Any], Any]) -> dict[Any, Any]:
        out = {}
        for raw in emu.objects(api_version, kind):
            try:
                obj = fn(raw)
            except shrink.Invalid:
                continue
            out[obj.key if hasattr(obj, "key") else obj.name] = obj
        return out

    return (
        shrunk("v1", "Service", shrink.service),
        shrunk("discovery.k8s.io/v1", "EndpointSlice", shrink.endpoint_slice),
        shrunk("v1", "Namespace", shrink.namespace),
    )


def state(store: Store) -> tuple[dict[Any, Any], dict[Any, Any], dict[Any, Any]]:
    return dict(store.services), dict(store.slices), dict(store.namespaces)


@dataclass
class Run:
    emu: apiemu.Emulator
    store: Store
    informers: informer.Informers
    registry: CollectorRegistry
    changed: asyncio.Event
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.informers.run(), name="informers")

    async def until(self, predicate: Callable[[], bool], timeout: float = 8.0) -> None:
        """Wait for ``predicate``, re-checking on every store change (and every 20 ms
        for conditions that are not store writes, such as the stale flag)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                if self.task is not None and self.task.done():
                    self.task.result()
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.02):
                        await self.changed.wait()

    async def converged(self, timeout: float = 8.0) -> None:
        try:
            await self.until(lambda: state(self.store) == expected(self.emu), timeout)
        except TimeoutError:
            assert state(self.store) == expected(self.emu)  # show the difference
            raise

    async def watching(self) -> None:
        async with asyncio.timeout(8):
            await self.emu.wait_for_watchers(WATCHED)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, labels or {}) or 0.0

    def services_informer(self) -> informer.Informer:
        return self.informers.informers["services"]


@contextlib.asynccontextmanager
async def running(
    options: informer.Options = FAST,
    *,
    start: bool = True,
    snapshot_path: Path | None = None,
    connection: Callable[[apiemu.Emulator], config.Connection] | None = None,
    **emu_options: Any,
) -> AsyncIterator[Run]:
    emu_options.setdefault("bookmark_interval", 60.0)
    async with apiemu.serving(**emu_options) as emu:
        store = Store()
        changed = asyncio.Event()
        store.subscribe(changed.set)
        conn = (
            connection(emu)
            if connection
            else config.load(config.ConnectionOptions(endpoint=emu.url))
        )
        registry = CollectorRegistry()
        persister = (
            None
            if snapshot_path is None
            else snapshot.Persister(snapshot_path, store, interval=0.05, registry=registry)
        )
        informers = informer.Informers(
            store,
            client.Client(conn),
            options,
            stats=metrics.Metrics(registry),
            persister=persister,
        )
        run = Run(emu, store, informers, registry, changed)
        if start:
            run.start()
        try:
            yield run
        finally:
            if run.task is not None:
                run.task.cancel()
                await asyncio.gather(run.task, return_exceptions=True)


def seed(emu: apiemu.Emulator, count: int, namespace: str = "default") -> None:
    for i in range(count):
        emu.put(builders.service(f"svc-{i}", namespace, cluster_ip=f"10.96.1.{i + 1}"))
        emu.put(
            builders.endpoint_slice(
                f"svc-{i}", namespace, addresses=[f"10.244.1.{i + 1}", f"10.244.2.{i + 1}"]
            )
        )


# -- sync -----------------------------------------------------------------------------


@aio
async def test_initial_sync_is_paged_and_marks_the_store_synced() -> None:
    async with running(start=False) as run:
        seed(run.emu, 10)
        run.start()
        async with asyncio.timeout(8):
            await run.informers.synced.wait()
        assert run.store.synced
        assert state(run.store) == expected(run.emu)
        assert len(run.store.services) == 10 and len(run.store.namespaces) == 4
        lists = [r for r in run.emu.requests() if r.path == "/api/v1/services" and not r.is_watch]
        assert [r.param("limit") for r in lists] == ["3"] * 4
        assert [bool(r.param("continue")) for r in lists] == [False, True, True, True]
        await run.watching()
        watch = next(r for r in run.emu.requests() if r.is_watch and "services" in r.path)
        assert watch.param("allowWatchBookmarks") == "true"
        assert watch.param("resourceVersion") == run.services_informer().resource_version
        await run.until(lambda: not run.informers.stale)
        assert run.metric("kdns_informer_synced", {"resource": "services"}) == 1
        assert (
            run.metric("kdns_informer_relists_total", {"resource": "services", "reason": "start"})
            == 1
        )


@aio
async def test_add_modify_delete_reach_the_store() -> None:
    async with running() as run:
        await run.watching()
        run.emu.put(builders.namespace("prod"))
        run.emu.put(builders.service("web", "prod", cluster_ip="10.96.0.20"))
        run.emu.put(builders.endpoint_slice("web", "prod", addresses=["10.244.0.5"]))
        await run.converged()
        assert run.store.get_service("prod", "web") is not None
        run.emu.put(builders.service("web", "prod", cluster_ip="10.96.0.21"))
        run.emu.put(builders.endpoint_slice("web", "prod", addresses=["10.244.0.6"], ready=False))
        await run.converged()
        assert run.store.get_service("prod", "web").cluster_ip == "10.96.0.21"  # type: ignore[union-attr]
        run.emu.delete("discovery.k8s.io/v1", "EndpointSlice", "web-abcde", "prod")
        run.emu.delete("v1", "Service", "web", "prod")
        await run.converged()
        assert run.store.get_service("prod", "web") is None
        assert (
            run.metric("kdns_informer_events_total", {"resource": "services", "type": "DELETED"})
            == 1
        )
        assert (
            run.metric("kdns_informer_relists_total", {"resource": "services", "reason": "gone"})
            == 0
        )


@aio
async def test_namespace_filter_and_label_selectors() -> None:
    options = informer.Options(
        namespaces=frozenset({"prod", "default"}),
        labels="dns=yes",
        namespace_labels="team",
        backoff=FAST.backoff,
    )
    async with running(options) as run:
        run.emu.put(builders.namespace("prod", {"team": "a"}))
        run.emu.put(builders.namespace("dev", {"team": "b"}))
        run.emu.put(builders.service("a", "prod", labels={"dns": "yes"}))
        run.emu.put(builders.service("b", "prod", labels={"dns": "no"}))
        run.emu.put(builders.service("c", "dev", labels={"dns": "yes"}))
        await run.watching()
        await run.until(lambda: ("prod", "a") in run.store.services)
        run.emu.put(builders.service("b", "prod", labels={"dns": "yes"}))  # starts matching
        run.emu.put(builders.service("a", "prod", labels={"dns": "no"}))  # stops matching
        await run.until(lambda: set(run.store.services) == {("prod", "b")})
        assert set(run.store.namespaces) == {"prod"}  # default has no team label, dev filtered
        watches = [r for r in run.emu.requests() if r.is_watch]
        assert {r.param("labelSelector") for r in watches} == {"dns=yes", "team"}


# -- dropped streams, 410 Gone ----------------------------------------------------------


@aio
async def test_delete_while_the_watch_is_down_is_replayed_from_the_resource_version() -> None:
    async with running(start=False) as run:
        seed(run.emu, 4)
        run.start()
        await run.watching()
        await run.emu.go_down()
        await run.until(lambda: run.informers.stale)
        run.emu.delete("v1", "Service", "svc-1", "default")
        run.emu.delete("discovery.k8s.io/v1", "EndpointSlice", "svc-1-abcde", "default")
        run.emu.put(builders.service("late", cluster_ip="10.96.9.9"))
        await run.emu.come_up()
        await run.converged()
        await run.until(lambda: not run.informers.stale)
        assert ("default", "svc-1") not in run.store.services
        assert (
            run.metric("kdns_informer_relists_total", {"resource": "services", "reason": "gone"})
            == 0
        )  # resumed, not re-listed
        assert run.metric("kdns_informer_errors_total",
                          {"resource": "services", "error": "Unreachable"}) >= 1  # fmt: skip


@pytest.mark.parametrize("reply", ["error-event", "http-410"])
def test_410_gone_relists_and_applies_deletes_missed_meanwhile(reply: str) -> None:
    @aio
    async def scenario() -> None:
        async with running(start=False) as run:
            run.emu.set_expired_watch_reply(reply)  # type: ignore[arg-type]
            seed(run.emu, 5)
            run.start()
            await run.watching()
            await run.emu.go_down()
            run.emu.delete("v1", "Service", "svc-2", "default")
            run.emu.put(builders.service("svc-3", cluster_ip="10.96.3.33"))
            run.emu.compact()  # the history kdns would resume from is gone
            await run.emu.come_up()
            await run.converged()
            assert (
                run.metric(
                    "kdns_informer_relists_total", {"resource": "services", "reason": "gone"}
                )
                == 1
            )
            assert run.metric("kdns_informer_errors_total",
                              {"resource": "services", "error": "Gone"}) == 1  # fmt: skip
            # The re-list was a fresh list (no resourceVersion), never a watch from "now".
            watches = [r for r in run.emu.requests() if r.is_watch and "services" in r.path]
            assert all(r.param("resourceVersion") not in (None, "", "0") for r in watches)

    scenario()


@aio
async def test_410_on_a_watch_that_ended_mid_stream() -> None:
    """The server ends a live stream (its timeout) and compacts before we come back: the
    reconnect is answered with an ERROR 410 event, and the re-list converges."""
    async with running() as run:
        await run.watching()
        run.emu.put(builders.service("x"))
        await run.converged()
        run.emu.put(builders.service("x", cluster_ip="10.96.7.7"))
        run.emu.compact()
        run.emu.cut_watches(apiemu.Cut.END)
        run.emu.delete("v1", "Service", "x", "default")
        run.emu.compact()
        await run.converged()
        await run.watching()
        assert (
            run.metric(
                "kdns_informer_watch_restarts_total", {"resource": "services", "reason": "timeout"}
            )
            >= 1
        )


@aio
async def test_torn_event_line_is_not_applied_and_the_watch_resumes() -> None:
    async with running() as run:
        await run.watching()
        run.emu.cut_watches(apiemu.Cut.MID_LINE)
        run.emu.put(builders.service("after-tear"))
        await run.converged()
        await run.watching()
        assert run.metric("kdns_informer_errors_total",
                          {"resource": "services", "error": "Unreachable"}) == 1  # fmt: skip


@aio
async def test_expired_continue_token_restarts_the_list() -> None:
    async with apiemu.serving() as emu:
        seed(emu, 9)
        api = client.Client(config.load(config.ConnectionOptions(endpoint=emu.url)))
        calls = 0

        def convert(raw: dict[str, Any]) -> objects.Service:
            nonlocal calls
            calls += 1
            if calls == 1:  # between the first and second page: history moves on
                emu.delete("v1", "Service", "svc-8", "default")
                emu.put(builders.service("svc-new"))
                emu.compact()
            return shrink.service(raw)

        try:
            listing = await api.list("/api/v1/services", convert, limit=4)
        finally:
            await api.close()
        assert listing.restarts == 1
        assert {s.name for s in listing.items} == {
            s["metadata"]["name"] for s in emu.objects("v1", "Service")
        }
        assert listing.resource_version == str(emu.resource_version)
        continued = [r for r in emu.requests() if r.param("continue")]
        assert len(continued) == 1  # the expired one; the restart is one unpaged request
        assert emu.requests()[-1].param("limit") is None


# -- throttling, errors, credentials -------------------------------------------------------


@aio
async def test_429_retry_after_is_honoured() -> None:
    async with running(start=False) as run:
        run.emu.fail_next(1, code=429, retry_after=1, path_contains="/api/v1/services")
        run.start()
        async with asyncio.timeout(8):
            await run.informers.synced.wait()
        tries = [r for r in run.emu.requests() if r.path == "/api/v1/services"]
        assert len(tries) >= 2
        waited = tries[1].at - tries[0].at
        assert waited >= 0.95, waited  # the backoff alone would be 50 ms
        assert run.metric("kdns_informer_errors_total",
                          {"resource": "services", "error": "TooManyRequests"}) == 1  # fmt: skip
        assert run.metric("coredns_kubernetes_rest_client_requests_total",
                          {"code": "429", "method": "GET", "host": f"127.0.0.1:{run.emu.port}"}
                          ) == 1  # fmt: skip


@aio
async def test_server_errors_back_off_and_recover() -> None:
    async with running(start=False) as run:
        run.emu.fail_next(3, code=500, path_contains="endpointslices")
        seed(run.emu, 2)
        run.start()
        async with asyncio.timeout(8):
            await run.informers.synced.wait()
        await run.converged()
        assert run.metric("kdns_informer_errors_total",
                          {"resource": "endpointslices", "error": "ServerError"}) == 3  # fmt: skip


@aio
async def test_kubeconfig_token_file_is_reread_when_rotated(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")

    def connect(emu: apiemu.Emulator) -> config.Connection:
        kubeconfig = apiemu.kubeconfig.write(tmp_path / "kubeconfig", emu.url, token_file=token)
        connection = config.load(config.ConnectionOptions(kubeconfig=str(kubeconfig)))
        assert isinstance(connection.credentials, config.TokenFile)
        return connection

    async with running(connection=connect, token="first") as run:
        await run.watching()
        token.write_text("second\n")  # the kubelet rotated it ...
        run.emu.set_token("second")  # ... and the old one is no longer accepted
        run.emu.cut_watches(apiemu.Cut.RESET)
        run.emu.put(builders.service("after-rotation"))
        await run.converged()
        await run.watching()
        assert run.metric("kdns_informer_errors_total",
                          {"resource": "services", "error": "Unauthorized"}) == 0  # fmt: skip
        codes = [c for c in ("401", "200") if run.metric(
            "coredns_kubernetes_rest_client_requests_total",
            {"code": c, "method": "GET", "host": f"127.0.0.1:{run.emu.port}"})]  # fmt: skip
        assert codes == ["401", "200"]


@aio
async def test_wrong_token_is_unauthorized_and_retried(tmp_path: Path) -> None:
    def connect(emu: apiemu.Emulator) -> config.Connection:
        path = apiemu.kubeconfig.write(tmp_path / "kubeconfig", emu.url, token="stale")
        return config.load(config.ConnectionOptions(kubeconfig=str(path)))

    async with running(connection=connect, token="fresh") as run:
        await run.until(
            lambda: run.metric("kdns_informer_errors_total",
                               {"resource": "services", "error": "Unauthorized"}) >= 2
        )  # fmt: skip
        assert not run.store.synced
        run.emu.set_token(None)
        await run.converged()


# -- the API server going away ----------------------------------------------------------


@aio
async def test_api_down_mid_run_then_back(caplog: pytest.LogCaptureFixture) -> None:
    async with running(start=False) as run:
        seed(run.emu, 3)
        run.start()
        await run.watching()
        await run.emu.go_down()
        await run.until(lambda: run.informers.stale)
        assert run.metric("kdns_informer_stale", {"resource": "services"}) == 1
        assert run.store.synced and len(run.store.services) == 3  # still answering
        for i in range(3):
            run.emu.delete("v1", "Service", f"svc-{i}", "default")
        run.emu.put(builders.service("new"))
        # Let a few reconnect attempts fail, so the resume path is the one exercised.
        await run.until(lambda: run.services_informer().failures >= 3)
        await run.emu.come_up()
        await run.converged()
        await run.until(lambda: not run.informers.stale)
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        per_resource = [r for r in warnings if r.getMessage().startswith("services:")]
        assert len(per_resource) == 1  # one warning per outage, not one per retry


@aio
async def test_api_down_at_start_without_snapshot(tmp_path: Path) -> None:
    async with running(start=False, snapshot_path=tmp_path / "missing.json") as run:
        await run.emu.go_down()
        run.emu.put(builders.service("web"))
        run.start()
        await run.until(lambda: run.services_informer().failures >= 2)
        assert not run.store.synced and not run.informers.synced.is_set()
        assert run.metric("kdns_snapshot_age_seconds") == 0
        await run.emu.come_up()
        await run.converged()
        await run.until(lambda: run.store.synced)


@aio
async def test_api_down_at_start_serves_the_persisted_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    async with running(start=False, snapshot_path=path) as first:
        seed(first.emu, 4)
        first.emu.put(builders.namespace("prod", {"team": "a"}))
        first.start()
        await first.converged()
        await first.until(lambda: first.metric("kdns_snapshot_writes_total") >= 1)
        taken = state(first.store)
        # kdns restarts; the API server is down meanwhile, and the cluster moved on.
        first.emu.delete("v1", "Service", "svc-0", "default")
        first.emu.put(builders.service("svc-9", cluster_ip="10.96.1.99"))
        await first.emu.go_down()
        assert first.task is not None
        first.task.cancel()
        await asyncio.gather(first.task, return_exceptions=True)
        first.task = None

        store = Store()
        registry = CollectorRegistry()
        persister = snapshot.Persister(path, store, interval=0.05, registry=registry)
        second = informer.Informers(
            store,
            client.Client(config.load(config.ConnectionOptions(endpoint=first.emu.url))),
            FAST,
            stats=metrics.Metrics(registry),
            persister=persister,
        )
        changed = asyncio.Event()
        store.subscribe(changed.set)
        run = Run(first.emu, store, second, registry, changed)
        run.start()
        try:
            await run.until(lambda: store.synced)
            assert state(store) == taken
            assert not second.synced.is_set() and second.stale
            assert (registry.get_sample_value("kdns_snapshot_age_seconds") or 0) > 0
            await run.emu.come_up()
            await run.converged()
            await run.until(second.synced.is_set)
            await run.until(lambda: registry.get_sample_value("kdns_snapshot_age_seconds") == 0)
        finally:
            assert run.task is not None
            run.task.cancel()
            await asyncio.gather(run.task, return_exceptions=True)


@aio
async def test_startup_timeout_falls_back_to_the_snapshot_when_the_api_hangs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "snapshot.json"
    snap = snapshot.Snapshot(
        time.time() - 30, [shrink.service(builders.service("old"))], [],
        [objects.Namespace("default")],
    )  # fmt: skip
    snapshot.write(path, snap)
    options = informer.Options(startup_timeout=0.3, backoff=FAST.backoff)
    async with running(options, start=False, snapshot_path=path) as run:
        run.emu.set_delay(1.5)  # every request hangs for longer than startup_timeout
        run.start()
        await run.until(lambda: run.store.synced)
        assert set(run.store.services) == {("default", "old")}
        assert 29 < run.metric("kdns_snapshot_age_seconds") < 60
        run.emu.set_delay(0)
        await run.converged()


def test_corrupt_or_foreign_snapshots_are_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store()
    path = tmp_path / "snapshot.json"
    persister = snapshot.Persister(path, store)
    assert persister.load() is None  # missing: silently nothing
    for content in (b"{not json", b'{"kind": "kdns-snapshot", "schema": 999}',
                    b'{"kind": "kdns-snapshot", "schema": 1, "written": 1, "services": [{}]}',
                    b"[]"):  # fmt: skip
        path.write_bytes(content)
        assert persister.load() is None
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 4 and all("ignoring it" in m for m in messages)
    assert "schema version 999" in messages[1]


# -- bookmarks, silence, invalid objects --------------------------------------------------


@aio
async def test_bookmarks_advance_the_resource_version() -> None:
    async with running(bookmark_interval=0.1) as run:
        await run.watching()
        for i in range(3):  # changes the services watch does not see
            run.emu.put(builders.pod(f"p{i}"))
        target = str(run.emu.resource_version)
        await run.until(lambda: run.services_informer().resource_version == target)
        run.emu.compact()  # only the bookmarked version is still watchable
        run.emu.cut_watches(apiemu.Cut.RESET)
        await run.watching()
        run.emu.put(builders.service("after"))
        await run.converged()
        assert (
            run.metric("kdns_informer_relists_total", {"resource": "services", "reason": "gone"})
            == 0
        )
        assert (
            run.metric("kdns_informer_events_total", {"resource": "services", "type": "BOOKMARK"})
            >= 1
        )


@aio
async def test_a_silent_watch_is_restarted() -> None:
    options = informer.Options(inactivity_timeout=0.2, backoff=FAST.backoff)
    async with running(options) as run:
        await run.watching()
        await run.until(
            lambda: run.metric("kdns_informer_watch_restarts_total",
                               {"resource": "services", "reason": "inactive"}) >= 2
        )  # fmt: skip
        run.emu.put(builders.service("still-listening"))
        await run.converged()


@aio
async def test_invalid_objects_are_logged_once_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running() as run:
        await run.watching()
        bad = builders.service("bad", cluster_ip="10.96.0.300")
        run.emu.put(bad)
        run.emu.put(builders.service("bad", cluster_ip="10.96.0.300", labels={"x": "1"}))
        run.emu.put(builders.service("good"))
        await run.until(lambda: ("default", "good") in run.store.services)
        assert ("default", "bad") not in run.store.services
        complaints = [r for r in caplog.records if "default/bad" in r.getMessage()]
        assert len(complaints) == 1 and "spec.clusterIPs[0]" in complaints[0].getMessage()
        assert run.metric("kdns_informer_invalid_objects_total", {"resource": "services"}) == 2
        run.emu.put(builders.service("bad", cluster_ip="10.96.0.30"))
        await run.converged()
        assert ("default", "bad") in run.store.services
