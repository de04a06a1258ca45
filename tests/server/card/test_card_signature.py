"""PKCS#7 SignedData and PKCS#1 verification over the exact challenge."""

from __future__ import annotations

import base64

import pytest
from cardkit import sign
from conftest import Pki

from server.card.pkcs7 import SignatureInvalid, verify_pkcs1, verify_pkcs7

CHALLENGE = "ebas-login:login:abc123"


def test_pkcs7_over_challenge_verifies(test_pki: Pki) -> None:
    holder = test_pki.issue()
    signature = base64.b64decode(sign(holder, CHALLENGE))

    verified = verify_pkcs7(signature, CHALLENGE.encode())

    assert verified.certificate == holder.certificate
    assert verified.card_serial == holder.card_serial


def test_pkcs7_over_other_text_rejected(test_pki: Pki) -> None:
    signature = base64.b64decode(sign(test_pki.issue(), "ebas-login:login:other"))

    with pytest.raises(SignatureInvalid, match="challenge"):
        verify_pkcs7(signature, CHALLENGE.encode())


def test_pkcs7_tampered_signature_rejected(test_pki: Pki) -> None:
    signature = bytearray(base64.b64decode(sign(test_pki.issue(), CHALLENGE)))
    signature[-5] ^= 0x01  # inside the RSA signature value at the end of the SignerInfo

    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_pkcs7(bytes(signature), CHALLENGE.encode())


def test_pkcs7_with_foreign_certificate_rejected(test_pki: Pki) -> None:
    signature = base64.b64decode(sign(test_pki.issue(), CHALLENGE))
    other = test_pki.issue("陳安娜", "A800123450")

    with pytest.raises(SignatureInvalid, match="not the signer"):
        verify_pkcs7(signature, CHALLENGE.encode(), other.certificate)


def test_pkcs7_garbage_rejected() -> None:
    with pytest.raises(SignatureInvalid, match="malformed"):
        verify_pkcs7(b"\x30\x03\x02\x01\x01", CHALLENGE.encode())


def test_pkcs1_over_challenge_verifies(test_pki: Pki) -> None:
    holder = test_pki.issue()
    signature = base64.b64decode(sign(holder, CHALLENGE, signature_type="PKCS1"))

    verified = verify_pkcs1(signature, CHALLENGE.encode(), holder.certificate)

    assert verified.certificate == holder.certificate
    with pytest.raises(SignatureInvalid):
        verify_pkcs1(signature, b"ebas-login:login:other", holder.certificate)
