"""The eCPA password method: equal failure errors, lockouts and forced changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.accounts import AccountDirectory
from server.audit import AuditLog
from server.config import PasswordSettings
from server.demo import seed_demo_accounts
from server.demo_credentials import DEMO_PASSWORDS
from server.errors import (
    AccountLocked,
    InvalidCredentials,
    InvalidInput,
    InvalidPassword,
    WrongState,
)
from server.logins import ClientInfo, Logins
from server.methods.base import StartRequest
from server.methods.password import PasswordMethod
from server.sessions.memory import MemoryStore
from server.sessions.model import LoginSession, State

# Cheap hashing for speed; max_failures and windows as in production.
SETTINGS = PasswordSettings(
    time_cost=1, memory_cost=1024, parallelism=1, max_failures=3, address_max_failures=6
)
DEMO = {demo.account: demo for demo in DEMO_PASSWORDS}
NEW_PASSWORD = "Brand#New2025pw"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    method: PasswordMethod
    clock: Clock
    accounts: AccountDirectory
    store: MemoryStore

    async def login(self, account: str, password: str, address: str = "192.0.2.1") -> LoginSession:
        request = StartRequest(
            body={"method": "password", "account": account, "password": password},
            binding="binding-hash",
            client=ClientInfo(address, "pytest"),
        )
        return await self.method.start(request)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    clock = Clock()
    store = MemoryStore(clock)
    audit = AuditLog(tmp_path / "audit.log")
    accounts = await AccountDirectory.open(tmp_path / "accounts.sqlite3")
    await seed_demo_accounts(accounts)
    method = PasswordMethod(
        Logins(store, audit, clock),
        settings=SETTINGS,
        credentials_path=tmp_path / "credentials.sqlite3",
        accounts=accounts,
        seed_demo=True,
    )
    await method.open()
    yield Harness(method, clock, accounts, store)
    await method.close()
    await accounts.close()
    audit.close()


async def test_recent_password_approves(harness: Harness) -> None:
    demo = DEMO["chen.anna"]

    session = await harness.login(" Chen.Anna ", demo.password)

    assert session.state is State.APPROVED
    assert session.identity is not None
    assert session.identity.id_number == demo.id_number
    assert session.identity.method == "password"
    assert "must_change" not in session.data


async def test_wrong_password_and_unknown_account_answer_alike(harness: Harness) -> None:
    with pytest.raises(InvalidCredentials) as wrong:
        await harness.login("chen.anna", "not-the-password")
    with pytest.raises(InvalidCredentials) as unknown:
        await harness.login("nobody.here", "not-the-password")

    assert wrong.value.to_json() == unknown.value.to_json()
    assert wrong.value.to_json() == {"error": "invalid_auth", "message": "帳號或密碼錯誤。"}


async def test_failed_login_is_ended_failed(harness: Harness) -> None:
    with pytest.raises(InvalidCredentials):
        await harness.login("chen.anna", "not-the-password")

    sessions = list(harness.store._sessions.values())  # noqa: SLF001 - inspecting the real store
    assert [s.state for s in sessions] == [State.FAILED]
    assert sessions[0].reason == "invalid_auth"


async def test_empty_fields_rejected(harness: Harness) -> None:
    with pytest.raises(InvalidInput):
        await harness.login("", "x")
    with pytest.raises(InvalidInput):
        await harness.login("chen.anna", "")


async def test_account_locks_after_max_failures(harness: Harness) -> None:
    for _ in range(SETTINGS.max_failures - 1):
        with pytest.raises(InvalidCredentials):
            await harness.login("chen.anna", "wrong")
    with pytest.raises(AccountLocked) as locked:
        await harness.login("chen.anna", "wrong")

    assert locked.value.status == 423
    assert "請於" in locked.value.text
    assert locked.value.details["retry_after"] == SETTINGS.lockout_seconds
    # The right password does not open a locked account.
    with pytest.raises(AccountLocked):
        await harness.login("chen.anna", DEMO["chen.anna"].password)


async def test_lock_ends_after_lockout_seconds(harness: Harness) -> None:
    for _ in range(SETTINGS.max_failures):
        with pytest.raises((InvalidCredentials, AccountLocked)):
            await harness.login("chen.anna", "wrong")

    harness.clock.now += SETTINGS.lockout_seconds + 1
    session = await harness.login("chen.anna", DEMO["chen.anna"].password)

    assert session.state is State.APPROVED


async def test_unknown_account_locks_like_known(harness: Harness) -> None:
    for _ in range(SETTINGS.max_failures - 1):
        with pytest.raises(InvalidCredentials):
            await harness.login("ghost.user", "wrong")
    with pytest.raises(AccountLocked):
        await harness.login("ghost.user", "wrong")


async def test_success_clears_account_failures(harness: Harness) -> None:
    for _ in range(SETTINGS.max_failures - 1):
        with pytest.raises(InvalidCredentials):
            await harness.login("chen.anna", "wrong")
    await harness.login("chen.anna", DEMO["chen.anna"].password)

    with pytest.raises(InvalidCredentials):
        await harness.login("chen.anna", "wrong")


async def test_address_locks_across_accounts(harness: Harness) -> None:
    names = [f"user{i}" for i in range(SETTINGS.address_max_failures)]
    for name in names[:-1]:
        with pytest.raises(InvalidCredentials):
            await harness.login(name, "wrong", address="198.51.100.7")
    with pytest.raises(AccountLocked) as locked:
        await harness.login(names[-1], "wrong", address="198.51.100.7")

    assert "網路位址" in locked.value.text
    # Another address still works.
    session = await harness.login("chen.anna", DEMO["chen.anna"].password, address="192.0.2.99")
    assert session.state is State.APPROVED


async def test_administrator_unlock_ends_lock(harness: Harness) -> None:
    for _ in range(SETTINGS.max_failures):
        with pytest.raises((InvalidCredentials, AccountLocked)):
            await harness.login("chen.anna", "wrong")

    harness.clock.now += 5
    assert await harness.method.credentials.mark_unlocked("chen.anna", harness.clock())
    session = await harness.login("chen.anna", DEMO["chen.anna"].password)

    assert session.state is State.APPROVED


async def test_stale_password_requires_change(harness: Harness) -> None:
    session = await harness.login("wang.xiaoming", DEMO["wang.xiaoming"].password)

    assert session.state is State.PENDING
    assert session.data["must_change"] is True
    assert session.data["change_reason"] == "expired"


async def test_first_login_requires_change(harness: Harness) -> None:
    session = await harness.login("lin.meiyu", DEMO["lin.meiyu"].password)

    assert session.state is State.PENDING
    assert session.data["change_reason"] == "required"


async def test_password_turns_stale_after_max_age(harness: Harness) -> None:
    harness.clock.now += (SETTINGS.max_age_days + 1) * 86400

    session = await harness.login("chen.anna", DEMO["chen.anna"].password)

    assert session.state is State.PENDING
    assert session.data["change_reason"] == "expired"


async def test_change_approves_and_updates_account(harness: Harness) -> None:
    session = await harness.login("wang.xiaoming", DEMO["wang.xiaoming"].password)

    ended = await harness.method.change_password(session, NEW_PASSWORD)

    assert ended.state is State.APPROVED
    assert ended.identity is not None
    assert ended.identity.id_number == DEMO["wang.xiaoming"].id_number
    account = await harness.accounts.find_by_id_number(DEMO["wang.xiaoming"].id_number)
    assert account is not None and account.password_changed_at is not None
    changed = datetime.fromisoformat(account.password_changed_at).timestamp()
    assert abs(changed - harness.clock.now) < 2
    # The new password now signs in directly; the old one no longer does.
    assert (await harness.login("wang.xiaoming", NEW_PASSWORD)).state is State.APPROVED
    with pytest.raises(InvalidCredentials):
        await harness.login("wang.xiaoming", DEMO["wang.xiaoming"].password)


async def test_change_rejects_policy_violation(harness: Harness) -> None:
    session = await harness.login("lin.meiyu", DEMO["lin.meiyu"].password)

    with pytest.raises(InvalidPassword) as caught:
        await harness.method.change_password(session, "short")

    assert "12" in caught.value.text
    # The login stays open for a better password.
    ended = await harness.method.change_password(session, NEW_PASSWORD)
    assert ended.state is State.APPROVED


async def test_change_rejects_same_password(harness: Harness) -> None:
    session = await harness.login("lin.meiyu", DEMO["lin.meiyu"].password)

    with pytest.raises(InvalidPassword) as caught:
        await harness.method.change_password(session, DEMO["lin.meiyu"].password)

    assert "相同" in caught.value.text


async def test_change_refused_when_not_required(harness: Harness) -> None:
    session = await harness.login("chen.anna", DEMO["chen.anna"].password)

    with pytest.raises(WrongState):
        await harness.method.change_password(session, NEW_PASSWORD)


async def test_change_applies_once(harness: Harness) -> None:
    session = await harness.login("lin.meiyu", DEMO["lin.meiyu"].password)
    await harness.method.change_password(session, NEW_PASSWORD)

    with pytest.raises(WrongState):
        await harness.method.change_password(session, "Another#Pass2025")


async def test_require_change_forces_change_at_next_login(harness: Harness) -> None:
    assert await harness.method.credentials.require_change("chen.anna")

    session = await harness.login("chen.anna", DEMO["chen.anna"].password)

    assert session.state is State.PENDING
    assert session.data["change_reason"] == "required"
