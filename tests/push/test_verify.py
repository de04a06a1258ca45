"""SIGN-mode verification against a generated GRCA-like → MOICA-like → user test PKI."""

from __future__ import annotations

import base64
import datetime as dt

import pytest

from push.client import AthResult
from push.verify import (
    CertificateInvalid,
    SignatureInvalid,
    id_last4_from_attributes,
    verify_signed_result,
)
from tests.fakes import TestPki, UserCredential, make_test_pki, subject_directory_attributes

ID = "A123456789"
SIGN_DATA = base64.b64encode(b"ebas-login challenge 42").decode()
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def pki() -> TestPki:
    return make_test_pki(NOW)


def signed(credential: UserCredential, data: bytes | None = None) -> AthResult:
    signature = credential.sign_b64(base64.b64decode(SIGN_DATA) if data is None else data)
    return AthResult("txn-1", "hash", signature, credential.cert_b64)


def check(pki: TestPki, result: AthResult, *, id_number: str = ID, now: dt.datetime = NOW) -> None:
    verify_signed_result(
        result,
        sign_data=SIGN_DATA,
        id_number=id_number,
        anchors=[pki.root],
        intermediates=[pki.ca],
        now=now,
    )


def test_good_signature_passes(pki):
    check(pki, signed(pki.issue(ID)))


def test_intermediate_as_anchor_passes(pki):
    result = signed(pki.issue(ID))

    verify_signed_result(result, sign_data=SIGN_DATA, id_number=ID, anchors=[pki.ca], now=NOW)


def test_certificate_without_last4_passes(pki):
    check(pki, signed(pki.issue(ID, last4=None)))


def test_signature_over_other_data_fails(pki):
    result = signed(pki.issue(ID), data=b"something else")

    with pytest.raises(SignatureInvalid):
        check(pki, result)


def test_signature_by_other_key_fails(pki):
    holder, other = pki.issue(ID), pki.issue(ID)
    result = AthResult("txn-1", "hash", signed(other).signed_response, holder.cert_b64)

    with pytest.raises(SignatureInvalid):
        check(pki, result)


def test_garbled_signature_fails(pki):
    result = AthResult("txn-1", "hash", "not base64!", pki.issue(ID).cert_b64)

    with pytest.raises(SignatureInvalid):
        check(pki, result)


def test_empty_signature_fails(pki):
    result = AthResult("txn-1", "hash", "", pki.issue(ID).cert_b64)

    with pytest.raises(SignatureInvalid):
        check(pki, result)


def test_expired_certificate_fails(pki):
    with pytest.raises(CertificateInvalid, match="chain"):
        check(pki, signed(pki.issue(ID, expired=True)))


def test_certificate_checked_at_given_time(pki):
    result = signed(pki.issue(ID, valid_days=10))

    with pytest.raises(CertificateInvalid):
        check(pki, result, now=NOW + dt.timedelta(days=20))


def test_unknown_issuer_fails(pki):
    stranger = make_test_pki(NOW, label=" (stranger)")
    result = signed(stranger.issue(ID))

    with pytest.raises(CertificateInvalid, match="chain"):
        verify_signed_result(
            result,
            sign_data=SIGN_DATA,
            id_number=ID,
            anchors=[pki.root],
            intermediates=[stranger.ca],
            now=NOW,
        )


def test_no_anchors_fails(pki):
    with pytest.raises(CertificateInvalid, match="anchors"):
        verify_signed_result(
            signed(pki.issue(ID)), sign_data=SIGN_DATA, id_number=ID, anchors=[], now=NOW
        )


def test_key_usage_without_digital_signature_fails(pki):
    with pytest.raises(CertificateInvalid, match="digitalSignature"):
        check(pki, signed(pki.issue(ID, digital_signature=False)))


def test_last4_mismatch_fails(pki):
    result = signed(pki.issue(ID))

    with pytest.raises(CertificateInvalid, match="last 4"):
        check(pki, result, id_number="A123450000")


def test_garbled_certificate_fails(pki):
    result = AthResult("txn-1", "hash", signed(pki.issue(ID)).signed_response, "AAAA")

    with pytest.raises(CertificateInvalid):
        check(pki, result)


def test_last4_parser_reads_attribute():
    assert id_last4_from_attributes(subject_directory_attributes("6789")) == "6789"


def test_last4_parser_skips_other_attributes():
    # SEQUENCE { SEQUENCE { OID 2.5.4.3, SET { PrintableString "x" } } }
    other = bytes.fromhex("300c300a0603550403310313017a")

    assert id_last4_from_attributes(other) is None


@pytest.mark.parametrize(
    "der",
    [
        b"",
        bytes.fromhex("3005"),  # length beyond the data
        bytes.fromhex("0400"),  # not a SEQUENCE
        bytes.fromhex("30020500"),  # attribute is not a SEQUENCE
        bytes.fromhex("3084ffffffff"),  # 4-byte length
    ],
)
def test_last4_parser_rejects_malformed(der):
    with pytest.raises(CertificateInvalid):
        id_last4_from_attributes(der)
