"""Signing challenges: random text the card signs, single use, short-lived, bound to one browser.

Challenges live in the shared session store (``put`` / ``take``), so any node can redeem one
that another node issued, and ``take`` makes the single use atomic.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from dataclasses import dataclass

from server.errors import BindingMismatch, ChallengeInvalid
from server.sessions.store import SessionStore

log = logging.getLogger(__name__)

CHALLENGE_ID_BYTES = 24  # 192 bits: the id alone must not be guessable
CHALLENGE_BYTES = 32  # 256 bits of randomness in the signed text
PURPOSES = ("login", "register")  # a registration challenge cannot sign a login, and back


@dataclass(frozen=True, slots=True)
class Challenge:
    id: str
    tbs: str  # the text the card signs (ASCII, sent with tbsEncoding NONE)
    expires_in: int


class ChallengeBook:
    def __init__(self, store: SessionStore, lifetime: int) -> None:
        self.store = store
        self.lifetime = lifetime

    async def issue(self, binding: str, purpose: str) -> Challenge:
        if purpose not in PURPOSES:
            raise ValueError(f"unknown challenge purpose {purpose!r}")
        challenge = Challenge(
            id=secrets.token_urlsafe(CHALLENGE_ID_BYTES),
            tbs=f"ebas-login:{purpose}:{secrets.token_urlsafe(CHALLENGE_BYTES)}",
            expires_in=self.lifetime,
        )
        value = json.dumps({"binding": binding, "tbs": challenge.tbs})
        await self.store.put(_key(purpose, challenge.id), value, self.lifetime)
        return challenge

    async def redeem(self, challenge_id: str, binding: str, purpose: str) -> bytes:
        """Consume the challenge and return the bytes that must have been signed.

        A challenge from another browser is rejected without consuming it, so a leaked id
        cannot be used to burn the owner's challenge.
        """
        if not challenge_id or len(challenge_id) > 2 * CHALLENGE_ID_BYTES:
            raise ChallengeInvalid()
        key = _key(purpose, challenge_id)
        stored = await self.store.fetch(key)
        if stored is None:
            log.warning("card challenge unknown, used or expired")
            raise ChallengeInvalid()
        if not hmac.compare_digest(json.loads(stored)["binding"].encode(), binding.encode()):
            log.warning("card challenge presented by another browser; rejected")
            raise BindingMismatch()
        taken = await self.store.take(key)
        if taken is None:  # another request redeemed it between fetch and take
            log.warning("card challenge used twice; rejected")
            raise ChallengeInvalid()
        tbs: str = json.loads(taken)["tbs"]
        return tbs.encode("ascii")


def _key(purpose: str, challenge_id: str) -> str:
    return f"card:challenge:{purpose}:{challenge_id}"
