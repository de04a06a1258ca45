"""eCPA account and password (帳號密碼): argon2id, one error for every failure, lockouts.

An unknown account and a wrong password raise the same ``InvalidCredentials`` after the same
work: an unknown account is verified against a dummy hash of the same cost, and failures count
toward a lock for any account name, registered or not, so neither the answer, its timing nor the
lockout tells whether an account exists.

A login whose password was issued by an administrator (first login) or is older than
``max_age_days`` stays ``pending`` with ``must_change``; ``change_password`` then sets a new
password under the policy and approves it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from server.config import PasswordSettings
from server.credentials import FILE_NAME, CredentialStore, PasswordCredential
from server.errors import (
    AccountLocked,
    InvalidCredentials,
    InvalidInput,
    InvalidPassword,
    LoginError,
    WrongState,
)
from server.logins import Logins
from server.methods.base import LoginMethod, MethodContext, StartRequest
from server.passwords import (
    HashParameters,
    Lockout,
    PasswordHashing,
    PasswordPolicy,
    format_unlock_time,
    seconds_until,
)
from server.sessions.model import LoginSession, State, VerifiedIdentity

if TYPE_CHECKING:
    from server.accounts import AccountDirectory

log = logging.getLogger(__name__)

AMR = ("pwd",)  # RFC 8176: password-based authentication
MAX_ACCOUNT_LENGTH = 64  # longer than any eCPA account name; bounds the lock keys
SECONDS_PER_DAY = 86400


def normalize_account(text: str) -> str:
    """Account names match without regard to case or surrounding spaces."""
    return text.strip().lower()


class PasswordMethod(LoginMethod):
    name = "password"

    def __init__(
        self,
        logins: Logins,
        *,
        settings: PasswordSettings,
        credentials_path: Path,
        accounts: AccountDirectory | None = None,
        seed_demo: bool = False,
    ) -> None:
        super().__init__(logins)
        self.settings = settings
        self.credentials_path = credentials_path
        self.accounts = accounts
        self.seed_demo = seed_demo
        self.hashing = PasswordHashing(
            HashParameters(settings.time_cost, settings.memory_cost, settings.parallelism),
            max_concurrent=settings.max_concurrent_hashes,
        )
        self.policy = PasswordPolicy(settings.min_length, settings.min_classes, settings.max_length)
        self.account_lock = Lockout(
            logins.store,
            name="password:account",
            max_failures=settings.max_failures,
            window=settings.failure_window,
            duration=settings.lockout_seconds,
            clock=logins.clock,
        )
        self.address_lock = Lockout(
            logins.store,
            name="password:address",
            max_failures=settings.address_max_failures,
            window=settings.failure_window,
            duration=settings.lockout_seconds,
            clock=logins.clock,
        )
        self._credentials: CredentialStore | None = None

    @property
    def credentials(self) -> CredentialStore:
        if self._credentials is None:
            raise RuntimeError("the password method is not open")
        return self._credentials

    async def open(self) -> None:
        self._credentials = await CredentialStore.open(self.credentials_path)
        await self.hashing.prepare()
        if self.seed_demo:
            from server.demo_credentials import seed_demo_passwords

            await seed_demo_passwords(self._credentials, self.hashing, self.logins.clock())
        log.info("password logins ready (%s)", self.hashing.parameters.describe())

    async def close(self) -> None:
        if self._credentials is not None:
            await self._credentials.close()
            self._credentials = None

    # -- sign-in ---------------------------------------------------------------------------------

    async def start(self, request: StartRequest) -> LoginSession:
        account = normalize_account(_text(request.body.get("account")))
        password = _text(request.body.get("password"))
        if not account or not password:
            raise InvalidInput("請輸入eCPA帳號及密碼。")
        if len(account) > MAX_ACCOUNT_LENGTH or len(password) > self.settings.max_length:
            raise InvalidCredentials()

        session = await self.logins.create(
            method=self.name,
            binding=request.binding,
            lifetime=self.settings.change_window,
            client=request.client,
            data={"account": account},
        )
        try:
            credential = await self._verify(account, password, request.client.address)
        except LoginError as exc:
            await self.logins.end(session.id, State.FAILED, reason=exc.key, message=exc.text)
            raise
        except Exception:
            # An unexpected fault must not leave the login pending; the middleware logs it.
            await self.logins.end(
                session.id, State.FAILED, reason=LoginError.key, message=LoginError.message
            )
            raise

        must_change = self._change_reason(credential)
        if must_change:
            log.info("login %s: password change required (%s)", session.id, must_change)
            updated = await self.logins.store.update_data(
                session.id, {"must_change": True, "change_reason": must_change}
            )
            return updated or session
        return await self._approve(session, credential)

    async def _verify(self, account: str, password: str, address: str) -> PasswordCredential:
        """Return the credential if the password matches, else raise ``InvalidCredentials``."""
        credential = await self.credentials.find_password(account)
        await self._check_locks(account, address, credential)

        stored_hash = credential.password_hash if credential else None
        if not await self.hashing.verify(stored_hash, password) or credential is None:
            await self._count_failure(account, address)
            raise InvalidCredentials()

        await self.account_lock.clear(account)
        if self.hashing.needs_rehash(credential.password_hash):
            await self.credentials.replace_hash(account, await self.hashing.hash(password))
            log.info(
                "password hash of an account upgraded to %s", self.hashing.parameters.describe()
            )
        return credential

    async def _check_locks(
        self, account: str, address: str, credential: PasswordCredential | None
    ) -> None:
        unlock_at = await self.account_lock.locked_until(account)
        if unlock_at is not None and credential and credential.unlocked_at:
            # An administrator unlock made after this lock began ends it.
            if credential.unlocked_at >= unlock_at - self.account_lock.duration:
                await self.account_lock.clear(account)
                unlock_at = None
        if unlock_at is not None:
            raise self._locked(unlock_at, "登入失敗次數過多，此帳號已暫時鎖定")

        unlock_at = await self.address_lock.locked_until(address)
        if unlock_at is not None:
            raise self._locked(unlock_at, "此網路位址登入失敗次數過多，已暫停登入")

    async def _count_failure(self, account: str, address: str) -> None:
        # The address counter is not cleared by a success, so one known password cannot reset it.
        _, address_unlock = await self.address_lock.record_failure(address)
        _, account_unlock = await self.account_lock.record_failure(account)
        if account_unlock is not None:
            log.warning("password account locked after %d failures", self.account_lock.max_failures)
            raise self._locked(account_unlock, "登入失敗次數過多，此帳號已暫時鎖定")
        if address_unlock is not None:
            log.warning("client address %s locked after repeated password failures", address)
            raise self._locked(address_unlock, "此網路位址登入失敗次數過多，已暫停登入")

    def _locked(self, unlock_at: float, reason_text: str) -> AccountLocked:
        now = self.logins.clock()
        return AccountLocked(
            f"{reason_text}，請於 {format_unlock_time(unlock_at, now)}再試。",
            unlock_at=int(unlock_at),
            retry_after=seconds_until(unlock_at, now),
        )

    def _change_reason(self, credential: PasswordCredential) -> str | None:
        if credential.must_change:
            return "required"  # first login or an administrator reset
        age_days = (self.logins.clock() - credential.changed_at) / SECONDS_PER_DAY
        if age_days > self.settings.max_age_days:
            return "expired"
        return None

    async def _approve(self, session: LoginSession, credential: PasswordCredential) -> LoginSession:
        identity = VerifiedIdentity(
            id_number=credential.id_number,
            method=self.name,
            auth_time=int(self.logins.clock()),
            amr=AMR,
        )
        ended = await self.logins.end(
            session.id, State.APPROVED, reason="approved", identity=identity
        )
        if ended is None:
            raise WrongState()
        return ended

    # -- forced change -----------------------------------------------------------------------------

    async def change_password(self, session: LoginSession, new_password: str) -> LoginSession:
        """Set a new password for a login that requires one, then approve the login."""
        if session.method != self.name or not session.data.get("must_change"):
            raise WrongState("此登入作業不需要變更密碼。")
        if session.state is not State.PENDING:
            raise WrongState()
        account = str(session.data["account"])
        credential = await self.credentials.find_password(account)
        if credential is None:
            raise WrongState()

        self.policy.check(new_password, account=account)
        if await self.hashing.verify(credential.password_hash, new_password):
            raise InvalidPassword("新密碼不可與目前的密碼相同。")
        if not await self.logins.store.claim_once(
            f"password:change:{session.id}", self.settings.change_window
        ):
            raise WrongState()

        now = self.logins.clock()
        new_hash = await self.hashing.hash(new_password)
        await self.credentials.set_password(
            account, credential.id_number, new_hash, changed_at=now, must_change=False
        )
        await self._record_change(credential.id_number, now)
        log.info("login %s: password changed", session.id)

        await self.logins.store.update_data(session.id, {"must_change": False})
        ended = await self.logins.end(
            session.id,
            State.APPROVED,
            reason="approved",
            identity=VerifiedIdentity(credential.id_number, self.name, int(now), AMR),
        )
        if ended is None:
            raise WrongState("密碼已變更，但登入作業已結束，請以新密碼重新登入。")
        return ended

    async def _record_change(self, id_number: str, now: float) -> None:
        """Keep the eBAS account's password_changed_at current, for the portal's notice."""
        if self.accounts is None:
            return
        changed_at = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
        await self.accounts.set_password_changed_at(id_number, changed_at)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def create(context: MethodContext) -> PasswordMethod:
    settings = context.settings
    return PasswordMethod(
        context.logins,
        settings=settings.password,
        credentials_path=settings.data_path(FILE_NAME),
        accounts=context.accounts,
        seed_demo=settings.accounts.seed_demo,
    )
