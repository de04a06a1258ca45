"""eBAS account directory: national ID number → eBAS account, in an SQLite file.

Every database call runs in a worker thread (``asyncio.to_thread``) on one connection that a
lock serialises, so the event loop never waits on disk. The schema is migrated on open
(``server.sqlite``): each entry of ``MIGRATIONS`` is one step, and ``schema_version`` stores how
many steps have run. Append new steps; never edit a step that has shipped.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from server.errors import InvalidIdNumber
from server.idnumber import validate
from server.sqlite import Database, connect

log = logging.getLogger(__name__)

MIGRATIONS: list[str] = [
    # 1: accounts keyed by national ID; the eBAS account name is unique as well.
    """
    CREATE TABLE accounts (
        id_number TEXT PRIMARY KEY,
        account TEXT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        agency TEXT NOT NULL,
        unit TEXT NOT NULL DEFAULT '',
        active INTEGER NOT NULL CHECK (active IN (0, 1)),
        synced_at TEXT NOT NULL,
        password_changed_at TEXT
    );
    """,
]

CSV_COLUMNS = ("account", "id_number", "display_name", "agency", "unit", "active")
CSV_OPTIONAL_COLUMNS = ("password_changed_at",)
REQUIRED_FIELDS = {
    "account": "帳號",
    "id_number": "身分證統一編號",
    "display_name": "姓名",
    "agency": "機關",
}
TRUE_VALUES = ("1", "true", "y", "yes", "是", "啟用")
FALSE_VALUES = ("0", "false", "n", "no", "否", "停用")
ACTIVE_VALUES = {**dict.fromkeys(TRUE_VALUES, True), **dict.fromkeys(FALSE_VALUES, False)}
# Longest text accepted in one CSV field; a longer value is a malformed file, not a real name.
MAX_FIELD_LENGTH = 200
# Errors listed in one import report; past this many the file is clearly wrong.
MAX_REPORTED_ERRORS = 100
# How long a write waits for another process's lock (e.g. the import command).
BUSY_TIMEOUT_SECONDS = 5.0

_COLUMNS_SQL = (
    "account, id_number, display_name, agency, unit, active, synced_at, password_changed_at"
)


@dataclass(frozen=True)
class Account:
    account: str
    id_number: str
    display_name: str
    agency: str
    unit: str
    active: bool
    synced_at: str  # ISO 8601 time of the last sync from the personnel source (同步時間)
    password_changed_at: str | None = None  # ISO 8601 time of the last eBAS password change


@dataclass
class ImportReport:
    """Outcome of ``import_csv``: the rows written, or row-numbered zh-TW errors and no writes."""

    imported: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


# Taiwan time has had no daylight saving since 1979, so a fixed offset is exact.
TAIWAN_TIME = timezone(timedelta(hours=8), "Asia/Taipei")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 date or time; one without an offset is Taiwan time. Raises ValueError."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=TAIWAN_TIME)
    return moment


class AccountDirectory:
    """The eBAS account directory. Create with ``await AccountDirectory.open(path)``."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = Database(connection, "account directory")
        self.path = path

    @classmethod
    async def open(cls, path: Path) -> AccountDirectory:
        connection = await asyncio.to_thread(
            connect,
            path,
            busy_timeout=BUSY_TIMEOUT_SECONDS,
            migrations=MIGRATIONS,
            name="account",
            foreign_keys=True,
        )
        log.info("account directory opened at %s", path)
        return cls(connection, path)

    async def close(self) -> None:
        await self._db.close()

    async def find_by_id_number(self, id_number: str) -> Account | None:
        return await self._db.run(lambda c: _find(c, "id_number", id_number))

    async def find_by_account(self, account: str) -> Account | None:
        return await self._db.run(lambda c: _find(c, "account", account))

    async def count(self) -> int:
        return await self._db.run(
            lambda c: int(c.execute("SELECT count(*) FROM accounts").fetchone()[0])
        )

    async def upsert(self, accounts: Iterable[Account]) -> None:
        """Insert or update accounts by ID number, all in one transaction."""
        rows = list(accounts)
        await self._db.run(lambda c: _write(c, rows))

    async def set_password_changed_at(self, id_number: str, changed_at: str) -> bool:
        """Record a password change (ISO 8601); return False when the ID number has no account."""
        cursor = await self._db.run(
            lambda c: c.execute(
                "UPDATE accounts SET password_changed_at = ? WHERE id_number = ?",
                (changed_at, id_number),
            )
        )
        return cursor.rowcount > 0

    async def import_csv(self, path: Path) -> ImportReport:
        """Validate every row of a CSV file, then write all of them or none."""
        accounts, report = await asyncio.to_thread(_parse_csv, path)
        if not report.ok:
            log.warning("account import from %s rejected: %d errors", path, len(report.errors))
            return report

        errors = await self._db.run(lambda c: _import(c, accounts))
        if errors:
            log.warning("account import from %s rejected: %d errors", path, len(errors))
            return ImportReport(errors=errors)
        log.info("account import from %s wrote %d accounts", path, len(accounts))
        return ImportReport(imported=len(accounts))


def _find(connection: sqlite3.Connection, column: str, value: str) -> Account | None:
    # column comes from the two fixed call sites above, never from input.
    row = connection.execute(
        f"SELECT {_COLUMNS_SQL} FROM accounts WHERE {column} = ?",  # noqa: S608
        (value,),
    ).fetchone()
    if row is None:
        return None
    return Account(
        account=row[0],
        id_number=row[1],
        display_name=row[2],
        agency=row[3],
        unit=row[4],
        active=bool(row[5]),
        synced_at=row[6],
        password_changed_at=row[7],
    )


_UPSERT_SQL = f"""
    INSERT INTO accounts ({_COLUMNS_SQL}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id_number) DO UPDATE SET
        account = excluded.account,
        display_name = excluded.display_name,
        agency = excluded.agency,
        unit = excluded.unit,
        active = excluded.active,
        synced_at = excluded.synced_at,
        password_changed_at = coalesce(excluded.password_changed_at, accounts.password_changed_at)
"""  # noqa: S608 - only the fixed column list is interpolated


def _write(connection: sqlite3.Connection, accounts: list[Account]) -> None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        _insert(connection, accounts)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _insert(connection: sqlite3.Connection, accounts: list[Account]) -> None:
    connection.executemany(
        _UPSERT_SQL,
        [
            (
                a.account,
                a.id_number,
                a.display_name,
                a.agency,
                a.unit,
                int(a.active),
                a.synced_at,
                a.password_changed_at,
            )
            for a in accounts
        ],
    )


def _import(connection: sqlite3.Connection, accounts: list[Account]) -> list[str]:
    """Write the accounts in one transaction unless another ID already uses an account name."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        errors = []
        for row_number, account in enumerate(accounts, start=2):
            owner = connection.execute(
                "SELECT id_number FROM accounts WHERE account = ?", (account.account,)
            ).fetchone()
            if owner is not None and owner[0] != account.id_number:
                errors.append(f"第 {row_number} 列：帳號「{account.account}」已由其他人員使用。")
        if errors:
            connection.execute("ROLLBACK")
            return errors[:MAX_REPORTED_ERRORS]
        _insert(connection, accounts)
        connection.execute("COMMIT")
        return []
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _parse_csv(path: Path) -> tuple[list[Account], ImportReport]:
    """Parse and validate the file; row numbers count the header as row 1, as spreadsheets do."""
    report = ImportReport()
    try:
        # utf-8-sig drops a byte-order mark when there is one (Excel writes it).
        with open(path, encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        report.errors.append(f"無法讀取檔案：{exc.strerror}")
        return [], report
    except UnicodeDecodeError:
        report.errors.append("檔案不是 UTF-8 編碼，請以 UTF-8 另存後再匯入。")
        return [], report

    if not rows:
        report.errors.append("檔案沒有內容。")
        return [], report
    header = [name.strip().lower() for name in rows[0]]
    missing = [name for name in CSV_COLUMNS if name not in header]
    unknown = [name for name in header if name not in CSV_COLUMNS + CSV_OPTIONAL_COLUMNS]
    if missing or unknown or len(set(header)) != len(header):
        report.errors.append(
            "第 1 列：欄位名稱應為 "
            + ",".join(CSV_COLUMNS)
            + (f"（缺少：{','.join(missing)}）" if missing else "")
            + (f"（無法辨識：{','.join(unknown)}）" if unknown else "")
        )
        return [], report

    synced_at = now_iso()
    accounts: list[Account] = []
    seen_ids: dict[str, int] = {}
    seen_accounts: dict[str, int] = {}
    for row_number, values in enumerate(rows[1:], start=2):
        if not any(v.strip() for v in values):
            report.errors.append(f"第 {row_number} 列：空白列。")
            continue
        if len(values) != len(header):
            report.errors.append(
                f"第 {row_number} 列：欄位數應為 {len(header)}，實際為 {len(values)}。"
            )
            continue
        record = {name: value.strip() for name, value in zip(header, values, strict=True)}
        account, problems = _parse_row(record, synced_at)
        if account is not None:
            if account.id_number in seen_ids:
                problems.append(f"身分證統一編號與第 {seen_ids[account.id_number]} 列重複")
            if account.account in seen_accounts:
                problems.append(f"帳號與第 {seen_accounts[account.account]} 列重複")
            seen_ids.setdefault(account.id_number, row_number)
            seen_accounts.setdefault(account.account, row_number)
        if problems:
            report.errors.append(f"第 {row_number} 列：" + "；".join(problems) + "。")
        elif account is not None:
            accounts.append(account)

    if len(rows) < 2:
        report.errors.append("檔案只有欄位名稱，沒有任何帳號資料。")
    report.errors = report.errors[:MAX_REPORTED_ERRORS]
    return accounts, report


def _parse_row(record: dict[str, str], synced_at: str) -> tuple[Account | None, list[str]]:
    problems = [f"{label}未填寫" for name, label in REQUIRED_FIELDS.items() if not record[name]]
    problems += [
        f"{name} 欄位過長" for name, value in record.items() if len(value) > MAX_FIELD_LENGTH
    ]

    id_number = record["id_number"]
    if record["id_number"]:
        try:
            id_number = validate(record["id_number"])
        except InvalidIdNumber as exc:
            problems.append(exc.text.rstrip("。"))

    active = ACTIVE_VALUES.get(record["active"].lower())
    if active is None:
        problems.append("active 欄位應為 1 或 0")

    changed_at = record.get("password_changed_at") or None
    if changed_at is not None:
        try:
            changed_at = parse_time(changed_at).isoformat()
        except ValueError:
            problems.append("password_changed_at 應為 ISO 8601 日期（例：2024-05-01）")

    if problems or active is None:
        return None, problems
    account = Account(
        account=record["account"],
        id_number=id_number,
        display_name=record["display_name"],
        agency=record["agency"],
        unit=record["unit"],
        active=active,
        synced_at=synced_at,
        password_changed_at=changed_at,
    )
    return account, []
