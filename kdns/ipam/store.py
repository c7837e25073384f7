"""Sticky addresses for local mode: namespace/name -> clusterIPs, in a SQLite file.

Local mode is the authority for its addresses, and manifests are never rewritten, so
without a memory of its own a service would get a new address on every restart.
Records outlive the Service (a deleted then recreated Service asks for its old
address back), and an address belongs to at most one record: whoever was assigned it
last owns the memory of it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from types import TracebackType

Key = tuple[str, str]

_SCHEMA_VERSION = 1
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
        self._db = sqlite3.connect(target, isolation_level=None)
        if target != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
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
        with self._transaction():
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

    def forget(self, key: Key) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM addresses WHERE namespace=? AND name=?", key)

    def _transaction(self) -> _Transaction:
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
