"""One attempt to sign in, whatever the method. No I/O here."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

LOGIN_ID_BYTES = 24  # 192 bits, URL-safe; unguessable so a login id alone grants nothing
BINDING_SECRET_BYTES = 32
# Ended sessions stay readable this long after their deadline, so a late status read or
# assertion completion still finds them; then every store purges them.
RETENTION_SECONDS = 600


class State(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    FAILED = "failed"


TERMINAL = frozenset(State) - {State.PENDING}


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """Who the person is, as one login method verified it."""

    id_number: str
    method: str
    auth_time: int
    amr: tuple[str, ...]
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["amr"] = list(self.amr)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VerifiedIdentity:
        return cls(
            id_number=data["id_number"],
            method=data["method"],
            auth_time=int(data["auth_time"]),
            amr=tuple(data.get("amr", ())),
            name=data.get("name", ""),
        )


@dataclass(frozen=True, slots=True)
class LoginSession:
    """A login attempt. Change it only through ``SessionStore.transition`` / ``update_data``."""

    id: str
    method: str
    state: State
    created_at: float
    expires_at: float
    browser_binding: str
    id_number: str | None = None
    # Method-specific fields, e.g. transaction_id, sp_ticket, mode (push | qr), verification_code.
    data: dict[str, Any] = field(default_factory=dict)
    # For an ending: a stable reason key (e.g. "denied_in_app") and its zh-TW message.
    reason: str | None = None
    message: str | None = None
    identity: VerifiedIdentity | None = None
    # Increments with every change; event consumers drop stale snapshots by it.
    version: int = 0

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def evolve(self, **changes: Any) -> LoginSession:
        return replace(self, version=self.version + 1, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "method": self.method,
            "state": self.state.value,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "browser_binding": self.browser_binding,
            "id_number": self.id_number,
            "data": self.data,
            "reason": self.reason,
            "message": self.message,
            "identity": self.identity.to_dict() if self.identity else None,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoginSession:
        identity = data.get("identity")
        return cls(
            id=data["id"],
            method=data["method"],
            state=State(data["state"]),
            created_at=float(data["created_at"]),
            expires_at=float(data["expires_at"]),
            browser_binding=data["browser_binding"],
            id_number=data.get("id_number"),
            data=dict(data.get("data") or {}),
            reason=data.get("reason"),
            message=data.get("message"),
            identity=VerifiedIdentity.from_dict(identity) if identity else None,
            version=int(data.get("version", 0)),
        )


def new_login_id() -> str:
    return secrets.token_urlsafe(LOGIN_ID_BYTES)


def new_binding_secret() -> str:
    """Return the secret for the browser's HttpOnly cookie; only its hash is stored."""
    return secrets.token_urlsafe(BINDING_SECRET_BYTES)


def binding_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
