"""SIGN-mode verification: an RSA GRCA-like → MOICA-like → user test PKI, and the embedded
authority's EC P-256 test CA with device keys."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from push.authority import ca
from push.client import AthResult
from push.verify import (
    CertificateInvalid,
    IdentityMismatch,
    SignatureInvalid,
    SignedResultVerifier,
    check_hashed_id_num,
    id_last4_from_attributes,
    load_trust_anchors,
    verify_signed_result,
)
from tests.fakes import TestPki, UserCredential, make_test_pki, subject_directory_attributes

ID = "A123456789"
SIGN_DATA = base64.b64encode(b"ebas-login challenge 42").decode()
NOW = dt.datetime.now(dt.UTC)
ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())  # how the embedded authority's devices sign


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


# -- ECDSA P-256: the embedded authority's test CA and device keys ------------------------------


@pytest.fixture(scope="module")
def embedded_ca(tmp_path_factory: pytest.TempPathFactory) -> ca.TestCa:
    return ca.load_or_create(tmp_path_factory.mktemp("authority"))


def device_result(
    test_ca: ca.TestCa, *, id_number: str = ID, data: bytes | None = None
) -> AthResult:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = test_ca.issue_device_certificate(key.public_key(), id_number, "dev_test")
    signature = key.sign(base64.b64decode(SIGN_DATA) if data is None else data, ECDSA_SHA256)
    return AthResult(
        "txn-1",
        "hash",
        base64.b64encode(signature).decode(),
        base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode(),
    )


def check_embedded(test_ca: ca.TestCa, result: AthResult, *, id_number: str = ID) -> None:
    verify_signed_result(
        result,
        sign_data=SIGN_DATA,
        id_number=id_number,
        anchors=[test_ca.root_cert],
        intermediates=[test_ca.intermediate_cert],
        now=NOW,
    )


def test_ecdsa_device_signature_passes(embedded_ca):
    check_embedded(embedded_ca, device_result(embedded_ca))


def test_ecdsa_signature_over_other_data_fails(embedded_ca):
    with pytest.raises(SignatureInvalid):
        check_embedded(embedded_ca, device_result(embedded_ca, data=b"other challenge"))


def test_ecdsa_garbage_der_signature_fails(embedded_ca):
    good = device_result(embedded_ca)
    garbage = AthResult("txn-1", "hash", base64.b64encode(b"\x30\x02\x01").decode(), good.cert)

    with pytest.raises(SignatureInvalid):
        check_embedded(embedded_ca, garbage)


def test_ecdsa_last4_mismatch_fails(embedded_ca):
    with pytest.raises(CertificateInvalid, match="last 4"):
        check_embedded(embedded_ca, device_result(embedded_ca), id_number="A123450000")


def test_rsa_signature_on_ec_certificate_fails(embedded_ca, pki):
    rsa_signature = signed(pki.issue(ID)).signed_response
    mixed = AthResult("txn-1", "hash", rsa_signature, device_result(embedded_ca).cert)

    with pytest.raises(SignatureInvalid):
        check_embedded(embedded_ca, mixed)


def test_other_curve_is_refused(embedded_ca):
    key = ec.generate_private_key(ec.SECP384R1())
    cert = embedded_ca.issue_device_certificate(key.public_key(), ID, "dev_p384")
    signature = key.sign(base64.b64decode(SIGN_DATA), ec.ECDSA(hashes.SHA384()))
    result = AthResult(
        "txn-1",
        "hash",
        base64.b64encode(signature).decode(),
        base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode(),
    )

    with pytest.raises(CertificateInvalid, match="P-256"):
        check_embedded(embedded_ca, result)


# -- trust anchor files and the async verifier -------------------------------------------------


def test_anchor_file_with_several_certificates_loads_all(pki, tmp_path):
    bundle = tmp_path / "anchors.pem"
    bundle.write_bytes(
        pki.root.public_bytes(serialization.Encoding.PEM)
        + pki.ca.public_bytes(serialization.Encoding.PEM)
    )

    assert load_trust_anchors([bundle]) == [pki.root, pki.ca]


def test_anchor_file_without_certificate_names_file(tmp_path):
    empty = tmp_path / "empty.pem"
    empty.write_text("no certificate here\n")

    with pytest.raises(ValueError, match="empty.pem"):
        load_trust_anchors([empty])


def test_missing_anchor_file_names_file(tmp_path):
    with pytest.raises(ValueError, match="missing.pem"):
        load_trust_anchors([tmp_path / "missing.pem"])


async def test_verifier_accepts_chain_through_anchor_bundle(pki):
    verifier = SignedResultVerifier(lambda: [pki.root, pki.ca])
    await verifier.load()

    await verifier(signed(pki.issue(ID)), SIGN_DATA, ID)


async def test_verifier_rejects_bad_signature(pki):
    verifier = SignedResultVerifier(lambda: [pki.root, pki.ca])
    await verifier.load()

    with pytest.raises(SignatureInvalid):
        await verifier(signed(pki.issue(ID), data=b"forged"), SIGN_DATA, ID)


async def test_verifier_without_anchors_refuses_to_load():
    with pytest.raises(ValueError, match="anchors"):
        await SignedResultVerifier(list).load()


# -- hashed_id_num ---------------------------------------------------------------------------------


def test_hashed_id_num_check_off_accepts_anything():
    check_hashed_id_num("whatever", ID, "off")


def test_hashed_id_num_sha256_hex_matches():
    check_hashed_id_num(hashlib.sha256(ID.encode()).hexdigest().upper(), ID, "sha256-hex")


def test_hashed_id_num_of_other_id_fails():
    other = hashlib.sha256(b"B142857136").hexdigest()

    with pytest.raises(IdentityMismatch):
        check_hashed_id_num(other, ID, "sha256-hex")
