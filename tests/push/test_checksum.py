"""sp_checksum / idp_checksum, checked against the algorithm written out step by step."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from push import checksum

KEY = bytes(range(32))
FIELDS = {
    "transaction_id": "0b6b6d8e-2c1f-4f55-9a57-1d2e3f405162",
    "sp_service_id": "SP-TEST-01",
    "id_num": "A123456789",
    "op_code": "ATH",
    "op_mode": "I-SCAN",
    "hint": "登入全國主計網",
    # sign_data missing: it counts as the empty string
}


def spec_checksum(key: bytes, text: str, iv: bytes) -> str:
    """Follow the specification text literally, independent of push.checksum."""
    digest_hex = hashlib.sha256(text.encode("utf-8")).hexdigest()  # 64 lowercase hex chars
    sealed = AESGCM(key).encrypt(iv, digest_hex.encode("utf-8"), None)  # ciphertext || 16-byte tag
    return iv.hex() + sealed.hex()


def test_zero_iv_matches_spec():
    text = "0b6b6d8e-2c1f-4f55-9a57-1d2e3f405162SP-TEST-01A123456789ATHI-SCAN登入全國主計網"

    made = checksum.make(KEY, FIELDS, checksum.ATH01_SP, random_iv=False)

    assert made == spec_checksum(KEY, text, bytes(12))
    assert made.startswith("0" * 24)
    assert len(made) == 2 * (12 + 64 + 16)


def test_field_order_per_checksum():
    fields = {
        "transaction_id": "t",
        "sp_service_id": "s",
        "id_num": "i",
        "device_user_def_desc": "d",
        "op_code": "o",
        "op_mode": "m",
        "hint": "h",
        "sign_data": "g",
        "sp_ticket_id": "k",
        "error_code": "e",
        "sp_ticket": "p",
        "hashed_id_num": "x",
        "signed_response": "r",
        "is_fido": "Y",
        "is_mcert_sign": "N",
    }
    expected = {
        checksum.ATH01_SP: "tsiomhg",
        checksum.ATH03_SP: "tsidohg",
        checksum.ATH02_SP: "tsk",
        checksum.LF01_SP: "tsi",
        checksum.TICKET_IDP: "tep",
        checksum.ATH02_IDP: "texr",
        checksum.LF01_IDP: "teYN",
    }

    for order, text in expected.items():
        assert checksum.digest_hex(fields, order) == hashlib.sha256(text.encode()).hexdigest()


def test_zero_iv_verifies():
    made = checksum.make(KEY, FIELDS, checksum.ATH01_SP, random_iv=False)

    checksum.verify(KEY, made, FIELDS, checksum.ATH01_SP)


def test_random_iv_verifies_and_differs():
    first = checksum.make(KEY, FIELDS, checksum.ATH01_SP, random_iv=True)
    second = checksum.make(KEY, FIELDS, checksum.ATH01_SP, random_iv=True)

    assert first != second
    checksum.verify(KEY, first, FIELDS, checksum.ATH01_SP)
    checksum.verify(KEY, second, FIELDS, checksum.ATH01_SP)


def test_random_iv_read_from_prefix():
    iv = bytes.fromhex("00112233445566778899aabb")
    text = "".join(str(FIELDS.get(name, "")) for name in checksum.ATH01_SP)

    checksum.verify(KEY, spec_checksum(KEY, text, iv), FIELDS, checksum.ATH01_SP)


def test_uppercase_hex_accepted():
    made = checksum.make(KEY, FIELDS, checksum.ATH01_SP, random_iv=False)

    checksum.verify(KEY, made.upper(), FIELDS, checksum.ATH01_SP)


def test_changed_field_fails():
    made = checksum.make(KEY, FIELDS, checksum.ATH01_SP, random_iv=False)

    with pytest.raises(checksum.ChecksumError, match="does not match"):
        checksum.verify(KEY, made, {**FIELDS, "id_num": "A123456780"}, checksum.ATH01_SP)


def test_wrong_key_fails():
    made = checksum.make(KEY, FIELDS, checksum.ATH01_SP, random_iv=False)

    with pytest.raises(checksum.ChecksumError, match="decrypt"):
        checksum.verify(bytes(32), made, FIELDS, checksum.ATH01_SP)


@pytest.mark.parametrize("position", [0, 30, -1])
def test_flipped_character_fails(position):
    made = checksum.make(KEY, FIELDS, checksum.ATH01_SP, random_iv=False)
    index = position % len(made)
    flipped = made[:index] + ("1" if made[index] != "1" else "2") + made[index + 1 :]

    with pytest.raises(checksum.ChecksumError):
        checksum.verify(KEY, flipped, FIELDS, checksum.ATH01_SP)


@pytest.mark.parametrize("bad", [None, 42, "", "zz" * 46, "00" * 20, "ab cd" * 40])
def test_malformed_checksum_fails(bad):
    with pytest.raises(checksum.ChecksumError):
        checksum.verify(KEY, bad, FIELDS, checksum.ATH01_SP)


def test_decode_key():
    assert checksum.decode_key(base64.b64encode(KEY).decode()) == KEY


@pytest.mark.parametrize("text", ["not base64!", base64.b64encode(bytes(16)).decode()])
def test_decode_key_rejects_bad_key(text):
    with pytest.raises(ValueError) as caught:
        checksum.decode_key(text)

    assert text not in str(caught.value)
