"""The credential administration commands of ``ebas-login`` (passwords read from stdin)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from server.cli import main
from server.credentials import CardRegistration, CredentialStore, PasswordCredential
from server.passwords import HashParameters, PasswordHashing

PASSWORD = "Temp#Pass20250"


def run(monkeypatch: pytest.MonkeyPatch, data_dir: Path, stdin: str, *args: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["--log-level", "WARNING", *args, "--data-dir", str(data_dir)])


def stored_password(data_dir: Path, account: str) -> PasswordCredential | None:
    async def read() -> PasswordCredential | None:
        store = await CredentialStore.open(data_dir / "credentials.sqlite3")
        try:
            return await store.find_password(account)
        finally:
            await store.close()

    return asyncio.run(read())


def stored_card(data_dir: Path, card_number: str) -> CardRegistration | None:
    async def read() -> CardRegistration | None:
        store = await CredentialStore.open(data_dir / "credentials.sqlite3")
        try:
            return await store.find_card(card_number)
        finally:
            await store.close()

    return asyncio.run(read())


def verifies(stored_hash: str, password: str) -> bool:
    hashing = PasswordHashing(HashParameters(1, 1024, 1), max_concurrent=1)
    return asyncio.run(hashing.verify(stored_hash, password))


def test_set_password_requires_change(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    code = run(
        monkeypatch,
        tmp_path,
        PASSWORD + "\n",
        "accounts",
        "set-password",
        "New.User",
        "--id",
        "F123456784",
    )

    credential = stored_password(tmp_path, "new.user")
    assert code == 0
    assert credential is not None
    assert credential.id_number == "F123456784"
    assert credential.must_change
    assert credential.password_hash.startswith("$argon2id$")
    assert verifies(credential.password_hash, PASSWORD)


def test_set_password_permanent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    run(
        monkeypatch,
        tmp_path,
        PASSWORD + "\n",
        "accounts",
        "set-password",
        "u1",
        "--id",
        "F123456784",
        "--permanent",
    )

    credential = stored_password(tmp_path, "u1")
    assert credential is not None and not credential.must_change


def test_set_password_rejects_weak(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(
        monkeypatch, tmp_path, "weak\n", "accounts", "set-password", "u1", "--id", "F123456784"
    )

    assert code == 1
    assert "新密碼長度不符" in capsys.readouterr().err
    assert stored_password(tmp_path, "u1") is None


def test_reset_and_unlock(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    run(
        monkeypatch,
        tmp_path,
        PASSWORD + "\n",
        "accounts",
        "set-password",
        "u1",
        "--id",
        "F123456784",
        "--permanent",
    )

    assert run(monkeypatch, tmp_path, "", "accounts", "reset-password", "u1") == 0
    assert run(monkeypatch, tmp_path, "", "accounts", "unlock", "u1") == 0
    assert run(monkeypatch, tmp_path, "", "accounts", "unlock", "ghost") == 1

    credential = stored_password(tmp_path, "u1")
    assert credential is not None
    assert credential.must_change
    assert credential.unlocked_at is not None


def test_nhi_register(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    code = run(
        monkeypatch,
        tmp_path,
        "abc1234\n",
        "nhi",
        "register",
        "--card",
        "000077778888",
        "--id",
        "a123456789",
    )

    card = stored_card(tmp_path, "000077778888")
    assert code == 0
    assert card is not None
    assert card.id_number == "A123456789"
    assert verifies(card.password_hash, "abc1234")


@pytest.mark.parametrize(
    ("card", "id_number", "password"),
    [
        ("123", "A123456789", "abc1234"),
        ("000077778888", "A123456780", "abc1234"),
        ("000077778888", "A123456789", "abc"),
    ],
)
def test_nhi_register_rejects_bad_input(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, card: str, id_number: str, password: str
) -> None:
    code = run(
        monkeypatch, tmp_path, password + "\n", "nhi", "register", "--card", card, "--id", id_number
    )

    assert code == 1
