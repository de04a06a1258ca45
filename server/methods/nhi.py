"""健保卡 (NHI card): card data and H_Sign from the card component, plus the registered password.

The page reads the card number and ID number (``GetBasic``) and an ``H_Sign`` over the card's
random (``GetRandom``) from the NHI card component, then posts them with the registered password
(註冊密碼). The server checks the card against its registration, verifies the password (argon2id)
and applies the NHI rule: ``max_failures`` wrong passwords suspend the card's login for
``suspend_seconds``.

In the demo the method also runs the card-component simulator on a loopback port and points the
page at it (setting ``nhi.simulator``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from server.config import NhiSettings
from server.credentials import FILE_NAME, CardRegistration, CredentialStore
from server.errors import (
    AccountLocked,
    CardNotRegistered,
    CardPasswordMismatch,
    CardSuspended,
    InvalidCardNumber,
    InvalidInput,
    LoginError,
    NhiCardRejected,
    WrongState,
)
from server.idnumber import mask, validate
from server.logins import Logins
from server.methods.base import LoginMethod, MethodContext, StartRequest
from server.nhi_card import CardDataError, is_h_sign, is_random, mask_card, validate_card_number
from server.nhi_simulator import NhiCardSimulator, demo_cards
from server.passwords import (
    HashParameters,
    Lockout,
    PasswordHashing,
    format_unlock_time,
    seconds_until,
)
from server.sessions.model import LoginSession, State, VerifiedIdentity
from server.sessions.store import SessionStore

log = logging.getLogger(__name__)

AMR = ("hwk", "pwd")  # RFC 8176: a hardware-held key (the card) plus a password
# An NHI login ends within its start request; the lifetime only bounds how long it stays open
# if the request fails midway.
LOGIN_SECONDS = 60
MAX_PASSWORD_LENGTH = 64  # registered passwords are short; this only bounds the request
# An H_Sign value is accepted once; remembering it for a day outlasts any card random's use.
H_SIGN_REPLAY_SECONDS = 86400
# Hashing cost of registered passwords; the same argon2id cost as eCPA passwords.
MAX_CONCURRENT_HASHES = 4


@dataclass(frozen=True, slots=True)
class CardEvidence:
    """Card data and H_Sign value that the page read from the card component."""

    card_number: str
    id_number: str
    random: str  # the H_Sign Random parameter: component version then the card's random
    h_sign: str


class NhiSignatureVerifier(Protocol):
    """Decide whether the card component's H_Sign proves the card is present.

    NOTE: how NHI verifies H_Sign for a relying party is unconfirmed, so the only implementation
    is ``RegistrationVerifier``. Replace it here once NHI's verification service is known.
    """

    async def verify(self, evidence: CardEvidence, registration: CardRegistration) -> bool: ...


class RegistrationVerifier:
    """Check the card against its local registration; the H_Sign value itself is not verified.

    It accepts a well-formed H_Sign once: the card data must match the registration (same
    national ID), the Random must have the component's form, and a replayed H_Sign is rejected.
    """

    def __init__(self, store: SessionStore) -> None:
        self.store = store

    async def verify(self, evidence: CardEvidence, registration: CardRegistration) -> bool:
        if evidence.id_number != registration.id_number:
            return False
        if not is_random(evidence.random) or not is_h_sign(evidence.h_sign):
            return False
        digest = hashlib.sha256(evidence.h_sign.encode()).hexdigest()
        return await self.store.claim_once(f"nhi:h_sign:{digest}", H_SIGN_REPLAY_SECONDS)


class NhiMethod(LoginMethod):
    name = "nhi"

    def __init__(
        self,
        logins: Logins,
        *,
        settings: NhiSettings,
        hash_parameters: HashParameters,
        credentials_path: Path,
        run_simulator: bool = False,
        seed_demo: bool = False,
        verifier: NhiSignatureVerifier | None = None,
    ) -> None:
        super().__init__(logins)
        self.settings = settings
        self.credentials_path = credentials_path
        self.run_simulator = run_simulator
        self.seed_demo = seed_demo
        self.verifier = verifier or RegistrationVerifier(logins.store)
        self.hashing = PasswordHashing(hash_parameters, max_concurrent=MAX_CONCURRENT_HASHES)
        self.card_lock = Lockout(
            logins.store,
            name="nhi:card",
            max_failures=settings.max_failures,
            window=settings.failure_window,
            duration=settings.suspend_seconds,
            clock=logins.clock,
        )
        self.address_lock = Lockout(
            logins.store,
            name="nhi:address",
            max_failures=settings.address_max_failures,
            window=settings.failure_window,
            duration=settings.suspend_seconds,
            clock=logins.clock,
        )
        self.simulator: NhiCardSimulator | None = None
        self._credentials: CredentialStore | None = None

    @property
    def credentials(self) -> CredentialStore:
        if self._credentials is None:
            raise RuntimeError("the NHI method is not open")
        return self._credentials

    @property
    def component_url(self) -> str:
        """The card component's WebSocket URL that the page connects to."""
        return self.simulator.url if self.simulator is not None else self.settings.component_url

    async def open(self) -> None:
        self._credentials = await CredentialStore.open(self.credentials_path)
        await self.hashing.prepare()
        if self.seed_demo:
            from server.demo_credentials import seed_demo_cards

            await seed_demo_cards(self._credentials, self.hashing, self.logins.clock())
        if self.run_simulator:
            self.simulator = NhiCardSimulator(demo_cards(), port=self.settings.simulator_port)
            await self.simulator.start()
        log.info("NHI card logins ready; card component at %s", self.component_url)

    async def close(self) -> None:
        if self.simulator is not None:
            await self.simulator.stop()
            self.simulator = None
        if self._credentials is not None:
            await self._credentials.close()
            self._credentials = None

    async def start(self, request: StartRequest) -> LoginSession:
        evidence, password = _parse(request)
        session = await self.logins.create(
            method=self.name,
            binding=request.binding,
            lifetime=LOGIN_SECONDS,
            client=request.client,
            data={"card": mask_card(evidence.card_number)},
        )
        try:
            registration = await self._verify(
                session.id, evidence, password, request.client.address
            )
        except LoginError as exc:
            await self.logins.end(session.id, State.FAILED, reason=exc.key, message=exc.text)
            raise
        except Exception:
            # An unexpected fault must not leave the login pending; the middleware logs it.
            await self.logins.end(
                session.id, State.FAILED, reason=LoginError.key, message=LoginError.message
            )
            raise

        identity = VerifiedIdentity(
            id_number=registration.id_number,
            method=self.name,
            auth_time=int(self.logins.clock()),
            amr=AMR,
            name=registration.holder_name,
        )
        ended = await self.logins.end(
            session.id, State.APPROVED, reason="approved", identity=identity
        )
        if ended is None:
            raise WrongState()
        return ended

    async def _verify(
        self, login_id: str, evidence: CardEvidence, password: str, address: str
    ) -> CardRegistration:
        card = evidence.card_number
        unlock_at = await self.card_lock.locked_until(card)
        if unlock_at is not None:
            raise self._suspended(unlock_at)
        unlock_at = await self.address_lock.locked_until(address)
        if unlock_at is not None:
            raise self._address_locked(unlock_at)

        registration = await self.credentials.find_card(card)
        if registration is None:
            await self._count_address_failure(address)
            log.info("login %s: card %s is not registered", login_id, mask_card(card))
            raise CardNotRegistered()
        if not await self.verifier.verify(evidence, registration):
            await self._count_address_failure(address)
            log.warning(
                "login %s: card %s (id %s) rejected by the H_Sign check",
                login_id, mask_card(card), mask(evidence.id_number),
            )  # fmt: skip
            raise NhiCardRejected()

        if not await self.hashing.verify(registration.password_hash, password):
            await self._count_address_failure(address)
            left, suspended_until = await self.card_lock.record_failure(card)
            if suspended_until is not None:
                log.warning(
                    "login %s: card %s suspended after wrong passwords", login_id, mask_card(card)
                )
                raise self._suspended(suspended_until)
            raise CardPasswordMismatch(
                f"{CardPasswordMismatch.message}再錯 {left} 次，此卡的登入將暫停 "
                f"{self.settings.suspend_seconds // 60} 分鐘。",
                attempts_left=left,
            )

        await self.card_lock.clear(card)
        return registration

    async def _count_address_failure(self, address: str) -> None:
        _, unlock_at = await self.address_lock.record_failure(address)
        if unlock_at is not None:
            log.warning("client address %s locked after repeated NHI card failures", address)
            raise self._address_locked(unlock_at)

    def _suspended(self, unlock_at: float) -> CardSuspended:
        now = self.logins.clock()
        return CardSuspended(
            f"健保卡註冊密碼錯誤已達 {self.settings.max_failures} 次，此卡的登入已暫停，"
            f"請於 {format_unlock_time(unlock_at, now)}再試。",
            unlock_at=int(unlock_at),
            retry_after=seconds_until(unlock_at, now),
        )

    def _address_locked(self, unlock_at: float) -> AccountLocked:
        now = self.logins.clock()
        return AccountLocked(
            "此網路位址健保卡登入失敗次數過多，已暫停登入，"
            f"請於 {format_unlock_time(unlock_at, now)}再試。",
            unlock_at=int(unlock_at),
            retry_after=seconds_until(unlock_at, now),
        )


def _parse(request: StartRequest) -> tuple[CardEvidence, str]:
    body = request.body

    def text(key: str) -> str:
        value = body.get(key)
        return value.strip() if isinstance(value, str) else ""

    try:
        card_number = validate_card_number(text("card_number"))
    except CardDataError:
        raise InvalidCardNumber() from None
    id_number = validate(text("id_number"))
    password = body.get("password")
    if not isinstance(password, str) or not password:
        raise InvalidInput("請輸入健保卡註冊密碼。")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise CardPasswordMismatch()
    random, h_sign = text("random"), text("h_sign")
    if not random or not h_sign:
        raise InvalidInput("未取得健保卡簽章，請確認已安裝健保卡元件並插入健保卡後再試。")
    return CardEvidence(card_number, id_number, random, h_sign), password


def simulator_enabled(settings: NhiSettings, twfido_mode: str) -> bool:
    return settings.simulator == "on" or (
        settings.simulator == "auto" and twfido_mode == "embedded"
    )


def create(context: MethodContext) -> NhiMethod:
    settings = context.settings
    password = settings.password
    return NhiMethod(
        context.logins,
        settings=settings.nhi,
        hash_parameters=HashParameters(
            password.time_cost, password.memory_cost, password.parallelism
        ),
        credentials_path=settings.data_path(FILE_NAME),
        run_simulator=simulator_enabled(settings.nhi, settings.twfido.mode),
        seed_demo=settings.accounts.seed_demo,
    )
