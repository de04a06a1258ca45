"""TW FidO SP API checksums (``sp_checksum`` sent, ``idp_checksum`` returned).

Both are: concatenate the listed fields as strings (a missing optional field is ""), SHA-256
the UTF-8 bytes, write the digest as 64 lowercase hex characters, AES-256-GCM-encrypt that hex
text (128-bit tag), and output ``hex(IV) + hex(ciphertext || tag)``. The receiver reads the IV
from the first 12 bytes. This module has no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

IV_BYTES = 12  # GCM nonce length used by every known integration
KEY_BYTES = 32  # AES-256

# Field orders, one per checksum, exactly as the SP API specification lists them.
ATH01_SP = ("transaction_id", "sp_service_id", "id_num", "op_code", "op_mode", "hint", "sign_data")
ATH03_SP = (
    "transaction_id", "sp_service_id", "id_num", "device_user_def_desc", "op_code", "hint",
    "sign_data",
)  # fmt: skip
ATH02_SP = ("transaction_id", "sp_service_id", "sp_ticket_id")
LF01_SP = ("transaction_id", "sp_service_id", "id_num")
TICKET_IDP = ("transaction_id", "error_code", "sp_ticket")
ATH02_IDP = ("transaction_id", "error_code", "hashed_id_num", "signed_response")
LF01_IDP = ("transaction_id", "error_code", "is_fido", "is_mcert_sign")

# bytes.fromhex alone would also accept spaces inside the checksum.
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")


class ChecksumError(ValueError):
    """A checksum that is malformed or does not match its fields."""


def decode_key(text: str) -> bytes:
    """Decode a base64 AES-256 key; raise ``ValueError`` without echoing the key."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the AES key is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"the AES key must decode to {KEY_BYTES} bytes, not {len(key)}")
    return key


def digest_hex(fields: Mapping[str, object], order: tuple[str, ...]) -> str:
    """Return the SHA-256 hex of the fields concatenated in ``order`` (missing → "")."""
    text = "".join("" if fields.get(name) is None else str(fields[name]) for name in order)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make(
    key: bytes, fields: Mapping[str, object], order: tuple[str, ...], *, random_iv: bool
) -> str:
    """Compute a checksum; the IV is all-zero unless ``random_iv``."""
    iv = os.urandom(IV_BYTES) if random_iv else bytes(IV_BYTES)
    sealed = AESGCM(key).encrypt(iv, digest_hex(fields, order).encode("ascii"), None)
    return iv.hex() + sealed.hex()


def verify(
    key: bytes, checksum: object, fields: Mapping[str, object], order: tuple[str, ...]
) -> None:
    """Raise ``ChecksumError`` unless ``checksum`` matches the fields."""
    if not isinstance(checksum, str):
        raise ChecksumError("checksum missing")
    if not _HEX.fullmatch(checksum):
        raise ChecksumError("checksum is not hex")
    raw = bytes.fromhex(checksum)
    if len(raw) <= IV_BYTES + 16:
        raise ChecksumError("checksum too short")
    try:
        plain = AESGCM(key).decrypt(raw[:IV_BYTES], raw[IV_BYTES:], None)
    except InvalidTag:
        raise ChecksumError("checksum does not decrypt with the shared key") from None
    if not hmac.compare_digest(plain, digest_hex(fields, order).encode("ascii")):
        raise ChecksumError("checksum does not match the fields")
