"""The sp_ticket codec: round trip and every way a ticket can be malformed."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from push import ticket

TICKET = ticket.Ticket(
    transaction_id="5d0c2b1e-8f3a-4c55-b9f2-0a1b2c3d4e5f",
    op_code="ATH",
    op_mode="I-SCAN",
    sp_service_id="SP-TEST-01",
    sp_ticket_id="a1b2c3d4",
    sp_name="全國主計網(eBAS)",
    hint="登入全國主計網",
    expiration_time="1767225600",
    hashed_id_num="ab" * 32,
    version="1.0",
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_ticket(payload: bytes) -> str:
    """Build a ticket by the format rule, with a correct digest over any payload."""
    first = b64url(payload)
    return first + "." + b64url(hashlib.sha256(first.encode()).digest())


def test_round_trip():
    assert ticket.decode(ticket.encode(TICKET)) == TICKET


def test_encoding_follows_format():
    text = ticket.encode(TICKET)
    first, digest = text.split(".")

    assert digest == b64url(hashlib.sha256(first.encode()).digest())
    payload = json.loads(base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)))
    assert payload["sp_ticket_id"] == "a1b2c3d4"
    assert payload["hint"] == "登入全國主計網"


def test_decodes_ticket_made_elsewhere():
    payload = {"transaction_id": "t-1", "sp_ticket_id": "k-1", "expiration_time": 1767225600}

    decoded = ticket.decode(make_ticket(json.dumps(payload).encode()))

    assert decoded.transaction_id == "t-1"
    assert decoded.expiration_time == "1767225600"
    assert decoded.op_code == ""


def test_tampered_digest_rejected():
    text = ticket.encode(TICKET)
    tampered = text[:-3] + ("AAA" if not text.endswith("AAA") else "BBB")

    with pytest.raises(ticket.TicketError, match="digest"):
        ticket.decode(tampered)


def test_tampered_payload_rejected():
    first, digest = ticket.encode(TICKET).split(".")
    other_first = b64url(json.dumps({"transaction_id": "x", "sp_ticket_id": "y"}).encode())

    with pytest.raises(ticket.TicketError, match="digest"):
        ticket.decode(other_first + "." + digest)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (None, "two segments"),
        ("", "two segments"),
        ("abc", "two segments"),
        ("a.b.c", "two segments"),
        (make_ticket(b"\xff\xfe not utf-8"), "not JSON"),
        (make_ticket(b"not json"), "not JSON"),
        (make_ticket(b"[1, 2]"), "not an object"),
        (make_ticket(b"[" * 5000), "not JSON"),
        (make_ticket(b'{"transaction_id": "t"}'), "lacks"),
        (make_ticket(b'{"transaction_id": "t", "sp_ticket_id": {"a": 1}}'), "wrong type"),
    ],
)
def test_malformed_rejected(text, reason):
    with pytest.raises(ticket.TicketError, match=reason):
        ticket.decode(text)


def test_bad_base64_rejected():
    first = "abcde"  # 5 characters cannot be base64url
    text = first + "." + b64url(hashlib.sha256(first.encode()).digest())

    with pytest.raises(ticket.TicketError, match="base64url"):
        ticket.decode(text)


def test_oversize_rejected():
    payload = {"transaction_id": "t", "sp_ticket_id": "k", "hint": "x" * ticket.MAX_TICKET_CHARS}

    with pytest.raises(ticket.TicketError):
        ticket.decode(make_ticket(json.dumps(payload).encode()))
