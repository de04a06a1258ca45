"""The NHI card component's text protocol and the card's basic data. No I/O here.

The component is a WebSocket service (``wss://iccert.nhi.gov.tw:7777/echo``, a name that maps to
127.0.0.1) that accepts text commands: ``GetBasic``, ``GetVersion``, ``GetRandom`` and
``H_Sign?Random=<version><random>``. A reply starts with the command name and a colon
(``GetBasic:...``); a failure is a bare numeric error code (e.g. ``8013``).

Basic data is 57 bytes: 0–11 card number, 12–31 holder name (Big5, NUL-padded), 32–41 national
ID number, 42–48 birth date (ROC calendar, yyyMMdd), 49 sex, 50–56 card issue date (yyyMMdd).

NOTE: how the component carries those bytes in its text reply is unconfirmed. This module and
the page send them as base64 of the raw 57 bytes; one public reimplementation of the component
(Inndy/twnhi-smartcard-agent) instead sends comma-separated decoded fields.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import date

BASIC_LENGTH = 57
CARD_NUMBER = slice(0, 12)
NAME = slice(12, 32)
ID_NUMBER = slice(32, 42)
BIRTH_DATE = slice(42, 49)
SEX = slice(49, 50)
ISSUE_DATE = slice(50, 57)

ROC_YEAR_OFFSET = 1911  # ROC year 1 is 1912
NAME_ENCODING = "big5hkscs"  # Big5 with the HKSCS additions, a superset that decodes more names
COMPONENT_VERSION = "0001"  # the version prefix of H_Sign's Random parameter
RANDOM_DIGITS = 16  # GetRandom returns 16 decimal digits
H_SIGN_LENGTH = 256  # a valid H_Sign reply body is 256 characters

_CARD_NUMBER_RE = re.compile(r"[0-9]{12}")
_ERROR_CODE_RE = re.compile(r"[0-9]{4}")
_H_SIGN_RE = re.compile(rf"[0-9A-Za-z+/=]{{{H_SIGN_LENGTH}}}")


class CardDataError(ValueError):
    """Basic data or a component reply that does not follow the layout."""


class ComponentError(Exception):
    """An error code that the component sent instead of a reply."""

    def __init__(self, code: str) -> None:
        super().__init__(f"NHI card component error {code}")
        self.code = code


@dataclass(frozen=True, slots=True)
class BasicData:
    card_number: str
    name: str
    id_number: str
    birth_date: date
    sex: str  # "M" or "F"
    issue_date: date


def parse_roc_date(text: str) -> date:
    """Parse a ROC-calendar date ``yyyMMdd`` (``0790315`` is 1990-03-15)."""
    if len(text) != 7 or not text.isdigit():
        raise CardDataError(f"ROC date must be 7 digits (yyyMMdd), got {text!r}")
    try:
        return date(int(text[:3]) + ROC_YEAR_OFFSET, int(text[3:5]), int(text[5:]))
    except ValueError:
        raise CardDataError(f"ROC date {text!r} is not a calendar date") from None


def format_roc_date(day: date) -> str:
    year = day.year - ROC_YEAR_OFFSET
    if not 0 < year < 1000:
        raise CardDataError(f"{day} cannot be written as a 3-digit ROC year")
    return f"{year:03d}{day.month:02d}{day.day:02d}"


def parse_basic(raw: bytes) -> BasicData:
    """Parse the 57 bytes of basic data; raises ``CardDataError``."""
    if len(raw) != BASIC_LENGTH:
        raise CardDataError(f"basic data must be {BASIC_LENGTH} bytes, got {len(raw)}")
    try:
        card_number = raw[CARD_NUMBER].decode("ascii")
        id_number = raw[ID_NUMBER].decode("ascii")
        sex = raw[SEX].decode("ascii")
        birth, issued = raw[BIRTH_DATE].decode("ascii"), raw[ISSUE_DATE].decode("ascii")
    except UnicodeDecodeError:
        raise CardDataError("basic data has non-ASCII bytes outside the name field") from None
    if not _CARD_NUMBER_RE.fullmatch(card_number):
        raise CardDataError("card number must be 12 digits")
    if sex not in ("M", "F"):
        raise CardDataError(f"sex must be M or F, got {sex!r}")
    try:
        name = raw[NAME].rstrip(b"\x00 ").decode(NAME_ENCODING)
    except UnicodeDecodeError:
        raise CardDataError("holder name is not valid Big5") from None
    return BasicData(
        card_number=card_number,
        name=name,
        id_number=id_number.strip(),
        birth_date=parse_roc_date(birth),
        sex=sex,
        issue_date=parse_roc_date(issued),
    )


def encode_basic(data: BasicData) -> bytes:
    """Build the 57 bytes of basic data (the simulator's card)."""
    name = data.name.encode(NAME_ENCODING)
    if len(name) > NAME.stop - NAME.start:
        raise CardDataError("holder name is longer than 20 Big5 bytes")
    raw = (
        data.card_number.encode("ascii")
        + name.ljust(NAME.stop - NAME.start, b"\x00")
        + data.id_number.encode("ascii").ljust(ID_NUMBER.stop - ID_NUMBER.start)
        + format_roc_date(data.birth_date).encode("ascii")
        + data.sex.encode("ascii")
        + format_roc_date(data.issue_date).encode("ascii")
    )
    if len(raw) != BASIC_LENGTH:
        raise CardDataError("basic data fields do not add up to 57 bytes")
    return raw


def reply_body(reply: str, command: str) -> str:
    """Return a reply's text after ``<command>:``; raises ``ComponentError`` on an error code."""
    prefix = f"{command}:"
    if reply.startswith(prefix):
        return reply[len(prefix) :]
    if _ERROR_CODE_RE.fullmatch(reply):
        raise ComponentError(reply)
    raise CardDataError(f"unexpected reply to {command}")


def encode_basic_reply(data: BasicData) -> str:
    return "GetBasic:" + base64.b64encode(encode_basic(data)).decode("ascii")


def decode_basic_reply(reply: str) -> BasicData:
    body = reply_body(reply, "GetBasic")
    try:
        raw = base64.b64decode(body, validate=True)
    except binascii.Error:
        raise CardDataError("GetBasic reply is not base64") from None
    return parse_basic(raw)


def validate_card_number(text: str) -> str:
    """Return the 12-digit card number without surrounding spaces; raises ``CardDataError``."""
    card_number = text.strip()
    if not _CARD_NUMBER_RE.fullmatch(card_number):
        raise CardDataError("card number must be 12 digits")
    return card_number


def is_h_sign(text: str) -> bool:
    """Return whether ``text`` has the form of an H_Sign reply body (256 base64 characters)."""
    return _H_SIGN_RE.fullmatch(text) is not None


def is_random(text: str) -> bool:
    """Return whether ``text`` is an H_Sign Random parameter: version then 16 digits."""
    return (
        len(text) == len(COMPONENT_VERSION) + RANDOM_DIGITS
        and text.startswith(COMPONENT_VERSION)
        and text.isdigit()
    )


def mask_card(card_number: str) -> str:
    """Mask a card number for logs: the first 4 and last 4 digits stay (``0000****1234``)."""
    if len(card_number) < 8:
        return "*" * len(card_number)
    return card_number[:4] + "*" * (len(card_number) - 8) + card_number[-4:]
