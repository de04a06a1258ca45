"""行動自然人憑證 (TW FidO): push to the bound phone, with the I-SCAN QR code as the fallback.

Both transactions of one login (push and QR) are watched by the one poll scheduler; the first
final result ends the login, and the store's compare-and-set drops every later one.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from push.client import AthResult, SpApiClient, SpApiError, SpApiUnavailable, SpApiUntrusted
from push.codes import CodeInfo, Outcome
from push.poller import PollScheduler, PollTimeout
from push.ticket import Ticket
from push.verify import (
    SignedResultVerifier,
    VerificationFailed,
    check_hashed_id_num,
    load_trust_anchors,
)
from server.config import EMBEDDED_AUTHORITY_DIR, ConfigError, Settings, TwFidoSettings
from server.errors import RateLimited, UpstreamUnavailable, WrongState
from server.idnumber import mask, validate
from server.logins import Logins
from server.methods.base import LoginMethod, MethodContext, StartRequest
from server.sessions.model import LoginSession, State, VerifiedIdentity

log = logging.getLogger(__name__)

AMR = ("twfido", "mfa")  # possession of the bound phone plus its biometric unlock
CHALLENGE_BYTES = 32  # sign_data for op_code SIGN
MIN_QR_SECONDS = 30  # the SP API rejects a time_limit below 30 s
SIGN_FAILED_MESSAGE = (
    "行動自然人憑證的簽章或憑證未通過驗證（簽章不符、憑證非由信任的憑證機構簽發、"
    "已過期，或不屬於此身分證統一編號），已中止登入，請重新登入。"
)
IDENTITY_MISMATCH_MESSAGE = "驗證結果與輸入的身分證統一編號不符，已中止登入，請重新登入。"

OUTCOME_STATES = {
    Outcome.DENIED: State.DENIED,
    Outcome.EXPIRED: State.EXPIRED,
}


class MobileMethod(LoginMethod):
    name = "mobile"

    def __init__(
        self,
        logins: Logins,
        *,
        client: SpApiClient,
        poller: PollScheduler,
        settings: TwFidoSettings,
        verify_signed: Callable[[AthResult, str, str], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(logins)
        self.client = client
        self.poller = poller
        # Several nodes: take over the polls of logins whose node stopped.
        poller.set_adopter(self._watch_key)
        self.settings = settings
        # SIGN mode: check signed_response, the chain and the last-4 attribute; raises on failure.
        self.verify_signed = verify_signed

    @property
    def store(self):  # type: ignore[no-untyped-def]
        return self.logins.store

    async def open(self) -> None:
        if isinstance(self.verify_signed, SignedResultVerifier):
            try:
                await self.verify_signed.load()
            except ValueError as exc:
                raise ConfigError(f"twfido.trust_anchors: {exc}") from None
            log.info("SIGN mode: %d trust anchors loaded", len(self.verify_signed.anchors))

    async def start(self, request: StartRequest) -> LoginSession:
        id_number = validate(str(request.body.get("id_number", "")))
        await self._limit_pushes(id_number)

        code = f"{secrets.randbelow(100):02d}"
        data: dict[str, Any] = {
            "mode": "push",
            "verification_code": code,
            "hint": f"{self.settings.sp_name}登入，驗證碼 {code}",
        }
        if self.settings.op_code == "SIGN":
            data["sign_data"] = base64.b64encode(secrets.token_bytes(CHALLENGE_BYTES)).decode()
        session = await self.logins.create(
            method=self.name,
            binding=request.binding,
            lifetime=self.settings.time_limit,
            client=request.client,
            id_number=id_number,
            data=data,
        )
        await self._supersede(id_number, session.id)

        try:
            answer = await self.client.request_push(
                id_number,
                op_code=self.settings.op_code,
                hint=data["hint"],
                time_limit=self.settings.time_limit,
                sign_data=data.get("sign_data"),
            )
        except SpApiError as exc:
            return await self._push_refused(session, exc.info)
        except (SpApiUnavailable, SpApiUntrusted) as exc:
            return await self._fail_upstream(session, exc)

        updated = await self.store.update_data(
            session.id, {"push_status": "sent", "push_ticket_id": answer.ticket.sp_ticket_id}
        )
        await self._watch(session, "push", answer.ticket)
        return updated or session

    async def start_qr(self, session: LoginSession) -> LoginSession:
        """Start (or reuse) the I-SCAN transaction of a pending login and return it."""
        if session.state is not State.PENDING:
            raise WrongState()
        if session.data.get("qr_ticket_id"):
            return session
        remaining = int(session.expires_at - self.logins.clock())
        if remaining < MIN_QR_SECONDS:
            raise WrongState("登入作業即將逾時，請重新登入後再掃描 QR Code。")

        assert session.id_number is not None
        try:
            answer = await self.client.get_sp_ticket(
                session.id_number,
                op_code=self.settings.op_code,
                hint=session.data["hint"],
                time_limit=remaining,
                sign_data=session.data.get("sign_data"),
            )
        except SpApiError as exc:
            ended = await self._end_for(session, exc.info)
            return ended or session
        except (SpApiUnavailable, SpApiUntrusted) as exc:
            log.warning("login %s: QR ticket failed: %s", session.id, exc)
            raise UpstreamUnavailable() from exc

        updated = await self.store.update_data(
            session.id,
            {
                "mode": "qr",
                "qr_ticket_id": answer.ticket.sp_ticket_id,
                "qr_payload": self.settings.qr_template.format(
                    sp_ticket=answer.sp_ticket, sp_ticket_id=answer.ticket.sp_ticket_id
                ),
            },
        )
        if updated is None:
            raise WrongState()
        await self._watch(session, "qr", answer.ticket)
        return updated

    async def cancelled(self, session: LoginSession) -> None:
        self.poller.unwatch(f"{session.id}:push")
        self.poller.unwatch(f"{session.id}:qr")

    # -- internals -------------------------------------------------------------------------------

    async def _limit_pushes(self, id_number: str) -> None:
        count, resets_in = await self.store.hit(f"pushes:{id_number}", self.settings.push_window)
        if count > self.settings.push_limit:
            wait = max(1, int(resets_in + 0.999))
            log.warning("push limit reached for %s; retry in %d s", mask(id_number), wait)
            raise RateLimited(wait, f"此身分證統一編號登入請求過於頻繁，請於 {wait} 秒後再試。")

    async def _supersede(self, id_number: str, login_id: str) -> None:
        """Make this the one pending login of the ID number and end the one it replaces.

        The swap is atomic, so concurrent starts (on any node) leave exactly one pending.
        """
        older = await self.store.swap(_active_key(id_number), login_id, self.settings.time_limit)
        if older is None or older == login_id:
            return
        ended = await self.logins.end(older, State.CANCELLED, reason="superseded")
        if ended is not None:
            await self.cancelled(ended)

    async def _watch(self, session: LoginSession, kind: str, ticket: Ticket) -> None:
        # The scheduler counts on the monotonic clock; the login's deadline is wall-clock time.
        deadline = time.monotonic() + (session.expires_at - self.logins.clock())
        self._watch_key(f"{session.id}:{kind}", ticket, deadline)
        # Several nodes: answer the browser only once another node could take the poll over.
        await self.poller.registered(f"{session.id}:{kind}")

    def _watch_key(self, key: str, ticket: Ticket, deadline: float) -> None:
        """Watch one transaction of a login; with several nodes, also how a node adopts one."""
        login_id = key.rpartition(":")[0]

        async def on_done(result: AthResult | Exception) -> None:
            await self._finish(login_id, result)

        self.poller.watch(key, ticket, deadline, on_done)

    async def _finish(self, login_id: str, result: AthResult | Exception) -> None:
        session = await self.store.get(login_id)
        if session is None or session.state is not State.PENDING:
            return
        if isinstance(result, AthResult):
            await self._approve(session, result)
        elif isinstance(result, SpApiError):
            await self._end_for(session, result.info)
        elif isinstance(result, PollTimeout):
            await self.logins.end(login_id, State.EXPIRED, reason="expired")
        else:
            await self._fail_upstream(session, result)
        latest = await self.store.get(login_id)
        if latest is not None and latest.terminal:
            await self.cancelled(latest)

    async def _approve(self, session: LoginSession, result: AthResult) -> None:
        assert session.id_number is not None
        try:
            check_hashed_id_num(
                result.hashed_id_num, session.id_number, self.settings.hashed_id_num
            )
        except VerificationFailed as exc:
            log.warning("login %s: approved result rejected: %s", session.id, exc)
            await self.logins.end(
                session.id,
                State.FAILED,
                reason="identity_mismatch",
                message=IDENTITY_MISMATCH_MESSAGE,
            )
            return
        if "sign_data" in session.data:
            try:
                if self.verify_signed is None:
                    raise VerificationFailed("SIGN-mode result but no signature verifier")
                await self.verify_signed(result, session.data["sign_data"], session.id_number)
            except Exception as exc:  # noqa: BLE001 - any verification fault fails the login
                log.warning("login %s: signed result rejected: %s", session.id, exc)
                await self.logins.end(
                    session.id, State.FAILED, reason="sign_failed", message=SIGN_FAILED_MESSAGE
                )
                return

        identity = VerifiedIdentity(
            id_number=session.id_number,
            method=self.name,
            auth_time=int(self.logins.clock()),
            amr=AMR,
            name=_holder_name(result.cert),
        )
        await self.logins.end(session.id, State.APPROVED, reason="approved", identity=identity)

    async def _push_refused(self, session: LoginSession, info: CodeInfo) -> LoginSession:
        if info.outcome is Outcome.PUSH_FAILED:
            # The phone cannot be reached; the login stays open so the QR code can finish it.
            log.info("login %s: push not delivered, offering the QR code", session.id)
            updated = await self.store.update_data(
                session.id,
                {"push_status": "not_delivered", "push_message": info.message},
            )
            return updated or session
        return await self._end_for(session, info) or session

    async def _end_for(self, session: LoginSession, info: CodeInfo) -> LoginSession | None:
        if info.outcome is Outcome.CONFIG_ERROR:
            log.error(
                "login %s: TW FidO rejected our request (%s): %s",
                session.id,
                info.reason,
                getattr(info, "operator_hint", ""),
            )
        state = OUTCOME_STATES.get(info.outcome, State.FAILED)
        return await self.logins.end(session.id, state, reason=info.reason, message=info.message)

    async def _fail_upstream(self, session: LoginSession, exc: Exception) -> LoginSession:
        if isinstance(exc, SpApiUntrusted):
            log.error("login %s: untrusted TW FidO response rejected: %s", session.id, exc)
            reason, message = (
                "untrusted_answer",
                "驗證服務回應無法確認其完整性，已中止登入，請重新登入。",
            )
        else:
            log.error("login %s: TW FidO service unreachable: %s", session.id, exc)
            reason, message = "authority_unreachable", UpstreamUnavailable.message
        ended = await self.logins.end(session.id, State.FAILED, reason=reason, message=message)
        return ended or session


def _active_key(id_number: str) -> str:
    return f"mobile:active:{id_number}"


def _holder_name(cert_b64: str) -> str:
    """Return the certificate subject's CN (the MOICA holder name), or "" when unreadable."""
    if not cert_b64:
        return ""
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode(cert_b64))
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return ""
    return str(names[0].value) if names else ""


def create(context: MethodContext) -> MobileMethod:
    twfido = context.settings.twfido
    verify_signed = None
    if twfido.op_code == "SIGN":
        # The anchors are read in MobileMethod.open(), in a worker thread.
        verify_signed = SignedResultVerifier(_anchor_loader(context.settings))
    return MobileMethod(
        context.logins,
        client=context.sp_client,
        poller=context.poller,
        settings=twfido,
        verify_signed=verify_signed,
    )


def _anchor_loader(settings: Settings) -> Callable[[], list[x509.Certificate]]:
    """Return the blocking function that reads the SIGN-mode trust anchors.

    The configured ``twfido.trust_anchors`` when set; otherwise, in embedded mode, the embedded
    authority's test CA (created here on first start if the authority has not created it yet).
    """
    paths = list(settings.twfido.trust_anchors)
    if paths or settings.twfido.mode != "embedded":
        return lambda: load_trust_anchors(paths)

    authority_dir = settings.data_path(EMBEDDED_AUTHORITY_DIR)

    def load_embedded_ca() -> list[x509.Certificate]:
        from push.authority import ca

        authority_dir.mkdir(parents=True, exist_ok=True)
        ca.load_or_create(authority_dir)
        return load_trust_anchors(ca.certificate_paths(authority_dir))

    return load_embedded_ca
