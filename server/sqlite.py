"""Shared SQLite plumbing: open a file in WAL mode, migrate its schema, run work off the loop.

A store keeps one connection, which a lock serialises, and every call runs in a worker thread
(``asyncio.to_thread``) so the event loop never waits on disk. Connections are in autocommit
mode (``isolation_level=None``): a single statement commits at once, and several statements
that belong together use an explicit ``BEGIN IMMEDIATE`` ... ``COMMIT``.

Migrations: each entry of a store's list is one step (statements separated by ``;``), and the
``schema_version`` table stores how many steps have run. Append new steps; never edit a step
that has shipped.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def connect(
    path: Path,
    *,
    busy_timeout: float,
    migrations: Sequence[str] = (),
    name: str = "",
    foreign_keys: bool = False,
) -> sqlite3.Connection:
    """Open an autocommit WAL connection, creating the folder, and apply pending migrations.

    ``busy_timeout`` is how long a write waits for another process's lock, and ``name`` names
    the database in log lines and errors. This blocks, so call it in a worker thread.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        if foreign_keys:
            connection.execute("PRAGMA foreign_keys=ON")
        if migrations:
            migrate(connection, migrations, name)
    except BaseException:
        connection.close()
        raise
    return connection


def migrate(connection: sqlite3.Connection, migrations: Sequence[str], name: str) -> None:
    """Run the steps past the stored ``schema_version`` in one transaction."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = connection.execute("SELECT version FROM schema_version").fetchone()
        current = 0 if row is None else int(row[0])
        if row is None:
            connection.execute("INSERT INTO schema_version (version) VALUES (0)")
        if current > len(migrations):
            raise RuntimeError(
                f"{name} database schema version {current} is newer than this program "
                f"({len(migrations)}); upgrade ebas-login"
            )
        for version, step in enumerate(migrations[current:], start=current + 1):
            for statement in _statements(step):
                connection.execute(statement)
            connection.execute("UPDATE schema_version SET version = ?", (version,))
            log.info("%s database migrated to schema version %d", name, version)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    # executescript() would commit the open transaction, so run a step's statements one by one.
    return [s.strip() for s in script.split(";") if s.strip()]


class Database:
    """One connection behind a lock; ``run`` calls work on it in a worker thread."""

    def __init__(self, connection: sqlite3.Connection, name: str) -> None:
        self._connection: sqlite3.Connection | None = connection
        self._lock = threading.Lock()
        self._name = name

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            with self._lock:
                if self._connection is None:
                    raise RuntimeError(f"{self._name} is closed")
                return work(self._connection)

        return await asyncio.to_thread(call)

    async def close(self) -> None:
        def close() -> None:
            with self._lock:
                if self._connection is not None:
                    self._connection.close()
                    self._connection = None

        await asyncio.to_thread(close)
