"""Device bindings of the embedded authority: ID number → enrolled phones, kept in SQLite.

Each device has an EC P-256 public key and a test mobile certificate from ``ca.TestCa``.
Re-enrolling an ID number adds a device, because a person may use the phone simulator page and
the CLI side by side. Past ``MAX_DEVICES_PER_ID`` devices the oldest one is removed. Every
SQLite call runs in a worker thread so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

DATABASE_FILE = "twfido-devices.sqlite3"
MAX_DEVICES_PER_ID = 5  # enough for a phone, the simulator page and a few CLI runs
MAX_PUBLIC_KEY_CHARS = 1024  # a P-256 SubjectPublicKeyInfo PEM is about 180 characters
MAX_SIGNATURE_CHARS = 512  # base64 of a DER P-256 signature is at most 96 characters
RAW_SIGNATURE_BYTES = 64  # r || s of P-256, as WebCrypto (IEEE P1363) produces it

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    id_number TEXT NOT NULL,
    device_name TEXT NOT NULL,
    public_key_pem TEXT NOT NULL,
    certificate_der BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS devices_by_id_number ON devices (id_number, created_at);
"""


@dataclass(frozen=True)
class Device:
    device_id: str
    id_number: str
    device_name: str
    public_key_pem: str
    certificate_der: bytes

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return load_public_key(self.public_key_pem)


class InvalidPublicKey(ValueError):
    """A public key that is not a PEM EC P-256 key."""


def load_public_key(pem: str) -> ec.EllipticCurvePublicKey:
    """Parse a PEM SubjectPublicKeyInfo and require an EC P-256 key."""
    if not isinstance(pem, str) or len(pem) > MAX_PUBLIC_KEY_CHARS:
        raise InvalidPublicKey("public_key must be a PEM text of at most 1024 characters")
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise InvalidPublicKey("public_key is not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise InvalidPublicKey("public_key must be an EC P-256 key")
    return key


def verify_signature(key: ec.EllipticCurvePublicKey, signature_b64: object, data: bytes) -> bytes:
    """Verify an ECDSA-SHA256 signature and return it in DER form; raise ``InvalidSignature``.

    Both encodings are accepted: DER (Python, Android, iOS) and raw r || s of 64 bytes
    (WebCrypto). A DER signature can also be 64 bytes long, so that length tries both.
    """
    if not isinstance(signature_b64, str) or len(signature_b64) > MAX_SIGNATURE_CHARS:
        raise InvalidSignature()
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSignature() from None

    candidates = [signature]
    if len(signature) == RAW_SIGNATURE_BYTES:
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        candidates.insert(0, encode_dss_signature(r, s))
    for candidate in candidates:
        try:
            key.verify(candidate, data, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            continue
        return candidate
    raise InvalidSignature()


class DeviceRegistry:
    """The persistent table of enrolled devices."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / DATABASE_FILE

    async def open(self) -> None:
        await asyncio.to_thread(self._run, _create_schema)

    async def add(self, device: Device) -> None:
        """Store a device, dropping the oldest devices of its ID number past the limit."""
        await asyncio.to_thread(self._run, _insert, device)

    async def get(self, device_id: str) -> Device | None:
        return await asyncio.to_thread(self._run, _select_one, device_id)

    async def for_id_number(self, id_number: str) -> list[Device]:
        return await asyncio.to_thread(self._run, _select_for_id, id_number)

    def _run(self, operation: Callable[..., T], *args: object) -> T:
        connection = sqlite3.connect(self._path, timeout=10)
        try:
            with connection:
                return operation(connection, *args)
        finally:
            connection.close()


def _create_schema(connection: sqlite3.Connection) -> None:
    connection.executescript(_SCHEMA)


def _insert(connection: sqlite3.Connection, device: Device) -> None:
    connection.execute(
        "INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?)",
        (
            device.device_id,
            device.id_number,
            device.device_name,
            device.public_key_pem,
            device.certificate_der,
            time.time(),
        ),
    )
    connection.execute(
        """DELETE FROM devices WHERE id_number = ? AND device_id NOT IN (
               SELECT device_id FROM devices WHERE id_number = ?
               ORDER BY created_at DESC, rowid DESC LIMIT ?)""",
        (device.id_number, device.id_number, MAX_DEVICES_PER_ID),
    )


_COLUMNS = "device_id, id_number, device_name, public_key_pem, certificate_der"


def _select_one(connection: sqlite3.Connection, device_id: str) -> Device | None:
    row = connection.execute(
        f"SELECT {_COLUMNS} FROM devices WHERE device_id = ?",  # noqa: S608 (constant columns)
        (device_id,),
    ).fetchone()
    return Device(*row) if row else None


def _select_for_id(connection: sqlite3.Connection, id_number: str) -> list[Device]:
    rows = connection.execute(
        f"SELECT {_COLUMNS} FROM devices WHERE id_number = ? ORDER BY created_at",  # noqa: S608
        (id_number,),
    ).fetchall()
    return [Device(*row) for row in rows]
