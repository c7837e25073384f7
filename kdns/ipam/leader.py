"""One allocating replica at a time: a ``coordination.k8s.io/v1`` Lease, as client-go does it.

kdns runs several replicas behind the webhook Service, and the API server calls any of
them. Two replicas picking from their own copies of the pool would hand out the same
address to two Services created in the same second, so exactly one replica (the holder
of the Lease) picks; the others forward to it. The election is client-go's
``leaderelection`` with a ``LeaseLock``, not anything of kdns's own:

* the Lease carries ``holderIdentity``, ``leaseDurationSeconds``, ``acquireTime``,
  ``renewTime`` and ``leaseTransitions``; every write is a PUT guarded by the
  resourceVersion read just before, so of two replicas racing only one write lands;
* a replica judges another's Lease expired by *its own* monotonic clock, counting from
  when it last saw the record change, never by comparing ``renewTime`` with its wall
  clock: clocks of different nodes disagree, durations measured locally do not;
* the holder renews every ``retry_period`` and stops believing it leads once renewals
  have failed for ``renew_deadline`` (shorter than the lease duration), so it gives up
  before anyone else may take over;
* on shutdown the holder releases the Lease (empty holder, one-second duration) so the
  next replica takes over at once instead of after a full lease duration.

The identity carries the address the leader's webhook listens on
(``NAME_HOST:PORT``), which is all a follower needs to forward to it.

:class:`Rest` is the small JSON client this module and :mod:`kdns.ipam.claims` share:
single-object GET/POST/PUT/DELETE over :class:`kdns.cluster.kube.config.Connection`, which the
list/watch client (:mod:`kdns.cluster.kube.client`) deliberately does not offer.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from kdns.cluster.kube import client, config

log = logging.getLogger(__name__)

Raw = dict[str, Any]

LEASE_API = "/apis/coordination.k8s.io/v1"
MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"
"""metav1.MicroTime's wire format: RFC 3339 with microseconds, always UTC."""

DEFAULT_LEASE_DURATION = 15.0
DEFAULT_RENEW_DEADLINE = 10.0
DEFAULT_RETRY_PERIOD = 2.0
"""client-go's defaults (and kube-controller-manager's)."""


class NotFound(client.ApiError):
    """404: the object does not exist."""


class Conflict(client.ApiError):
    """409: AlreadyExists on create, Conflict on a stale resourceVersion."""


def microtime(now: datetime.datetime | None = None) -> str:
    moment = now if now is not None else datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime(MICROTIME)


def parse_microtime(text: str) -> datetime.datetime | None:
    """Read a MicroTime (or a plain RFC 3339 Time, which older writers send)."""
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class Rest:
    """Single-object JSON verbs against the API server, one aiohttp session.

    Errors come back as :class:`NotFound`, :class:`Conflict`, the classes of
    :func:`kdns.cluster.kube.client.error_for`, or :class:`kdns.cluster.kube.client.Unreachable`.
    """

    def __init__(self, connection: config.Connection, *, timeout: float = 5.0) -> None:
        self.connection = connection
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.connection.ssl),
                headers={"Accept": "application/json", "User-Agent": "kdns (ipam)"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Raw:
        url = self.connection.base_url + path
        data = None if body is None else json.dumps(body, separators=(",", ":"))
        for attempt in (1, 2):
            headers = dict(await self.connection.credentials.headers())
            if data is not None:
                headers["Content-Type"] = "application/json"
            try:
                async with self._get_session().request(
                    method,
                    url,
                    data=data,
                    params=params,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.timeout),
                    server_hostname=self.connection.server_hostname,
                ) as response:
                    raw = await response.read()
                    code = response.status
                    response_headers = response.headers
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise client.Unreachable(f"{method} {path}: {exc or type(exc).__name__}") from exc
            try:
                parsed = json.loads(raw) if raw else {}
            except ValueError:
                parsed = {}
            if not isinstance(parsed, dict):
                parsed = {}
            if code < 300:
                return parsed
            if code == 401 and attempt == 1:
                self.connection.credentials.invalidate()
                continue
            reason, message = str(parsed.get("reason") or ""), str(parsed.get("message") or "")
            if code == 404:
                raise NotFound(code, reason, message)
            if code == 409:
                raise Conflict(code, reason, message)
            raise client.error_for(code, parsed, response_headers)
        raise AssertionError("unreachable")

    async def get(self, path: str) -> Raw:
        return await self.request("GET", path)

    async def create(self, path: str, obj: Mapping[str, Any]) -> Raw:
        return await self.request("POST", path, obj)

    async def replace(self, path: str, obj: Mapping[str, Any]) -> Raw:
        return await self.request("PUT", path, obj)

    async def delete(self, path: str, resource_version: str | None = None) -> Raw:
        options: Raw = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if resource_version:
            options["preconditions"] = {"resourceVersion": resource_version}
        return await self.request("DELETE", path, options)

    async def list(self, path: str, params: Mapping[str, str] | None = None) -> Raw:
        return await self.request("GET", path, params=params)


def lease_path(namespace: str, name: str = "") -> str:
    base = f"{LEASE_API}/namespaces/{namespace}/leases"
    return f"{base}/{name}" if name else base


@dataclass(frozen=True, slots=True)
class Record:
    """client-go's LeaderElectionRecord, as a Lease spec holds it."""

    holder: str = ""
    duration: int = 0
    acquire_time: str = ""
    renew_time: str = ""
    transitions: int = 0

    @classmethod
    def from_lease(cls, lease: Mapping[str, Any]) -> Record:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=str(spec.get("acquireTime") or ""),
            renew_time=str(spec.get("renewTime") or ""),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def spec(self) -> Raw:
        spec: Raw = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.duration,
            "leaseTransitions": self.transitions,
        }
        if self.acquire_time:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time:
            spec["renewTime"] = self.renew_time
        return spec


def identity(name: str, host: str, port: int) -> str:
    """``NAME_HOST:PORT``: unique per replica and the address followers forward to."""
    shown = f"[{host}]" if ":" in host else host
    return f"{name}_{shown}:{port}"


def address_of(holder: str) -> str | None:
    """``HOST:PORT`` from an identity made by :func:`identity`; None for foreign ones."""
    _, sep, address = holder.rpartition("_")
    if not sep:
        return None
    host, colon, port = address.rpartition(":")
    if not colon or not host or not port.isdigit():
        return None
    return address


class Elector:
    """Take part in one Lease's election; :attr:`is_leader` says whether to allocate now."""

    def __init__(
        self,
        rest: Rest,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = DEFAULT_LEASE_DURATION,
        renew_deadline: float = DEFAULT_RENEW_DEADLINE,
        retry_period: float = DEFAULT_RETRY_PERIOD,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("leader election: need retry_period < renew_deadline < lease_duration")
        self.rest = rest
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._clock = clock
        self._on_change = on_change
        self._observed = Record()
        self._observed_at = 0.0
        self._renewed_at: float | None = None  # clock() before the last successful write
        self._leading = False
        self.transitions_seen = 0

    # -- what others read -------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """Holding the Lease, with the last renewal recent enough that nobody can have
        taken it over (``renew_deadline`` < the duration others wait)."""
        return (
            self._leading
            and self._renewed_at is not None
            and self._clock() < self._renewed_at + self.renew_deadline
        )

    @property
    def leader(self) -> str | None:
        """The identity holding the Lease as last observed, None when vacant or expired."""
        if self.is_leader:
            return self.identity
        record = self._observed
        if not record.holder or record.holder == self.identity:
            return None
        if self._clock() >= self._observed_at + record.duration:
            return None
        return record.holder

    def leader_address(self) -> str | None:
        holder = self.leader
        return address_of(holder) if holder else None

    # -- one round --------------------------------------------------------------------

    async def try_acquire_or_renew(self) -> bool:
        """One attempt, as client-go's ``tryAcquireOrRenew``; True when we hold the Lease."""
        started = self._clock()
        now = microtime()
        path = lease_path(self.namespace, self.name)
        mine = Record(self.identity, round(self.lease_duration), now, now, 0)
        try:
            lease = await self.rest.get(path)
        except NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": mine.spec(),
            }
            try:
                await self.rest.create(lease_path(self.namespace), body)
            except Conflict:
                return False  # another replica created it first
            self._observe(mine, started)
            self._renewed_at = started
            return True
        record = Record.from_lease(lease)
        if record != self._observed:
            self._observe(record, started)
        held_by_other = record.holder and record.holder != self.identity
        if held_by_other and self._clock() < self._observed_at + record.duration:
            return False
        if record.holder == self.identity:
            mine = Record(
                self.identity, mine.duration, record.acquire_time or now, now, record.transitions
            )
        else:
            mine = Record(self.identity, mine.duration, now, now, record.transitions + 1)
        lease = dict(lease)
        lease["spec"] = {**(lease.get("spec") or {}), **mine.spec()}
        try:
            await self.rest.replace(path, lease)  # metadata.resourceVersion guards the write
        except Conflict:
            return False
        self._observe(mine, started)
        self._renewed_at = started
        return True

    def _observe(self, record: Record, at: float) -> None:
        if record.holder != self._observed.holder:
            self.transitions_seen += 1
        self._observed = record
        self._observed_at = at

    async def _attempt(self) -> bool:
        try:
            return await self.try_acquire_or_renew()
        except (client.ApiError, client.Unreachable) as exc:
            log.warning("ipam leader election: lease %s/%s: %s", self.namespace, self.name, exc)
            return False

    def _set_leading(self, leading: bool) -> None:
        if leading != self._leading:
            self._leading = leading
            log.info(
                "ipam leader election: %s %s lease %s/%s",
                self.identity,
                "acquired" if leading else "lost",
                self.namespace,
                self.name,
            )
            if self._on_change is not None:
                self._on_change(leading)

    # -- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Acquire, renew until a renewal deadline passes, start over; release on cancel."""
        try:
            while True:
                await self._acquire()
                self._set_leading(True)
                await self._renew_until_lost()
                self._set_leading(False)
        finally:
            if self._leading:
                self._set_leading(False)
                await asyncio.shield(self._release())

    async def _acquire(self) -> None:
        """Try every retry period (jittered, as client-go's JitterUntil) until we hold it."""
        while True:
            if await self._attempt():
                return
            await asyncio.sleep(self.retry_period * (1.0 + random.random() * 0.2))

    async def _renew_until_lost(self) -> None:
        while True:
            await asyncio.sleep(self.retry_period)
            assert self._renewed_at is not None
            deadline = self._renewed_at + self.renew_deadline
            while True:
                if await self._attempt():
                    break
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return
                await asyncio.sleep(min(self.retry_period, remaining))

    async def _release(self) -> None:
        """Hand the Lease back (client-go's ReleaseOnCancel); best effort, bounded."""
        path = lease_path(self.namespace, self.name)
        try:
            async with asyncio.timeout(self.retry_period):
                lease = await self.rest.get(path)
                if Record.from_lease(lease).holder != self.identity:
                    return
                now = microtime()
                released = Record("", 1, now, now, self._observed.transitions)
                lease["spec"] = {**(lease.get("spec") or {}), **released.spec()}
                await self.rest.replace(path, lease)
        except (client.ApiError, client.Unreachable, TimeoutError) as exc:
            log.info("ipam leader election: could not release the lease: %s", exc)
