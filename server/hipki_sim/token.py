"""The simulator's software token: a test holder key and certificate behind a PIN.

It answers the two HiPKI calls the login page makes, ``MakeSignature`` and ``pkcs11info``, with
the fields and error codes of the real component.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from server.card import der
from server.card.pkcs7 import (
    OID_CARD_SERIAL,
    OID_CONTENT_TYPE,
    OID_DATA,
    OID_MESSAGE_DIGEST,
    OID_RSA,
    OID_SHA256,
    OID_SIGNED_DATA,
)
from server.testpki import Holder

OID_SIGNING_TIME = "1.2.840.113549.1.9.5"
VERSION = "hipki-sim 1.0"
SLOT_DESCRIPTION = "HiPKI Simulator Reader 0"

# HiPKI return codes. PIN_FAILED is documented for the component; the others are as observed in
# public integrations. NOTE: NO_TOKEN and BAD_REQUEST are unconfirmed against a real component.
OK = 0
PIN_FAILED = 0x76100006
NO_TOKEN = 0x76000001
BAD_REQUEST = 0x76000002
MAX_TBS_BYTES = 4096  # a login challenge is under 100 bytes


@dataclass
class SoftToken:
    holder: Holder
    pin: str
    present: bool = True  # False plays a reader with no card in it
    signatures: int = field(default=0)

    def pkcs11info(self) -> dict[str, Any]:
        certificate = self.holder.certificate
        token = None
        if self.present:
            token = {
                "serialNumber": self.holder.card_serial,
                "label": "MOICA",
                "certs": [
                    {
                        "certb64": base64.b64encode(
                            certificate.public_bytes(serialization.Encoding.DER)
                        ).decode(),
                        "usage": "digitalSignature",
                        "sn": format(certificate.serial_number, "x"),
                        "subjectDN": certificate.subject.rfc4514_string(),
                        "issuerDN": certificate.issuer.rfc4514_string(),
                        "notBeforeT": int(certificate.not_valid_before_utc.timestamp()),
                        "notAfterT": int(certificate.not_valid_after_utc.timestamp()),
                    }
                ],
            }
        return {
            "func": "pkcs11info",
            "ret_code": OK,
            "last_error": OK,
            "version": VERSION,
            "slots": [{"slotDescription": SLOT_DESCRIPTION, "token": token}],
        }

    def make_signature(self, request: dict[str, Any]) -> dict[str, Any]:
        if not self.present:
            return _failure(NO_TOKEN, "找不到卡片")
        pin = request.get("pin")
        if not isinstance(pin, str) or not hmac.compare_digest(pin.encode(), self.pin.encode()):
            return _failure(PIN_FAILED, "卡片登入失敗 (PIN 碼錯誤)")
        if request.get("hashAlgorithm", "SHA256") != "SHA256":
            return _failure(BAD_REQUEST, "模擬器只支援 SHA256")
        try:
            tbs = _tbs_bytes(request)
        except ValueError as exc:
            return _failure(BAD_REQUEST, str(exc))

        with_card_serial = request.get("withCardSN") == "true"
        if request.get("signatureType", "PKCS7") == "PKCS1":
            signature = self.holder.key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
        else:
            signature = self.signed_data(tbs, with_card_serial=with_card_serial)
        self.signatures += 1
        return {
            "func": "sign",
            "ret_code": OK,
            "last_error": OK,
            "message": "",
            "signature": base64.b64encode(signature).decode(),
            "cardSN": self.holder.card_serial if with_card_serial else "",
            "nonce": request.get("nonce", ""),
            "version": VERSION,
        }

    def signed_data(self, tbs: bytes, *, with_card_serial: bool) -> bytes:
        """Build a DER CMS SignedData over ``tbs`` (content attached, one signer, RSA SHA-256)."""
        certificate = self.holder.certificate
        now = datetime.datetime.now(datetime.UTC).strftime("%y%m%d%H%M%SZ").encode()
        attributes = [
            _attribute(OID_CONTENT_TYPE, der.encode_oid(OID_DATA)),
            _attribute(OID_SIGNING_TIME, der.encode(der.UTC_TIME, now)),
            _attribute(
                OID_MESSAGE_DIGEST, der.encode(der.OCTET_STRING, hashlib.sha256(tbs).digest())
            ),
        ]
        if with_card_serial:
            serial = der.encode(der.PRINTABLE_STRING, self.holder.card_serial.encode("ascii"))
            attributes.append(_attribute(OID_CARD_SERIAL, serial))
        signed_attributes = der.encode_set_of(attributes)
        signature = self.holder.key.sign(signed_attributes, padding.PKCS1v15(), hashes.SHA256())

        sha256 = der.encode(der.SEQUENCE, der.encode_oid(OID_SHA256) + der.encode(der.NULL, b""))
        rsa = der.encode(der.SEQUENCE, der.encode_oid(OID_RSA) + der.encode(der.NULL, b""))
        issuer_and_serial = der.encode(
            der.SEQUENCE,
            certificate.issuer.public_bytes() + der.encode_integer(certificate.serial_number),
        )
        signer = der.encode(
            der.SEQUENCE,
            der.encode_integer(1)
            + issuer_and_serial
            + sha256
            + der.encode(0xA0, der.read_single(signed_attributes).content)
            + rsa
            + der.encode(der.OCTET_STRING, signature),
        )
        content = der.encode(
            der.SEQUENCE,
            der.encode_oid(OID_DATA) + der.encode(0xA0, der.encode(der.OCTET_STRING, tbs)),
        )
        signed = der.encode(
            der.SEQUENCE,
            der.encode_integer(1)
            + der.encode(der.SET, sha256)
            + content
            + der.encode(0xA0, certificate.public_bytes(serialization.Encoding.DER))
            + der.encode(der.SET, signer),
        )
        return der.encode(der.SEQUENCE, der.encode_oid(OID_SIGNED_DATA) + der.encode(0xA0, signed))


def _attribute(oid: str, value: bytes) -> bytes:
    return der.encode(der.SEQUENCE, der.encode_oid(oid) + der.encode(der.SET, value))


def _tbs_bytes(request: dict[str, Any]) -> bytes:
    tbs = request.get("tbs")
    if not isinstance(tbs, str) or not tbs:
        raise ValueError("缺少 tbs")
    if request.get("tbsEncoding", "NONE") == "base64":
        try:
            data = base64.b64decode(tbs, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("tbs 不是有效的 base64") from None
    else:
        data = tbs.encode("utf-8")
    if len(data) > MAX_TBS_BYTES:
        raise ValueError("tbs 過長")
    return data


def _failure(code: int, message: str) -> dict[str, Any]:
    return {
        "func": "sign",
        "ret_code": code,
        "last_error": code,
        "message": message,
        "signature": "",
        "version": VERSION,
    }
