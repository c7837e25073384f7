"""list+watch of Services, EndpointSlices, Namespaces (and Pods) into the store.

Each resource runs kopf's three nested loops:

1. reconnect forever: after a 429 (or a 5xx) with Retry-After, as soon as the server
   says and no later; otherwise with exponential backoff and jitter, capped, and reset
   by the next success. Failures are logged with their HTTP status, rate-limited;
2. list page by page, each object written to the store as its page is parsed and
   marked (``Store.relist``); once the last page is in, what was not marked is deleted,
   so objects deleted while we were away are deleted now. Never two copies of the
   cluster, and the old state keeps answering until the list completes;
3. watch from the list's resourceVersion, resuming from the last event or bookmark
   after a stream ends or breaks, and re-listing on 410 Gone. The resourceVersion is
   never reset to "now": that would skip events silently.

Raw objects are shrunk the moment they are parsed. Data never stops the process: an
object kdns cannot shrink (a field of the wrong type, an address that is not one,
``metadata`` that is a string) is logged once per object and problem (so at most once
per resourceVersion, and not again on a re-list), counted in
``kdns_informer_invalid_objects_total``, and skipped. Skipped, not deleted: if the store
holds a good version of it, that stays served (a bad update must not turn a working
name into NXDOMAIN), as the manifests source does for files. A delete always deletes.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from kdns.cluster import shrink
from kdns.cluster.kube import client, metrics, shapes, snapshot
from kdns.cluster.store import Relist, Store

log = logging.getLogger(__name__)

Raw = dict[str, Any]
Key = tuple[str, str]
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between failed attempts: ``initial * factor**n``, capped, jittered down."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.25
    """Up to this fraction is taken off each delay, so replicas do not retry in step."""
    retry_after_cap: float = 60.0
    """The longest Retry-After obeyed: the server's word, but not for an hour."""

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """The wait before attempt ``attempt + 1``.

        A server that sends Retry-After knows when it can take us again, so that is
        the wait (never less than ``initial``, at most ``retry_after_cap``, stretched by
        up to ``jitter`` so replicas spread out), whatever the number of failures:
        growing it as well is what left objects unseen for 40 s after the API recovered.
        """
        if retry_after is not None:
            wait = min(self.retry_after_cap, max(self.initial, retry_after))
            return wait * (1.0 + self.jitter * random.random())
        base = min(self.cap, self.initial * self.factor ** min(attempt, 30))
        return base * (1.0 - self.jitter * random.random())


@dataclass(frozen=True, slots=True)
class Options:
    """The ``kubernetes`` directive's options that shape what is listed and watched."""

    namespaces: frozenset[str] = frozenset()
    """Only these namespaces (empty: all); filtered as objects arrive."""
    labels: str | None = None
    """Label selector for Services and EndpointSlices (the slice controller copies a
    Service's labels to its slices), as CoreDNS's ``labels``."""
    namespace_labels: str | None = None
    """Label selector for Namespaces: names in other namespaces are not served."""
    pods: bool = False
    """Watch Pods too (``pods verified``)."""
    page_size: int = 500
    watch_timeout: int = 300
    """``timeoutSeconds`` of a watch, stretched by up to 2x at random, as client-go does."""
    inactivity_timeout: float = 120.0
    """A watch with no event and no bookmark for this long is restarted."""
    backoff: Backoff = field(default_factory=Backoff)
    report_interval: float = 10.0
    """At most one failure report per resource in this many seconds; the next one says
    how many failures (and which statuses) it stands for."""
    startup_timeout: float = 5.0
    """How long to wait for the first sync before falling back to a snapshot."""
    endpoint_fields: frozenset[str] = shrink.ALL_ENDPOINT_FIELDS
    """The optional endpoint fields kept (:data:`kdns.cluster.shrink.ALL_ENDPOINT_FIELDS`):
    the server keeps pod names only for ``endpoint_pod_names``, node names never."""
    imports: bool = False
    """Watch ServiceImports too (``multicluster``)."""


@dataclass(frozen=True, slots=True)
class Kind:
    """How one resource is fetched and written to the store."""

    resource: str
    path: str
    field: str
    """The keyword of :meth:`Store.replace` for this kind."""
    shrink: Callable[[Raw], Any]
    put: Callable[[Store, Any], bool]
    delete: Callable[[Store, str, str], bool]
    get: Callable[[Store, str, str], Any]
    """The stored (last good) version, None if there is none."""
    shape: shapes.Reader | None = None
    """What of the JSON :attr:`shrink` reads (:mod:`kdns.cluster.kube.shapes`): the
    decoder builds that and skips the rest."""


NAMESPACES = Kind(
    "namespaces",
    "/api/v1/namespaces",
    "namespaces",
    shrink.namespace,
    Store.put_namespace,
    lambda store, _ns, name: store.delete_namespace(name),
    lambda store, _ns, name: store.namespaces.get(name),
    shapes.Reader(shapes.Namespace),
)
SERVICES = Kind(
    "services",
    "/api/v1/services",
    "services",
    shrink.service,
    Store.put_service,
    Store.delete_service,
    Store.get_service,
    shapes.Reader(shapes.Service),
)
SLICES = Kind(
    "endpointslices",
    "/apis/discovery.k8s.io/v1/endpointslices",
    "slices",
    shrink.endpoint_slice,
    Store.put_slice,
    Store.delete_slice,
    lambda store, ns, name: store.slices.get((ns, name)),
    shapes.Reader(shapes.EndpointSlice),
)
PODS = Kind(
    "pods",
    "/api/v1/pods",
    "pods",
    shrink.pod,
    Store.put_pod,
    Store.delete_pod,
    lambda store, ns, name: store.pods.get((ns, name)),
    shapes.Reader(shapes.Pod),
)
"""Whole pods, for ``kdns explain``'s selector report."""
POD_ADDRESSES = Kind(
    "pods",
    "/api/v1/pods",
    "pod_addresses",
    shrink.pod_address,
    Store.put_pod_address,
    Store.delete_pod_address,
    lambda store, ns, name: True if store.has_pod(ns, name) else None,
    shapes.Reader(shapes.PodAddress),
)
"""What ``pods verified`` reads of pods: an index of addresses by namespace."""
SERVICE_IMPORTS = Kind(
    "serviceimports",
    "/apis/multicluster.x-k8s.io/v1alpha1/serviceimports",
    "imports",
    shrink.service_import,
    Store.put_import,
    Store.delete_import,
    Store.get_import,
    shapes.Reader(shapes.ServiceImport),
)
"""ServiceImports (Multi-Cluster Services API), for ``multicluster`` zones."""


def _metadata(raw: object) -> Mapping[str, Any] | None:
    """An object's metadata, None when it is not there to read (or not a map)."""
    meta = raw.get("metadata") if isinstance(raw, Mapping) else None
    return meta if isinstance(meta, Mapping) else None


def _key(meta: Mapping[str, Any] | None) -> Key | None:
    """(namespace, name) as the store keys it; None when metadata cannot say."""
    if meta is None:
        return None
    ns, name = meta.get("namespace") or "", meta.get("name")
    if not isinstance(ns, str) or not isinstance(name, str) or not name:
        return None
    return ns, name


def _version(meta: Mapping[str, Any] | None) -> str:
    version = meta.get("resourceVersion") if meta is not None else None
    return version if isinstance(version, str) else ""


def _trigger_time(meta: Mapping[str, Any]) -> float | None:
    annotations = meta.get("annotations")
    if not isinstance(annotations, Mapping):
        return None
    value = annotations.get(TRIGGER_TIME)
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _status(exc: client.ApiError | client.Unreachable) -> str:
    return str(exc.code) if isinstance(exc, client.ApiError) else "unreachable"


class _FailureReports:
    """The failure log of one informer between two successes.

    A failure whose status differs from the last one reported is logged at once; the
    same status again at most once per ``interval``, with the count of failures it
    stands for. A throttled API server is a cluster-wide event: one line per retry per
    replica would add to its trouble, and silence would hide it.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: tuple[str, float] | None = None
        self._held: collections.Counter[str] = collections.Counter()
        self._run: collections.Counter[str] = collections.Counter()

    def failed(self, resource: str, exc: client.ApiError | client.Unreachable,
               delay: float) -> None:  # fmt: skip
        status, now = _status(exc), time.monotonic()
        self._held[status] += 1
        self._run[status] += 1
        if (
            self._last is not None
            and self._last[0] == status
            and now - self._last[1] < (self.interval)
        ):
            return
        self._last = (status, now)
        held, self._held = self._held, collections.Counter()
        since = f" ({_counts(held)} since the last report)" if held.total() > 1 else ""
        log.warning("%s: %s; retrying in %.2fs%s", resource, exc, delay, since)

    def recovered(self, resource: str) -> None:
        if self._run:
            log.info("%s: connected again after %d failed attempts (%s)", resource,
                     self._run.total(), _counts(self._run))  # fmt: skip
        self._last = None
        self._held.clear()
        self._run.clear()


def _counts(statuses: collections.Counter[str]) -> str:
    return ", ".join(f"{count} x {status}" for status, count in statuses.most_common())


class Informer:
    """One resource's list+watch; see the module docstring."""

    def __init__(
        self,
        kind: Kind,
        store: Store,
        api: client.Client,
        options: Options,
        stats: metrics.Metrics,
        *,
        selector: str | None = None,
        on_change: Callable[[float], None] | None = None,
        on_failure: Callable[[], None] | None = None,
        on_relisted: Callable[[], object] | None = None,
    ) -> None:
        self.kind = kind
        self.on_relisted = on_relisted
        self.store = store
        self.api = api
        self.options = options
        self.metrics = stats
        self.params = {"labelSelector": selector} if selector else {}
        self.on_change = on_change
        self.on_failure = on_failure
        self.synced = asyncio.Event()
        self.stale = True
        self.resource_version: str | None = None
        self.last_heard: float | None = None
        self.failures = 0
        self._reports = _FailureReports(options.report_interval)
        self._complaints: dict[Key | None, str] = {}
        """Objects skipped, and the problem last logged for each."""
        self._listed_bad: set[Key | None] | None = None
        self._relist: Relist | None = None
        """The list in progress: where listed objects go as their page is parsed."""
        self._listed = self._writes = 0
        self._namespaces = options.namespaces

    @property
    def state(self) -> metrics.InformerState:
        return metrics.InformerState(
            self.kind.resource, self.synced.is_set(), self.stale, self.last_heard
        )

    # -- the loops -----------------------------------------------------------------

    async def run(self) -> None:
        """Reconnect forever; returns only by cancellation."""
        gone_in_a_row = 0
        while True:
            try:
                if self.resource_version is None:
                    await self._list("start" if not self.synced.is_set() else "gone")
                ended = await self._watch()
                gone_in_a_row = 0
                self.metrics.restarts.labels(self.kind.resource, ended).inc()
            except client.Gone as exc:
                # History we needed is gone: list again, never skip to "now".
                log.info("%s: %s; listing again", self.kind.resource, exc.message or "410 Gone")
                self.metrics.errors.labels(self.kind.resource, "Gone").inc()
                self.resource_version = None
                gone_in_a_row += 1
                if gone_in_a_row > 1:  # a server that keeps saying 410: do not spin
                    await asyncio.sleep(self.options.backoff.delay(gone_in_a_row - 2))
            except (client.ApiError, client.Unreachable) as exc:
                await self._failed(exc)

    async def _failed(self, exc: client.ApiError | client.Unreachable) -> None:
        self.stale = True
        self.metrics.errors.labels(self.kind.resource, type(exc).__name__).inc()
        retry_after = exc.retry_after if isinstance(exc, client.ApiError) else None
        delay = self.options.backoff.delay(self.failures, retry_after)
        self.failures += 1
        self._reports.failed(self.kind.resource, exc, delay)
        if self.on_failure is not None:
            self.on_failure()
        await asyncio.sleep(delay)

    def _recovered(self) -> None:
        self._reports.recovered(self.kind.resource)
        self.failures = 0
        self.stale = False
        self.last_heard = time.monotonic()

    async def _list(self, reason: str) -> None:
        """List every page into the store as it arrives, then sweep what is gone."""
        listed_bad: set[Key | None] = set()
        self._listed_bad = listed_bad
        self._relist = self.store.relist(self.kind.field)
        self._listed = self._writes = 0
        try:
            listing: client.Listing[Any] = await self.api.list(
                self.kind.path,
                self._convert,
                self.params,
                self.options.page_size,
                shape=self.kind.shape,
            )
            # Sorting a pod index is CPU-bound; a thread leaves the loop free to answer.
            await asyncio.to_thread(self._relist.prepare)
            self._writes += self._relist.finish()
        finally:
            self._listed_bad = None
            self._relist = None
        # Forget complaints about objects that are gone (or fine) now.
        self._complaints = {k: v for k, v in self._complaints.items() if k in listed_bad}
        self.metrics.relists.labels(self.kind.resource, reason).inc()
        self.resource_version = listing.resource_version
        log.info(
            "%s: listed %d in %d page(s) at resourceVersion %s (%d changes)",
            self.kind.resource, self._listed, listing.pages, listing.resource_version,
            self._writes,
        )  # fmt: skip
        if self.on_relisted is not None:
            self.on_relisted()
        self._recovered()
        self.stale = True  # until the watch is open
        self.synced.set()

    async def _watch(self) -> str:
        assert self.resource_version is not None
        timeout = int(self.options.watch_timeout * (1.0 + random.random()))
        stream = await self.api.watch(
            self.kind.path,
            self.resource_version,
            self.params,
            timeout_seconds=timeout,
            inactivity=self.options.inactivity_timeout,
            shape=self.kind.shape,
        )
        async with stream:
            self._recovered()
            async for event in stream:
                self._apply(event)
        return stream.ended

    # -- objects -------------------------------------------------------------------

    def _wanted(self, meta: Mapping[str, Any]) -> bool:
        if not self._namespaces:
            return True
        ns = meta.get("name") if self.kind is NAMESPACES else meta.get("namespace")
        return ns in self._namespaces

    def _convert(self, raw: Any) -> None:
        """Write a listed item, shrunk, to the store; the raw dict is dropped after.

        An item that fails to shrink keeps the version the store holds (it is marked,
        so the sweep does not delete it) instead of deleting it. Returns None: nothing
        is collected, the store is the only copy.
        """
        relist = self._relist
        assert relist is not None  # set by _list around the call that calls this
        meta = _metadata(raw)
        if meta is not None and not self._wanted(meta):
            return None
        shrunk = self._shrink(raw, meta)
        if shrunk is not None:
            self._listed += 1
            self._writes += relist.put(shrunk)
            return None
        key = _key(meta)
        if key is not None and self.kind.get(self.store, *key) is not None:
            self._listed += 1
            relist.mark_key(*key)
        return None

    def _shrink(self, raw: Any, meta: Mapping[str, Any] | None) -> Any:
        """The shrunk object, or None after reporting why it cannot be served."""
        key = _key(meta)
        try:
            obj = self.kind.shrink(raw)
        except shrink.Invalid as exc:
            self._skipped(raw, key, str(exc))
            return None
        self._complaints.pop(key, None)
        return obj

    def _skipped(self, raw: object, key: Key | None, message: str) -> None:
        """Count a skipped object; log it unless this object last had the same problem
        (so a relist, or a new version broken the same way, adds no line)."""
        self.metrics.invalid.labels(self.kind.resource).inc()
        if self._listed_bad is not None:
            self._listed_bad.add(key)
        # Without metadata there is no name to tell objects apart: their text does.
        seen = message if key is not None else f"{message}: {repr(raw)[:200]}"
        if self._complaints.get(key) == seen:
            return
        self._complaints[key] = seen
        if key is None:
            log.warning("%s: skipped an object without usable metadata: %s",
                        self.kind.resource, seen)  # fmt: skip
            return
        kept = self.kind.get(self.store, *key) is not None
        log.warning("%s %s: skipped: %s%s", self.kind.resource, "/".join(filter(None, key)),
                    message, "; keeping its last good version" if kept else "")  # fmt: skip

    def _apply(self, event: client.WatchEvent) -> None:
        obj = event.object
        meta = _metadata(obj)
        self.last_heard = time.monotonic()
        self.metrics.events.labels(self.kind.resource, event.type).inc()
        if event.type != "BOOKMARK" and (meta is None or self._wanted(meta)):
            changed = self._write(event.type, obj, meta)
            if changed and self.on_change is not None:
                self.on_change(event.received)
        if version := _version(meta):
            self.resource_version = version

    def _write(self, kind: str, obj: Any, meta: Mapping[str, Any] | None) -> bool:
        """Apply one ADDED, MODIFIED or DELETED event; True if the store changed."""
        key = _key(meta)
        if key is None:  # nothing to put, nothing to delete: report and move on
            self._skipped(obj, None, "metadata: not a map with a name")
            return False
        if kind == "DELETED":
            self._complaints.pop(key, None)
            return self.kind.delete(self.store, *key)
        shrunk = self._shrink(obj, meta)
        if shrunk is None:
            return False  # the last good version (if any) stays
        changed = self.kind.put(self.store, shrunk)
        if self.kind.field == "slices" and meta is not None:
            self._programming(meta, shrunk)
        return changed

    def _programming(self, meta: Mapping[str, Any], eps: Any) -> None:
        """CoreDNS's dns_programming_duration: only slices of headless services with a
        selector carry the controller's trigger time and are measured (as CoreDNS does)."""
        triggered = _trigger_time(meta)
        if triggered is None:
            return
        svc = self.store.get_service(eps.namespace, eps.service)
        if svc is None or not svc.headless or svc.selector is None:
            return
        self.metrics.programming.labels("headless_with_selector").observe(
            max(0.0, time.time() - triggered)
        )


class Informers:
    """Every informer kdns needs, run together; the one object the runtime holds.

    ``synced`` is set (and ``store.mark_synced()`` called) once every resource has
    completed its first list. With a ``persister``, the last good state is written to
    disk after sync and on change, and read back when the API server cannot be reached
    at start, so a restart during an outage serves that instead of SERVFAIL.
    """

    def __init__(
        self,
        store: Store,
        api: client.Client,
        options: Options | None = None,
        *,
        stats: metrics.Metrics | None = None,
        persister: snapshot.Persister | None = None,
        on_relisted: Callable[[], object] | None = None,
    ) -> None:
        """``on_relisted`` is called after every completed list (the server gives the
        freed heap back to the kernel there: a relist frees a cluster's worth of JSON)."""
        self.store = store
        self.api = api
        self.options = options or Options()
        self.metrics = stats or metrics.Metrics()
        self.persister = persister
        self.synced = asyncio.Event()
        self._failed = asyncio.Event()
        self._pending: float | None = None
        opts = self.options
        slices = SLICES
        if opts.endpoint_fields != shrink.ALL_ENDPOINT_FIELDS:
            slices = dataclasses.replace(
                SLICES, shrink=shrink.endpoint_slice_keeping(opts.endpoint_fields)
            )
        kinds = [(NAMESPACES, opts.namespace_labels), (SERVICES, opts.labels),
                 (slices, opts.labels)]  # fmt: skip
        if opts.pods:
            kinds.append((POD_ADDRESSES, None))
        if opts.imports:
            kinds.append((SERVICE_IMPORTS, None))
        self.informers = {
            kind.resource: Informer(
                kind,
                store,
                api,
                opts,
                self.metrics,
                selector=selector,
                on_change=self._changed,
                on_failure=self._failed.set,
                on_relisted=on_relisted,
            )
            for kind, selector in kinds
        }
        self.metrics.track(self._states)
        if api.on_response is None:
            api.on_response = self.metrics.response_hook(urlsplit(api.connection.base_url).netloc)

    def _states(self) -> Iterable[metrics.InformerState]:
        return [informer.state for informer in self.informers.values()]

    @property
    def stale(self) -> bool:
        """True while any watch is down: answers may lag the cluster."""
        return any(informer.stale for informer in self.informers.values())

    # -- propagation ---------------------------------------------------------------

    def _changed(self, received: float) -> None:
        if self._pending is None:
            self._pending = received

    def compiled(self, _seconds: float = 0.0) -> None:
        """The compiler's ``observe`` hook: the answers now reflect every event so far.

        Observes ``kdns_propagation_seconds`` from the receipt of the oldest event
        (that changed the store) not yet compiled, so the figure includes parsing,
        shrinking, the store write, the wait for the compiler and the compile.
        """
        if self._pending is not None:
            self.metrics.propagation.observe(time.perf_counter() - self._pending)
            self._pending = None

    # -- running -------------------------------------------------------------------

    async def run(self) -> None:
        """Run every informer (and the snapshot tasks) until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                for name, informer in self.informers.items():
                    group.create_task(informer.run(), name=f"informer-{name}")
                group.create_task(self._await_sync(), name="informers-synced")
                if self.persister is not None:
                    group.create_task(self._fallback(self.persister), name="snapshot-fallback")
                    group.create_task(self.persister.run(self.synced), name="snapshot-writer")
        finally:
            await self.api.close()

    async def _await_sync(self) -> None:
        started = time.perf_counter()
        for informer in self.informers.values():
            await informer.synced.wait()
        self.synced.set()
        self.store.mark_synced()
        log.info(
            "synced with the API server in %.2fs: %d services, %d endpoint slices, "
            "%d namespaces",
            time.perf_counter() - started, len(self.store.services), len(self.store.slices),
            len(self.store.namespaces),
        )  # fmt: skip

    async def _fallback(self, persister: snapshot.Persister) -> None:
        """Load the snapshot if the first sync fails or takes longer than startup_timeout."""
        waits = [asyncio.ensure_future(self.synced.wait()),
                 asyncio.ensure_future(self._failed.wait())]  # fmt: skip
        try:
            await asyncio.wait(
                waits, timeout=self.options.startup_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waits:
                waiter.cancel()
        if self.synced.is_set():
            return
        loaded = await asyncio.to_thread(persister.load)
        if loaded is None:
            log.warning("API server not synced and no usable snapshot at %s: cluster names "
                        "get SERVFAIL until it answers", persister.path)  # fmt: skip
            return
        parts: dict[str, Sequence[Any]] = {
            "namespaces": loaded.namespaces,
            "services": loaded.services,
            "slices": loaded.slices,
        }
        kinds = {i.kind.field for i in self.informers.values() if not i.synced.is_set()}
        self.store.replace(**{k: v for k, v in parts.items() if k in kinds})
        persister.serving(loaded)
        self.store.mark_synced()
        log.warning(
            "API server unreachable: serving the snapshot written %s (%.0fs ago): "
            "%d services, %d endpoint slices, %d namespaces",
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(loaded.written)),
            time.time() - loaded.written, len(loaded.services), len(loaded.slices),
            len(loaded.namespaces),
        )  # fmt: skip
        await self.synced.wait()
        persister.serving(None)
        log.info("API server synced: the snapshot is no longer served")
