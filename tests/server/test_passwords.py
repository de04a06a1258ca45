"""Password hashing, the password policy and failure lockouts (server/passwords.py)."""

from __future__ import annotations

import asyncio

import pytest

from server.errors import InvalidPassword
from server.passwords import (
    HashParameters,
    Lockout,
    PasswordHashing,
    PasswordPolicy,
    format_unlock_time,
)
from server.sessions.memory import MemoryStore

# Cheap argon2id parameters so the tests run fast; the algorithm and code path are the same.
FAST = HashParameters(time_cost=1, memory_cost=1024, parallelism=1)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def hashing() -> PasswordHashing:
    return PasswordHashing(FAST, max_concurrent=2)


async def test_hash_is_argon2id_and_verifies(hashing: PasswordHashing) -> None:
    stored = await hashing.hash("Correct#Horse1")

    assert stored.startswith("$argon2id$")
    assert "Correct#Horse1" not in stored
    assert await hashing.verify(stored, "Correct#Horse1")
    assert not await hashing.verify(stored, "correct#horse1")


async def test_unknown_account_verifies_against_dummy(hashing: PasswordHashing) -> None:
    await hashing.prepare()

    assert not await hashing.verify(None, "anything")
    assert not await hashing.verify(None, "")


async def test_unknown_account_runs_the_same_hash_work(monkeypatch: pytest.MonkeyPatch) -> None:
    # Equal time comes from equal work: an unknown account verifies against a dummy hash made
    # with the same parameters. (Timing itself belongs to bench/, not to a unit test.)
    hashing = PasswordHashing(HashParameters(2, 16384, 1), max_concurrent=1)
    stored = await hashing.hash("Real#Password1")
    checked: list[str] = []
    original = hashing._check

    async def recording(stored_hash: str, password: str) -> bool:
        checked.append(stored_hash)
        return await original(stored_hash, password)

    monkeypatch.setattr(hashing, "_check", recording)
    assert await hashing.verify(stored, "Wrong#Password1") is False
    assert await hashing.verify(None, "Wrong#Password1") is False

    assert len(checked) == 2
    wrong_parameters = checked[0].split("$")[3]
    unknown_parameters = checked[1].split("$")[3]
    assert unknown_parameters == wrong_parameters == "m=16384,t=2,p=1"
    assert checked[1] != stored


async def test_verify_runs_off_event_loop(hashing: PasswordHashing) -> None:
    slow = PasswordHashing(HashParameters(3, 32768, 1), max_concurrent=1)
    stored = await slow.hash("Slow#Password1")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    await slow.verify(stored, "Slow#Password1")
    task.cancel()
    assert ticks > 3


async def test_invalid_stored_hash_rejects(hashing: PasswordHashing) -> None:
    assert not await hashing.verify("not-a-hash", "whatever")


async def test_needs_rehash_after_parameter_change(hashing: PasswordHashing) -> None:
    stored = await hashing.hash("Some#Password1")
    stronger = PasswordHashing(HashParameters(2, 2048, 1), max_concurrent=1)

    assert not hashing.needs_rehash(stored)
    assert stronger.needs_rehash(stored)


POLICY = PasswordPolicy(min_length=12, min_classes=3, max_length=64)


@pytest.mark.parametrize(
    "password",
    ["Abcdefghij1!", "abcdefghij12!", "ABCDEFGHIJ12a", "長密碼Abcdefgh1"],
)
def test_policy_accepts(password: str) -> None:
    POLICY.check(password, account="chen.anna")


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("Abc1!", "長度"),
        ("x" * 65, "長度"),
        ("abcdefghijklm", "種類不足"),
        ("abcdefghij12", "種類不足"),
        ("Chen.Anna#2024x", "帳號名稱"),
    ],
)
def test_policy_rejects_with_rule(password: str, fragment: str) -> None:
    with pytest.raises(InvalidPassword) as caught:
        POLICY.check(password, account="chen.anna")

    assert caught.value.key == "password_policy"
    assert caught.value.status == 400
    assert fragment in caught.value.text


def test_policy_description_names_limits() -> None:
    text = POLICY.describe()

    assert "12" in text
    assert "3 類" in text


async def test_lockout_locks_after_max_failures() -> None:
    clock = Clock()
    lockout = Lockout(
        MemoryStore(clock), name="t", max_failures=3, window=900, duration=600, clock=clock
    )

    assert await lockout.record_failure("acct") == (2, None)
    assert await lockout.record_failure("acct") == (1, None)
    left, unlock_at = await lockout.record_failure("acct")

    assert left == 0
    assert unlock_at == clock.now + 600
    assert await lockout.locked_until("acct") == clock.now + 600
    assert await lockout.locked_until("other") is None


async def test_lockout_ends_after_duration() -> None:
    clock = Clock()
    lockout = Lockout(
        MemoryStore(clock), name="t", max_failures=2, window=900, duration=600, clock=clock
    )
    await lockout.record_failure("acct")
    await lockout.record_failure("acct")

    clock.now += 599
    assert await lockout.locked_until("acct") is not None
    clock.now += 2
    assert await lockout.locked_until("acct") is None


async def test_lockout_forgets_failures_after_window() -> None:
    clock = Clock()
    lockout = Lockout(
        MemoryStore(clock), name="t", max_failures=2, window=900, duration=600, clock=clock
    )
    await lockout.record_failure("acct")

    clock.now += 901
    left, unlock_at = await lockout.record_failure("acct")

    assert left == 1
    assert unlock_at is None


async def test_lockout_clear_removes_lock_and_failures() -> None:
    clock = Clock()
    lockout = Lockout(
        MemoryStore(clock), name="t", max_failures=2, window=900, duration=600, clock=clock
    )
    await lockout.record_failure("acct")
    await lockout.record_failure("acct")

    await lockout.clear("acct")

    assert await lockout.locked_until("acct") is None
    assert await lockout.record_failure("acct") == (1, None)


def test_unlock_time_in_taiwan_time() -> None:
    # 2024-01-01 06:00 UTC is 14:00 in Taiwan.
    now = 1704088800.0

    assert format_unlock_time(now + 900, now) == "14:15（約 15 分鐘後）"
    assert format_unlock_time(now + 86400, now).startswith("01/02 14:00")
