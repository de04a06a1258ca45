"""Password hashing (argon2id), the password policy and failure lockouts. No aiohttp here.

Hashing and verification run in worker threads, at most ``max_concurrent`` at a time, so the
event loop keeps serving requests while a login storm runs. The limit also bounds memory,
because each argon2id hash uses ``memory_cost`` KiB while it runs.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from server.errors import InvalidPassword
from server.sessions.store import SessionStore

log = logging.getLogger(__name__)

# Taiwan has had no daylight saving since 1979, so a fixed offset is exact for unlock times.
TAIWAN_TIME = timezone(timedelta(hours=8), "Asia/Taipei")
DUMMY_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class HashParameters:
    """argon2id cost: passes over memory, memory in KiB, and parallel lanes."""

    time_cost: int
    memory_cost: int
    parallelism: int

    def describe(self) -> str:
        return f"argon2id t={self.time_cost} m={self.memory_cost} KiB p={self.parallelism}"


class PasswordHashing:
    """argon2id hashing and verification off the event loop.

    ``verify`` with no stored hash checks the password against a fixed dummy hash of the same
    cost, so an unknown account takes as long to reject as a wrong password.
    """

    def __init__(self, parameters: HashParameters, *, max_concurrent: int) -> None:
        self.parameters = parameters
        self._hasher = argon2.PasswordHasher(
            time_cost=parameters.time_cost,
            memory_cost=parameters.memory_cost,
            parallelism=parameters.parallelism,
            type=argon2.Type.ID,
        )
        self._slots = asyncio.Semaphore(max_concurrent)
        self._dummy_hash: str | None = None

    async def prepare(self) -> None:
        """Compute the dummy hash now, so the first unknown-account login is not slower."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(DUMMY_SECRET_BYTES))

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Return whether ``password`` matches ``stored_hash``; None verifies against the dummy."""
        if stored_hash is None:
            await self.prepare()
            assert self._dummy_hash is not None
            await self._check(self._dummy_hash, password)
            return False
        return await self._check(stored_hash, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        """Return whether a hash was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True

    async def _check(self, stored_hash: str, password: str) -> bool:
        def run() -> bool:
            try:
                return self._hasher.verify(stored_hash, password)
            except VerificationError:
                return False
            except InvalidHashError:
                log.error("a stored password hash is not a valid argon2 hash; rejecting")
                return False

        async with self._slots:
            return await asyncio.to_thread(run)


# -- policy ---------------------------------------------------------------------------------------

# Characters a password may not contain: controls (NUL, newline), invisible format characters
# (zero-width space, RTL mark), line and paragraph separators, surrogates, private-use and
# unassigned code points. They cannot be typed reliably and would pad a short password's length.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Combining marks attach to the character before them, so they do not count toward the length.
COMBINING_CATEGORIES = frozenset({"Mn", "Me"})

CHARACTER_CLASSES: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("大寫英文字母", lambda c: c in string.ascii_uppercase),
    ("小寫英文字母", lambda c: c in string.ascii_lowercase),
    ("數字", lambda c: c in string.digits),
    ("符號", lambda c: c.isprintable() and not c.isspace() and not c.isalnum()),
)


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """Rules for a new password: length and how many character classes it mixes."""

    min_length: int
    min_classes: int
    max_length: int

    def describe(self) -> str:
        names = "、".join(name for name, _ in CHARACTER_CLASSES)
        return (
            f"新密碼長度須為 {self.min_length} 至 {self.max_length} 個字元，"
            f"且須包含{names}中至少 {self.min_classes} 類，不可包含帳號名稱。"
        )

    def check(self, password: str, *, account: str) -> None:
        """Raise ``InvalidPassword`` naming the rule that ``password`` breaks."""
        categories = [unicodedata.category(c) for c in password]
        if any(category in FORBIDDEN_CATEGORIES for category in categories):
            raise InvalidPassword("新密碼含有控制字元或不可見字元，請重新輸入。")
        visible = sum(category not in COMBINING_CATEGORIES for category in categories)
        if not self.min_length <= visible or len(password) > self.max_length:
            raise InvalidPassword(f"新密碼長度不符。{self.describe()}")
        classes = sum(any(test(c) for c in password) for _, test in CHARACTER_CLASSES)
        if classes < self.min_classes:
            raise InvalidPassword(f"新密碼混合的字元種類不足。{self.describe()}")
        # NFKC folds full-width and look-alike letters (ｗａｎｇ, the Kelvin sign) onto ASCII.
        folded = unicodedata.normalize("NFKC", password).casefold()
        if account and unicodedata.normalize("NFKC", account).casefold() in folded:
            raise InvalidPassword("新密碼不可包含帳號名稱。")


# -- lockouts --------------------------------------------------------------------------------------


class Lockout:
    """Count failures per subject (account, card, address) and lock it when a limit is reached.

    Counters and locks live in the session store, so every node reads the same lock. A subject
    is locked for ``duration`` seconds once ``max_failures`` failures fall within one
    ``window``-second counting window.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        name: str,
        max_failures: int,
        window: float,
        duration: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.name = name
        self.max_failures = max_failures
        self.window = window
        self.duration = duration
        self.clock = clock

    async def locked_until(self, subject: str) -> float | None:
        """Return the time (epoch seconds) the lock on ``subject`` ends, or None when unlocked."""
        value = await self.store.fetch(self._lock_key(subject))
        return float(value) if value is not None else None

    async def record_failure(self, subject: str) -> tuple[int, float | None]:
        """Count one failure; return (failures left before a lock, lock end or None)."""
        count, _ = await self.store.hit(self._failures_key(subject), self.window)
        if count < self.max_failures:
            return self.max_failures - count, None
        unlock_at = self.clock() + self.duration
        await self.store.put(self._lock_key(subject), repr(unlock_at), self.duration)
        await self.store.reset(self._failures_key(subject))
        return 0, unlock_at

    async def clear(self, subject: str) -> None:
        """Forget the failures and any lock of ``subject`` (a success or an admin unlock)."""
        await self.store.reset(self._failures_key(subject))
        await self.store.reset(self._lock_key(subject))

    def _failures_key(self, subject: str) -> str:
        return f"{self.name}:failures:{subject}"

    def _lock_key(self, subject: str) -> str:
        return f"{self.name}:locked:{subject}"


def format_unlock_time(unlock_at: float, now: float) -> str:
    """Return a zh-TW phrase for when a lock ends, e.g. 「14:35（約 15 分鐘後）」 in Taiwan time."""
    moment = datetime.fromtimestamp(unlock_at, UTC).astimezone(TAIWAN_TIME)
    minutes = max(1, int((unlock_at - now + 59) // 60))
    clock_text = moment.strftime("%H:%M")
    if moment.date() != datetime.fromtimestamp(now, UTC).astimezone(TAIWAN_TIME).date():
        clock_text = moment.strftime("%m/%d %H:%M")
    return f"{clock_text}（約 {minutes} 分鐘後）"


def seconds_until(unlock_at: float, now: float) -> int:
    return max(1, int(unlock_at - now + 0.999))
