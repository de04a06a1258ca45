"""自然人憑證 (MOICA smart card) through the HiPKI local component: a direct login method.

The page signs a server challenge with the card and posts the signature. ``start`` checks it
(signature, path, revocation, registration) and ends the login at once, approved or failed.
With ``card.simulator`` on, ``open`` also starts the HiPKI simulator and the local OCSP/CRL
responder on loopback and trusts the simulator's test PKI.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from server.card.challenge import Challenge, ChallengeBook
from server.card.path import TrustAnchors
from server.card.registry import CardRegistry, Registration
from server.card.revocation import FetchError, RevocationChecker
from server.card.verifier import CardVerifier, VerifiedCard, check_id_suffix, registered_id_number
from server.config import CardSettings, Settings
from server.errors import CardRejected, InvalidInput
from server.idnumber import mask
from server.logins import Logins
from server.methods.base import LoginMethod, MethodContext, StartRequest
from server.sessions.model import LoginSession, State, VerifiedIdentity
from server.sessions.store import SessionStore

if TYPE_CHECKING:
    from server.hipki_sim.app import LocalServices

log = logging.getLogger(__name__)

AMR = ("sc", "pin", "mfa")  # RFC 8176: smart card, unlocked with its PIN
MAX_FIELD_LENGTH = 16 * 1024  # base64 of a SignedData with its certificate is about 4 KB
REGISTRATIONS_FILE = "card-registrations.sqlite3"


class HttpFetcher:
    """``Fetcher`` over the app's shared aiohttp session, for OCSP and CRL requests."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http

    async def get(self, url: str, *, time_limit: float, max_bytes: int) -> bytes:
        return await self._request("GET", url, None, None, time_limit, max_bytes)

    async def post(
        self, url: str, body: bytes, *, content_type: str, time_limit: float, max_bytes: int
    ) -> bytes:
        return await self._request("POST", url, body, content_type, time_limit, max_bytes)

    async def _request(
        self,
        method: str,
        url: str,
        body: bytes | None,
        content_type: str | None,
        time_limit: float,
        max_bytes: int,
    ) -> bytes:
        headers = {"Content-Type": content_type} if content_type else {}
        try:
            async with self.http.request(
                method, url, data=body, headers=headers,
                timeout=aiohttp.ClientTimeout(total=time_limit), allow_redirects=False,
            ) as response:  # fmt: skip
                if response.status != 200:
                    raise FetchError(f"HTTP {response.status}")
                data = await response.content.read(max_bytes + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}") from None
        if len(data) > max_bytes:
            raise FetchError(f"response larger than {max_bytes} bytes")
        return data


def simulator_enabled(settings: Settings) -> bool:
    if settings.card.simulator == "auto":
        return settings.twfido.mode == "embedded"
    return settings.card.simulator == "on"


class CardMethod(LoginMethod):
    name = "card"

    def __init__(
        self,
        logins: Logins,
        *,
        settings: CardSettings,
        http: aiohttp.ClientSession,
        registry_path: Path,
        data_dir: Path,
        simulator: bool,
        demo_id_number: str | None = None,
    ) -> None:
        super().__init__(logins)
        self.settings = settings
        self.http = http
        self.registry_path = registry_path
        self.data_dir = data_dir
        self.simulator = simulator
        self.demo_id_number = demo_id_number
        self.challenges = ChallengeBook(self.store, settings.challenge_lifetime)
        self.services: LocalServices | None = None
        self._registry: CardRegistry | None = None
        self._verifier: CardVerifier | None = None

    @property
    def store(self) -> SessionStore:
        return self.logins.store

    @property
    def component_url(self) -> str:
        """Origin the page opens the HiPKI popup on: the simulator's when it runs."""
        if self.services is not None:
            return self.services.component_url
        return self.settings.component_url.rstrip("/")

    @property
    def registry(self) -> CardRegistry:
        if self._registry is None:
            raise RuntimeError("the card method is not open")
        return self._registry

    @property
    def verifier(self) -> CardVerifier:
        if self._verifier is None:
            raise RuntimeError("the card method is not open")
        return self._verifier

    async def open(self) -> None:
        anchors = await asyncio.to_thread(
            TrustAnchors.from_pem_files, self.settings.trust_anchors, self.settings.intermediates
        )
        self._registry = await CardRegistry.open(self.registry_path)
        if self.simulator:
            from server.hipki_sim.app import start_local_services

            self.services = await start_local_services(
                self.data_dir,
                pin=self.settings.simulator_pin,
                port=self.settings.simulator_port,
                id_number=self.demo_id_number,
            )
            pki = self.services.pki
            anchors = anchors.merged(TrustAnchors((pki.root,), (pki.ca,)))
            if self.demo_id_number:
                await self._registry.register(
                    self.services.token.holder.certificate,
                    self.demo_id_number,
                    registered_by="demo",
                )
        if not anchors.roots:
            log.error("card.trust_anchors is empty: every card login will fail")

        revocation = RevocationChecker(
            HttpFetcher(self.http),
            ocsp_timeout=self.settings.ocsp_timeout,
            crl_timeout=self.settings.crl_timeout,
            ocsp_cache_max=self.settings.ocsp_cache_max,
            crl_cache_max=self.settings.crl_cache_max,
        )
        self._verifier = CardVerifier(
            anchors,
            revocation,
            signature_type=self.settings.signature_type,
            fail_open=self.settings.fail_open,
        )
        log.info("card method ready: component %s, %d trust anchors, signature %s, fail_open=%s",
                 self.component_url, len(anchors.roots), self.settings.signature_type,
                 self.settings.fail_open)  # fmt: skip

    async def close(self) -> None:
        if self.services is not None:
            await self.services.close()
            self.services = None
        if self._registry is not None:
            await self._registry.close()
            self._registry = None

    async def issue_challenge(self, binding: str, purpose: str) -> Challenge:
        return await self.challenges.issue(binding, purpose)

    async def start(self, request: StartRequest) -> LoginSession:
        challenge_id, signature, certificate = _signed_fields(request.body)
        challenge = await self.challenges.redeem(challenge_id, request.binding, "login")
        session = await self.logins.create(
            method=self.name,
            binding=request.binding,
            lifetime=self.settings.challenge_lifetime,
            client=request.client,
        )
        try:
            card = await self.verifier.verify(challenge, signature, certificate)
            id_number = await registered_id_number(card, self.registry)
        except CardRejected as exc:
            ended = await self.logins.end(
                session.id, State.FAILED, reason=exc.reason, message=exc.text
            )
            return ended or session

        serial = card.certificate.serial_number
        log.info("login %s: card serial %x verified for %s (revocation by %s)",
                 session.id, serial, mask(id_number), card.revocation_source)  # fmt: skip
        identity = VerifiedIdentity(
            id_number=id_number,
            method=self.name,
            auth_time=int(self.logins.clock()),
            amr=AMR,
            name=card.holder_name,
        )
        ended = await self.logins.end(
            session.id, State.APPROVED, reason="approved", identity=identity
        )
        return ended or session

    async def register(
        self, body: dict[str, Any], *, binding: str, id_number: str, account: str
    ) -> Registration:
        """Register the card that signed a registration challenge to a signed-in user's ID."""
        challenge_id, signature, certificate = _signed_fields(body)
        challenge = await self.challenges.redeem(challenge_id, binding, "register")
        card: VerifiedCard = await self.verifier.verify(challenge, signature, certificate)
        check_id_suffix(card, id_number)
        registration = await self.registry.register(
            card.certificate, id_number, registered_by=f"portal:{account}"
        )
        log.info("card serial %x registered for %s by eBAS account %s",
                 card.certificate.serial_number, mask(id_number), account)  # fmt: skip
        return registration


def _signed_fields(body: Any) -> tuple[str, str, str | None]:
    challenge_id = body.get("challenge_id")
    signature = body.get("signature")
    certificate = body.get("certificate") or None
    if not isinstance(challenge_id, str) or not challenge_id:
        raise InvalidInput("缺少簽章挑戰碼，請重新操作。")
    if not isinstance(signature, str) or not signature or len(signature) > MAX_FIELD_LENGTH:
        raise InvalidInput("缺少簽章資料或格式不正確，請重新操作。")
    if certificate is not None and (
        not isinstance(certificate, str) or len(certificate) > MAX_FIELD_LENGTH
    ):
        raise InvalidInput("憑證資料格式不正確，請重新操作。")
    return challenge_id, signature, certificate


def create(context: MethodContext) -> CardMethod:
    from server.demo import DEMO_IDS

    settings = context.settings
    simulator = simulator_enabled(settings)
    return CardMethod(
        context.logins,
        settings=settings.card,
        http=context.http,
        registry_path=settings.card.registrations or settings.data_path(REGISTRATIONS_FILE),
        data_dir=settings.server.data_dir,
        simulator=simulator,
        demo_id_number=DEMO_IDS["active"] if simulator else None,
    )
