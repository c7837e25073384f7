"""Sticky addresses for local mode: namespace/name -> clusterIPs, in a SQLite file.

Local mode is the authority for its addresses, and manifests are never rewritten, so
without a memory of its own a service would get a new address on every restart.
Records outlive the Service (a deleted then recreated Service asks for its old
address back), and an address belongs to at most one record: whoever was assigned it
last owns the memory of it.

The store is also the arbiter between kdns processes that share it (replicas on one
folder): a dynamic pick is only granted by :meth:`Store.claim`, an insert under the
address's PRIMARY KEY inside a ``BEGIN IMMEDIATE`` transaction. An address recorded for
another Service that is still present is a lost claim; the caller moves on to the next
free address, and every process ends up agreeing on who holds what.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Container, Iterable
from types import TracebackType

Key = tuple[str, str]

_SCHEMA_VERSION = 1
_BUSY_TIMEOUT = 10.0  # seconds a writer waits for another process's transaction
_SCHEMA = """
CREATE TABLE IF NOT EXISTS addresses (
    ip        TEXT NOT NULL PRIMARY KEY,
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    position  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS addresses_by_service ON addresses (namespace, name);
"""


class Store:
    """A small SQLite store; ``":memory:"`` gives a throw-away one for tests."""

    __slots__ = ("_db",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        target = os.fspath(path)
        if target != ":memory:":
            parent = os.path.dirname(os.path.abspath(target))
            os.makedirs(parent, exist_ok=True)
        self._db = sqlite3.connect(target, isolation_level=None, timeout=_BUSY_TIMEOUT)
        if target != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            # A claim per new Service: NORMAL keeps WAL commits atomic without an fsync
            # each; a power loss can only forget the newest claims of processes that
            # died with it, which re-derive them from the folder on start.
            self._db.execute("PRAGMA synchronous=NORMAL")
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version not in (0, _SCHEMA_VERSION):
            raise ValueError(f"{target}: unknown ipam store schema version {version}")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    def get(self, key: Key) -> tuple[str, ...]:
        rows = self._db.execute(
            "SELECT ip FROM addresses WHERE namespace=? AND name=? ORDER BY position", key
        ).fetchall()
        return tuple(ip for (ip,) in rows)

    def all(self) -> dict[Key, tuple[str, ...]]:
        result: dict[Key, list[str]] = {}
        for namespace, name, ip in self._db.execute(
            "SELECT namespace, name, ip FROM addresses ORDER BY namespace, name, position"
        ):
            result.setdefault((namespace, name), []).append(ip)
        return {key: tuple(ips) for key, ips in result.items()}

    def put(self, key: Key, ips: Iterable[str]) -> None:
        """Remember ``ips`` for ``key``, taking them away from any other record."""
        self.put_many({key: tuple(ips)})

    def put_many(self, assignments: dict[Key, tuple[str, ...]]) -> None:
        """Several puts in one transaction: one fsync for a whole folder reload."""
        with self.transaction():
            for (namespace, name), ips in assignments.items():
                current = self.get((namespace, name))
                if current == tuple(ips):
                    continue
                self._db.execute(
                    "DELETE FROM addresses WHERE namespace=? AND name=?", (namespace, name)
                )
                for position, ip in enumerate(ips):
                    self._db.execute("DELETE FROM addresses WHERE ip=?", (ip,))
                    self._db.execute(
                        "INSERT INTO addresses (ip, namespace, name, position) VALUES (?,?,?,?)",
                        (ip, namespace, name, position),
                    )

    def claim(self, key: Key, ips: Iterable[str], live: Container[Key]) -> dict[str, Key]:
        """Record ``ips`` for ``key`` unless another live Service holds one of them.

        Call it inside :meth:`transaction`. Each address is inserted under the table's
        PRIMARY KEY; a conflict is granted only when the holder is ``key`` itself or a
        Service absent from ``live`` (a remembered record of a deleted Service). The
        addresses lost to a live holder are returned with their holders, and nothing is
        written then.
        """
        wanted = tuple(ips)
        lost = {ip: owner for ip in wanted if (owner := self._holder(ip)) not in (None, key)}
        lost = {ip: owner for ip, owner in lost.items() if owner in live}
        if lost:
            return lost
        if self.get(key) == wanted:
            return {}
        self._db.execute("DELETE FROM addresses WHERE namespace=? AND name=?", key)
        for position, ip in enumerate(wanted):
            try:
                self._insert(ip, key, position)
            except sqlite3.IntegrityError:  # a stale record of a deleted Service
                self._db.execute("DELETE FROM addresses WHERE ip=?", (ip,))
                self._insert(ip, key, position)
        return {}

    def _holder(self, ip: str) -> Key | None:
        row = self._db.execute("SELECT namespace, name FROM addresses WHERE ip=?", (ip,)).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def _insert(self, ip: str, key: Key, position: int) -> None:
        self._db.execute(
            "INSERT INTO addresses (ip, namespace, name, position) VALUES (?,?,?,?)",
            (ip, key[0], key[1], position),
        )

    def forget(self, key: Key) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM addresses WHERE namespace=? AND name=?", key)

    def transaction(self) -> _Transaction:
        """A write transaction: other processes sharing the file wait until it ends."""
        return _Transaction(self._db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT/ROLLBACK, so two kdns processes sharing a file serialise."""

    __slots__ = ("_db",)

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
