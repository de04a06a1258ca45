"""Account directory over a real SQLite file, and the demo accounts."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.accounts import MIGRATIONS, Account, AccountDirectory
from server.demo import DEMO_IDS, demo_accounts, seed_demo_accounts
from server.idnumber import is_valid

HEADER = "account,id_number,display_name,agency,unit,active\n"


@pytest.fixture
async def directory(tmp_path: Path) -> AsyncIterator[AccountDirectory]:
    opened = await AccountDirectory.open(tmp_path / "accounts.sqlite3")
    yield opened
    await opened.close()


def account(id_number: str = "A123456789", name: str = "wang", active: bool = True) -> Account:
    return Account(
        account=name,
        id_number=id_number,
        display_name="王小明",
        agency="行政院主計總處",
        unit="會計決算處",
        active=active,
        synced_at="2025-01-02T03:04:05+00:00",
        password_changed_at=None,
    )


async def test_open_migrates_schema_and_enables_wal(tmp_path: Path) -> None:
    path = tmp_path / "accounts.sqlite3"
    directory = await AccountDirectory.open(path)
    await directory.close()

    with sqlite3.connect(path) as connection:
        version = connection.execute("SELECT version FROM schema_version").fetchone()[0]
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
    assert version == len(MIGRATIONS)
    assert mode == "wal"


async def test_reopen_keeps_data_and_version(tmp_path: Path) -> None:
    path = tmp_path / "accounts.sqlite3"
    first = await AccountDirectory.open(path)
    await first.upsert([account()])
    await first.close()

    second = await AccountDirectory.open(path)
    try:
        assert await second.count() == 1
    finally:
        await second.close()


async def test_newer_schema_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "accounts.sqlite3"
    await (await AccountDirectory.open(path)).close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS) + 1,))

    with pytest.raises(RuntimeError, match="newer"):
        await AccountDirectory.open(path)


async def test_find_by_id_number_and_account(directory: AccountDirectory) -> None:
    await directory.upsert([account(), account("F123456784", "other", active=False)])

    by_id = await directory.find_by_id_number("A123456789")
    by_name = await directory.find_by_account("other")

    assert by_id == account()
    assert by_name is not None
    assert by_name.id_number == "F123456784"
    assert by_name.active is False
    assert await directory.find_by_id_number("B223456782") is None
    assert await directory.find_by_account("nobody") is None


async def test_upsert_updates_existing_account(directory: AccountDirectory) -> None:
    await directory.upsert([account()])
    await directory.upsert([account(name="wang2", active=False)])

    found = await directory.find_by_id_number("A123456789")
    assert await directory.count() == 1
    assert found is not None
    assert found.account == "wang2"
    assert found.active is False


async def test_concurrent_reads_and_writes(directory: AccountDirectory) -> None:
    ids = [i for i in (f"A1{n:07d}{d}" for n in range(40) for d in range(10)) if is_valid(i)][:20]
    writes = [directory.upsert([account(i, f"user{n}")]) for n, i in enumerate(ids)]
    reads = [directory.find_by_id_number(i) for i in ids]

    await asyncio.gather(*writes, *reads)

    assert await directory.count() == len(ids)


async def test_import_good_csv(directory: AccountDirectory, tmp_path: Path) -> None:
    path = tmp_path / "good.csv"
    path.write_text(
        HEADER
        + "wang,a123456789,王小明,行政院主計總處,會計決算處,1\n"
        + "chen,A800123450,陳安娜,財政部,會計處,0\n",
        encoding="utf-8",
    )

    report = await directory.import_csv(path)

    assert report.ok, report.errors
    assert report.imported == 2
    wang = await directory.find_by_id_number("A123456789")  # normalised to upper case
    chen = await directory.find_by_account("chen")
    assert wang is not None
    assert wang.display_name == "王小明"
    assert wang.active
    assert chen is not None
    assert chen.agency == "財政部"
    assert not chen.active


async def test_import_with_bom(directory: AccountDirectory, tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(
        ("\ufeff" + HEADER + "wang,A123456789,王小明,主計總處,會計決算處,是\r\n").encode()
    )

    report = await directory.import_csv(path)

    assert report.ok, report.errors
    assert await directory.find_by_account("wang") is not None


async def test_import_bad_row_writes_nothing(directory: AccountDirectory, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        HEADER
        + "wang,A123456789,王小明,行政院主計總處,會計決算處,1\n"
        + "chen,A123456788,陳安娜,財政部,會計處,1\n"  # wrong check digit
        + "lee,B223456782,李大同,教育部,主計處,1\n",
        encoding="utf-8",
    )

    report = await directory.import_csv(path)

    assert not report.ok
    assert report.imported == 0
    assert len(report.errors) == 1
    assert report.errors[0].startswith("第 3 列：")
    assert "檢查碼" in report.errors[0]
    assert await directory.count() == 0


async def test_import_reports_duplicates_and_missing(
    directory: AccountDirectory, tmp_path: Path
) -> None:
    path = tmp_path / "dup.csv"
    path.write_text(
        HEADER
        + "wang,A123456789,王小明,行政院主計總處,會計決算處,1\n"
        + "wang,A123456789,王小明,行政院主計總處,會計決算處,1\n"
        + "lee,B223456782,,教育部,主計處,maybe\n",
        encoding="utf-8",
    )

    report = await directory.import_csv(path)

    assert len(report.errors) == 2
    assert "第 3 列" in report.errors[0]
    assert "與第 2 列重複" in report.errors[0]
    assert "第 4 列" in report.errors[1]
    assert "姓名未填寫" in report.errors[1]
    assert "active" in report.errors[1]
    assert await directory.count() == 0


async def test_import_rejects_wrong_header(directory: AccountDirectory, tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("account,id,name\nwang,A123456789,王小明\n", encoding="utf-8")

    report = await directory.import_csv(path)

    assert report.errors[0].startswith("第 1 列：")
    assert "id_number" in report.errors[0]


async def test_import_rejects_account_name_of_other_person(
    directory: AccountDirectory, tmp_path: Path
) -> None:
    await directory.upsert([account("B223456782", "wang")])
    path = tmp_path / "taken.csv"
    path.write_text(HEADER + "wang,A123456789,王小明,主計總處,會計決算處,1\n", encoding="utf-8")

    report = await directory.import_csv(path)

    assert report.errors == ["第 2 列：帳號「wang」已由其他人員使用。"]
    assert await directory.find_by_id_number("A123456789") is None


async def test_import_keeps_password_date_when_column_absent(
    directory: AccountDirectory, tmp_path: Path
) -> None:
    existing = account()
    await directory.upsert(
        [Account(**{**existing.__dict__, "password_changed_at": "2024-01-01T00:00:00+08:00"})]
    )
    path = tmp_path / "sync.csv"
    path.write_text(HEADER + "wang,A123456789,王小明,主計總處,新單位,1\n", encoding="utf-8")

    report = await directory.import_csv(path)

    found = await directory.find_by_id_number("A123456789")
    assert report.ok
    assert found is not None
    assert found.unit == "新單位"
    assert found.password_changed_at == "2024-01-01T00:00:00+08:00"


def test_demo_ids_are_valid_and_distinct() -> None:
    assert set(DEMO_IDS) >= {"active", "active_resident", "inactive", "no_account"}
    assert len(set(DEMO_IDS.values())) == len(DEMO_IDS)
    for purpose, id_number in DEMO_IDS.items():
        assert is_valid(id_number), purpose
    assert DEMO_IDS["active"] == "A123456789"
    assert DEMO_IDS["active_resident"][1] in "89"
    assert DEMO_IDS["no_account"].startswith("F")


async def test_demo_seed_covers_each_outcome(directory: AccountDirectory) -> None:
    assert await seed_demo_accounts(directory) is True
    assert await seed_demo_accounts(directory) is False  # only into an empty directory

    active = await directory.find_by_id_number(DEMO_IDS["active"])
    resident = await directory.find_by_id_number(DEMO_IDS["active_resident"])
    inactive = await directory.find_by_id_number(DEMO_IDS["inactive"])
    assert active is not None
    assert active.active
    assert (active.display_name, active.agency, active.unit) == (
        "王小明",
        "行政院主計總處",
        "會計決算處",
    )
    assert resident is not None
    assert resident.active
    assert resident.agency != active.agency
    assert inactive is not None
    assert not inactive.active
    assert await directory.find_by_id_number(DEMO_IDS["no_account"]) is None


def test_demo_password_ages_straddle_notice() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    ages = {
        a.id_number: now - datetime.fromisoformat(a.password_changed_at)
        for a in demo_accounts(now)
        if a.password_changed_at
    }
    assert ages[DEMO_IDS["active"]] > timedelta(days=90)
    assert ages[DEMO_IDS["active_resident"]] < timedelta(days=90)
