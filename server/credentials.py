"""Stored login credentials: eCPA account passwords and NHI card registrations, in SQLite.

The file (``credentials.sqlite3`` in the data directory) is separate from the eBAS account
directory because it contains secrets (argon2id hashes) that the directory import never touches.
Every database call runs in a worker thread on one connection that a lock serialises. The
schema is migrated on open (``server.sqlite``): each entry of ``MIGRATIONS`` is one step and
``schema_version`` stores how many have run. Append new steps; never edit a step that has shipped.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from server.sqlite import Database, connect

log = logging.getLogger(__name__)

FILE_NAME = "credentials.sqlite3"
BUSY_TIMEOUT_SECONDS = 5.0  # how long a write waits for another process's lock (the admin CLI)

MIGRATIONS: list[str] = [
    # 1: one password per eCPA account name (stored lower-case), and one registration per card.
    """
    CREATE TABLE password_credentials (
        account TEXT PRIMARY KEY,
        id_number TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        changed_at REAL NOT NULL,
        must_change INTEGER NOT NULL CHECK (must_change IN (0, 1)),
        unlocked_at REAL
    );
    CREATE INDEX password_credentials_id_number ON password_credentials (id_number);
    CREATE TABLE nhi_cards (
        card_number TEXT PRIMARY KEY,
        id_number TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        holder_name TEXT NOT NULL DEFAULT '',
        registered_at REAL NOT NULL
    );
    """,
]


@dataclass(frozen=True, slots=True)
class PasswordCredential:
    account: str
    id_number: str
    password_hash: str
    changed_at: float  # epoch seconds of the last password change
    must_change: bool  # set by an administrator: change before the next sign-in completes
    unlocked_at: float | None = None  # epoch seconds of the last administrator unlock


@dataclass(frozen=True, slots=True)
class CardRegistration:
    card_number: str
    id_number: str
    password_hash: str  # argon2id hash of the registered password (註冊密碼)
    holder_name: str
    registered_at: float


class CredentialStore:
    """Password credentials and NHI card registrations; open with ``CredentialStore.open``."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = Database(connection, "credential store")
        self.path = path

    @classmethod
    async def open(cls, path: Path) -> CredentialStore:
        connection = await asyncio.to_thread(_connect_and_migrate, path)
        log.info("credential store opened at %s", path)
        return cls(connection, path)

    async def close(self) -> None:
        await self._db.close()

    # -- passwords ---------------------------------------------------------------------------------

    async def find_password(self, account: str) -> PasswordCredential | None:
        row = await self._db.run(
            lambda c: c.execute(
                "SELECT account, id_number, password_hash, changed_at, must_change, unlocked_at "
                "FROM password_credentials WHERE account = ?",
                (account,),
            ).fetchone()
        )
        if row is None:
            return None
        return PasswordCredential(row[0], row[1], row[2], float(row[3]), bool(row[4]), row[5])

    async def set_password(
        self,
        account: str,
        id_number: str,
        password_hash: str,
        *,
        changed_at: float,
        must_change: bool,
    ) -> None:
        """Create or replace the password of an account."""
        await self._db.run(
            lambda c: c.execute(
                """INSERT INTO password_credentials
                       (account, id_number, password_hash, changed_at, must_change)
                   VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (account) DO UPDATE SET id_number = excluded.id_number,
                       password_hash = excluded.password_hash, changed_at = excluded.changed_at,
                       must_change = excluded.must_change""",
                (account, id_number, password_hash, changed_at, int(must_change)),
            )
        )

    async def replace_hash(self, account: str, password_hash: str) -> None:
        """Store a rehash of the same password (new argon2 parameters); the age is unchanged."""
        await self._db.run(
            lambda c: c.execute(
                "UPDATE password_credentials SET password_hash = ? WHERE account = ?",
                (password_hash, account),
            )
        )

    async def require_change(self, account: str) -> bool:
        """Force a password change at the next login; return False when the account is unknown."""
        cursor = await self._db.run(
            lambda c: c.execute(
                "UPDATE password_credentials SET must_change = 1 WHERE account = ?", (account,)
            )
        )
        return cursor.rowcount > 0

    async def mark_unlocked(self, account: str, at: float) -> bool:
        """Record an administrator unlock; logins honour it even on another node or process."""
        cursor = await self._db.run(
            lambda c: c.execute(
                "UPDATE password_credentials SET unlocked_at = ? WHERE account = ?", (at, account)
            )
        )
        return cursor.rowcount > 0

    async def count_passwords(self) -> int:
        return await self._db.run(
            lambda c: int(c.execute("SELECT count(*) FROM password_credentials").fetchone()[0])
        )

    # -- NHI cards -------------------------------------------------------------------------------

    async def find_card(self, card_number: str) -> CardRegistration | None:
        row = await self._db.run(
            lambda c: c.execute(
                "SELECT card_number, id_number, password_hash, holder_name, registered_at "
                "FROM nhi_cards WHERE card_number = ?",
                (card_number,),
            ).fetchone()
        )
        if row is None:
            return None
        return CardRegistration(row[0], row[1], row[2], row[3], float(row[4]))

    async def register_card(self, registration: CardRegistration) -> None:
        """Create or replace the registration of a card."""
        r = registration
        await self._db.run(
            lambda c: c.execute(
                """INSERT INTO nhi_cards
                       (card_number, id_number, password_hash, holder_name, registered_at)
                   VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (card_number) DO UPDATE SET id_number = excluded.id_number,
                       password_hash = excluded.password_hash, holder_name = excluded.holder_name,
                       registered_at = excluded.registered_at""",
                (r.card_number, r.id_number, r.password_hash, r.holder_name, r.registered_at),
            )
        )

    async def count_cards(self) -> int:
        return await self._db.run(
            lambda c: int(c.execute("SELECT count(*) FROM nhi_cards").fetchone()[0])
        )


def _connect_and_migrate(path: Path) -> sqlite3.Connection:
    connection = connect(
        path, busy_timeout=BUSY_TIMEOUT_SECONDS, migrations=MIGRATIONS, name="credential"
    )
    path.chmod(0o600)  # password hashes: readable by the service user only
    return connection
