"""Card registrations: certificate (issuer + serial number) → national ID number, in SQLite.

A MOICA certificate names its holder but carries only the last 4 digits of the ID number, so
the full number comes from this table. Rows are added by ``ebas-login card enroll`` or by a
signed-in user on the registration page. Every call runs in a worker thread on one connection
that a lock serialises (``server.sqlite``); each write is one statement, committed at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from server.card.moica import holder_name
from server.sqlite import Database, connect

BUSY_TIMEOUT_SECONDS = 5.0  # how long a write waits for another process (the enroll command)

SCHEMA = """
CREATE TABLE IF NOT EXISTS card_registrations (
    issuer_hash TEXT NOT NULL,
    serial TEXT NOT NULL,
    issuer TEXT NOT NULL,
    id_number TEXT NOT NULL,
    holder_name TEXT NOT NULL,
    not_after TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    registered_by TEXT NOT NULL,
    PRIMARY KEY (issuer_hash, serial)
);
CREATE INDEX IF NOT EXISTS card_registrations_id ON card_registrations (id_number);
"""


@dataclass(frozen=True)
class Registration:
    issuer: str  # RFC 4514 text, for people reading the table
    serial: str  # lower-case hex
    id_number: str
    holder_name: str
    registered_at: str
    registered_by: str  # "cli" or "portal:<eBAS account>"


def certificate_key(certificate: x509.Certificate) -> tuple[str, str]:
    """Return (SHA-256 of the issuer Name DER, serial in hex): what identifies a certificate."""
    issuer_hash = hashlib.sha256(certificate.issuer.public_bytes()).hexdigest()
    return issuer_hash, format(certificate.serial_number, "x")


class CardRegistry:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = Database(connection, "card registry")

    @classmethod
    async def open(cls, path: Path) -> CardRegistry:
        return cls(await asyncio.to_thread(_connect, path))

    async def close(self) -> None:
        await self._db.close()

    async def find(self, certificate: x509.Certificate) -> Registration | None:
        issuer_hash, serial = certificate_key(certificate)

        def find(connection: sqlite3.Connection) -> Registration | None:
            row = connection.execute(
                "SELECT issuer, serial, id_number, holder_name, registered_at, registered_by"
                " FROM card_registrations WHERE issuer_hash = ? AND serial = ?",
                (issuer_hash, serial),
            ).fetchone()
            return Registration(*row) if row else None

        return await self._db.run(find)

    async def register(
        self, certificate: x509.Certificate, id_number: str, *, registered_by: str
    ) -> Registration:
        """Map the certificate to ``id_number``, replacing an earlier mapping of it."""
        issuer_hash, serial = certificate_key(certificate)
        registration = Registration(
            issuer=certificate.issuer.rfc4514_string(),
            serial=serial,
            id_number=id_number,
            holder_name=holder_name(certificate),
            registered_at=datetime.now(UTC).isoformat(timespec="seconds"),
            registered_by=registered_by,
        )

        def write(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT OR REPLACE INTO card_registrations (issuer_hash, serial, issuer,"
                " id_number, holder_name, not_after, registered_at, registered_by)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    issuer_hash,
                    serial,
                    registration.issuer,
                    id_number,
                    registration.holder_name,
                    certificate.not_valid_after_utc.isoformat(),
                    registration.registered_at,
                    registered_by,
                ),
            )

        await self._db.run(write)
        return registration

    async def count_for(self, id_number: str) -> int:
        def count(connection: sqlite3.Connection) -> int:
            row = connection.execute(
                "SELECT COUNT(*) FROM card_registrations WHERE id_number = ?", (id_number,)
            ).fetchone()
            return int(row[0])

        return await self._db.run(count)


def _connect(path: Path) -> sqlite3.Connection:
    connection = connect(path, busy_timeout=BUSY_TIMEOUT_SECONDS)
    connection.executescript(SCHEMA)
    return connection


def load_certificate_file(path: Path) -> x509.Certificate:
    """Read one certificate from a PEM or DER file (blocking I/O)."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)
