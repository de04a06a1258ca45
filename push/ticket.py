"""The ``sp_ticket`` codec: ``BASE64URL(payload JSON) + "." + BASE64URL(SHA-256(first segment))``.

The second segment is an integrity digest, not a MAC: anyone can make a valid ticket, so a
ticket proves nothing by itself. It only carries ``transaction_id`` and ``sp_ticket_id`` for
``getAthOrSignResult``. This module has no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import asdict, dataclass

MAX_TICKET_CHARS = 8192  # far above any real ticket; bounds the work on hostile input


class TicketError(ValueError):
    """A ticket that is malformed or whose digest does not match."""


@dataclass(frozen=True, slots=True)
class Ticket:
    transaction_id: str
    op_code: str
    op_mode: str
    sp_service_id: str
    sp_ticket_id: str
    sp_name: str
    hint: str
    expiration_time: str
    hashed_id_num: str
    version: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TicketError("segment is not base64url") from None


def encode(ticket: Ticket) -> str:
    payload = json.dumps(asdict(ticket), ensure_ascii=False, separators=(",", ":"))
    first = _b64url(payload.encode("utf-8"))
    return first + "." + _b64url(hashlib.sha256(first.encode("ascii")).digest())


def decode(text: object) -> Ticket:
    """Decode a ticket and check its digest; raise ``TicketError`` on any fault."""
    if not isinstance(text, str) or len(text) > MAX_TICKET_CHARS or text.count(".") != 1:
        raise TicketError("ticket is not two segments")
    first, digest = text.split(".")
    expected = _b64url(hashlib.sha256(first.encode("ascii", "replace")).digest())
    if not hmac.compare_digest(digest.encode("ascii", "replace"), expected.encode("ascii")):
        raise TicketError("ticket digest does not match")
    try:
        payload = json.loads(_unb64url(first))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        # RecursionError: deeply nested arrays fit in MAX_TICKET_CHARS and exhaust the parser.
        raise TicketError("ticket payload is not JSON") from None
    if not isinstance(payload, dict):
        raise TicketError("ticket payload is not an object")

    values: dict[str, str] = {}
    for name in Ticket.__dataclass_fields__:
        value = payload.get(name, "")
        if not isinstance(value, str | int):
            raise TicketError(f"ticket field {name} has the wrong type")
        values[name] = str(value)
    if not values["transaction_id"] or not values["sp_ticket_id"]:
        raise TicketError("ticket lacks transaction_id or sp_ticket_id")
    return Ticket(**values)
