"""Helpers for the card tests: play the HiPKI component's MakeSignature with a test holder."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization

from server.hipki_sim.token import SoftToken
from server.testpki import Holder

PIN = "246810"


def sign(holder: Holder, tbs: str, *, signature_type: str = "PKCS7") -> str:
    """Play the HiPKI component: MakeSignature over ``tbs`` with the holder's software token."""
    answer = SoftToken(holder, PIN).make_signature(
        {"func": "MakeSignature", "pin": PIN, "tbs": tbs, "tbsEncoding": "NONE",
         "hashAlgorithm": "SHA256", "withCardSN": "true", "signatureType": signature_type}
    )  # fmt: skip
    assert answer["ret_code"] == 0, answer
    return str(answer["signature"])


def certificate_b64(holder: Holder) -> str:
    return base64.b64encode(holder.certificate.public_bytes(serialization.Encoding.DER)).decode()
