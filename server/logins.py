"""Login-session lifecycle shared by every method: start, end, cancel, expire, public view.

No aiohttp here. Every change goes through the store's compare-and-set, and every start and
ending is written to the audit log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from server.errors import BindingMismatch, LoginNotFound
from server.idnumber import mask
from server.sessions.model import LoginSession, State, VerifiedIdentity, new_login_id
from server.sessions.store import SessionStore

if TYPE_CHECKING:
    from server.audit import AuditLog

log = logging.getLogger(__name__)

# Method data the browser may see; everything else (transaction ids, tickets, challenges) stays
# on the server.
PUBLIC_DATA = (
    "mode",
    "verification_code",
    "hint",
    "push_status",
    "push_message",
    "must_change",
    "change_reason",
)

# Default zh-TW text per ending, used when a method gives none.
ENDING_MESSAGES: dict[str, str] = {
    "cancelled": "登入已取消。",
    "superseded": "此身分證統一編號已發起新的登入，本次登入已結束。",
    "expired": "登入作業已逾時，請重新登入。",
}


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """The client address and user agent of a request, for the audit log."""

    address: str
    user_agent: str


class Logins:
    def __init__(
        self, store: SessionStore, audit: AuditLog, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.audit = audit
        self.clock = clock

    async def create(
        self,
        *,
        method: str,
        binding: str,
        lifetime: float,
        client: ClientInfo,
        id_number: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> LoginSession:
        now = self.clock()
        session = LoginSession(
            id=new_login_id(),
            method=method,
            state=State.PENDING,
            created_at=now,
            expires_at=now + lifetime,
            browser_binding=binding,
            id_number=id_number,
            data={**(data or {}), "client": client.address, "user_agent": client.user_agent},
        )
        await self.store.create(session)
        log.info("login %s started: method=%s id=%s", session.id, method, mask(id_number))
        self.audit.record(
            "login_start",
            login_id=session.id,
            method=method,
            outcome="pending",
            id_number=id_number,
            client=client.address,
            user_agent=client.user_agent,
        )
        return session

    async def end(
        self,
        login_id: str,
        state: State,
        *,
        reason: str,
        message: str | None = None,
        identity: VerifiedIdentity | None = None,
    ) -> LoginSession | None:
        """End a pending login; return None when it had already ended (the first ending wins)."""
        ended = await self.store.transition(
            login_id,
            state,
            reason=reason,
            message=message or ENDING_MESSAGES.get(reason),
            identity=identity,
        )
        if ended is None:
            log.info("login %s: ending %s ignored, already ended", login_id, reason)
            return None

        id_number = identity.id_number if identity else ended.id_number
        log.info("login %s ended: %s (%s)", login_id, state.value, reason)
        self.audit.record(
            "login_end",
            login_id=login_id,
            method=ended.method,
            outcome=state.value,
            id_number=id_number,
            client=ended.data.get("client"),
            user_agent=ended.data.get("user_agent"),
            reason=reason,
        )
        return ended

    async def get_bound(self, login_id: str, binding: str | None) -> LoginSession:
        """Return the session if this browser started it; expire it on the way if it is due."""
        session = await self.store.get(login_id)
        if session is None:
            raise LoginNotFound()
        if binding is None or not _same(session.browser_binding, binding):
            log.warning("login %s: request from another browser rejected", login_id)
            raise BindingMismatch()
        return await self.expire_if_due(session)

    async def expire_if_due(self, session: LoginSession) -> LoginSession:
        if session.state is State.PENDING and self.clock() >= session.expires_at:
            await self.end(session.id, State.EXPIRED, reason="expired")
            return await self.store.get(session.id) or session
        return session

    def public_view(self, session: LoginSession) -> dict[str, Any]:
        view: dict[str, Any] = {
            "login_id": session.id,
            "method": session.method,
            "state": session.state.value,
            "expires_at": session.expires_at,
            "server_time": self.clock(),
            "reason": session.reason,
            "message": session.message,
            "events_url": f"/api/logins/{session.id}/events",
            "status_url": f"/api/logins/{session.id}",
        }
        for key in PUBLIC_DATA:
            if key in session.data:
                view[key] = session.data[key]
        if session.method == "mobile":
            view["qr_url"] = f"/api/logins/{session.id}/qr"
            if session.data.get("qr_ticket_id"):
                view["qr_svg_url"] = f"/api/logins/{session.id}/qr.svg"
        return view


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())
