"""Verify a card signature over a challenge: CMS SignedData (PKCS#7) or a bare PKCS#1 signature.

A HiPKI ``MakeSignature`` result in PKCS#7 form is a SignedData with one signer whose signed
attributes carry the content type, the SHA-256 message digest of the signed text and, when the
page asks ``withCardSN``, the card number. The signature covers the DER of the signed attributes
(re-tagged from ``[0] IMPLICIT`` to ``SET OF``, RFC 5652 section 5.4), so checking it proves the
card signed exactly this challenge.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from server.card import der
from server.card.der import DerError, Tlv

OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_DATA = "1.2.840.113549.1.7.1"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_RSA = "1.2.840.113549.1.1.1"
OID_SHA256_RSA = "1.2.840.113549.1.1.11"
OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2"
# MOICA: the card number as a signed attribute when MakeSignature is called withCardSN.
OID_CARD_SERIAL = "2.16.886.1.100.2.204"

MAX_SIGNATURE_BYTES = 16 * 1024  # a SignedData with one signer and its chain fits easily
MAX_EMBEDDED_CERTIFICATES = 5  # signer plus a short chain; more is not a card's signature
RSA_SIGNATURE_ALGORITHMS = (OID_RSA, OID_SHA256_RSA)


class SignatureInvalid(ValueError):
    """The signature is malformed, does not verify, or does not cover the challenge."""


@dataclass(frozen=True, slots=True)
class SignerInfo:
    issuer: bytes  # DER of the signer certificate's issuer Name
    serial_number: int
    digest_algorithm: str
    signed_attributes: bytes  # DER re-tagged as SET OF, the bytes the signature covers
    attributes: dict[str, list[Tlv]]  # attribute OID -> its values
    signature_algorithm: str
    signature: bytes


@dataclass(frozen=True, slots=True)
class SignedData:
    content_type: str
    content: bytes | None  # None for a detached signature
    certificates: list[x509.Certificate]
    signer: SignerInfo


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    certificate: x509.Certificate  # the signer certificate (path checks are the caller's job)
    intermediates: list[x509.Certificate]  # other certificates that came with the signature
    card_serial: str | None


def parse_signed_data(data: bytes) -> SignedData:
    """Parse a DER ContentInfo holding a SignedData with exactly one signer."""
    if len(data) > MAX_SIGNATURE_BYTES:
        raise SignatureInvalid("signature too large")
    try:
        return _parse(data)
    except (DerError, ValueError, IndexError) as exc:
        raise SignatureInvalid(f"malformed PKCS#7 SignedData: {exc}") from None


def _parse(data: bytes) -> SignedData:
    info = der.read_single(data).expect(der.SEQUENCE).children()
    if der.decode_oid(info[0]) != OID_SIGNED_DATA:
        raise SignatureInvalid("content type is not SignedData")
    (signed,) = info[1].expect(0xA0).children()
    fields = signed.expect(der.SEQUENCE).children()
    der.decode_integer(fields[0])  # version: 1 or 3, not otherwise meaningful here
    fields[1].expect(der.SET)

    encapsulated = fields[2].expect(der.SEQUENCE).children()
    content_type = der.decode_oid(encapsulated[0])
    content = None
    if len(encapsulated) > 1:
        (octets,) = encapsulated[1].expect(0xA0).children()
        content = octets.expect(der.OCTET_STRING).content

    rest = fields[3:]
    certificates: list[x509.Certificate] = []
    if rest and rest[0].tag == 0xA0:
        items = rest[0].children()
        if len(items) > MAX_EMBEDDED_CERTIFICATES:
            raise SignatureInvalid("too many certificates in the signature")
        certificates = [x509.load_der_x509_certificate(item.encoded) for item in items]
        rest = rest[1:]
    if rest and rest[0].tag == 0xA1:  # CRLs: not used
        rest = rest[1:]
    if len(rest) != 1:
        raise SignatureInvalid("unexpected fields after the certificates")
    signers = rest[0].expect(der.SET).children()
    if len(signers) != 1:
        raise SignatureInvalid(f"expected one signer, found {len(signers)}")
    return SignedData(content_type, content, certificates, _parse_signer(signers[0]))


def _parse_signer(tlv: Tlv) -> SignerInfo:
    fields = tlv.expect(der.SEQUENCE).children()
    if der.decode_integer(fields[0]) != 1:
        raise SignatureInvalid("signer is not identified by issuer and serial number")
    issuer, serial = fields[1].expect(der.SEQUENCE).children()
    digest_algorithm = der.decode_oid(fields[2].expect(der.SEQUENCE).children()[0])

    if fields[3].tag != 0xA0:
        raise SignatureInvalid("signed attributes are missing")
    signed_attributes = der.encode(der.SET, fields[3].content)
    attributes: dict[str, list[Tlv]] = {}
    for attribute in fields[3].children():
        oid_tlv, values = attribute.expect(der.SEQUENCE).children()
        oid = der.decode_oid(oid_tlv)
        if oid in attributes:
            raise SignatureInvalid(f"signed attribute {oid} appears twice")
        attributes[oid] = values.expect(der.SET).children()

    signature_algorithm = der.decode_oid(fields[4].expect(der.SEQUENCE).children()[0])
    signature = fields[5].expect(der.OCTET_STRING).content
    return SignerInfo(
        issuer=issuer.expect(der.SEQUENCE).encoded,
        serial_number=der.decode_integer(serial),
        digest_algorithm=digest_algorithm,
        signed_attributes=signed_attributes,
        attributes=attributes,
        signature_algorithm=signature_algorithm,
        signature=signature,
    )


def verify_pkcs7(
    signature: bytes, challenge: bytes, certificate: x509.Certificate | None = None
) -> VerifiedSignature:
    """Verify a SignedData over ``challenge``; ``certificate`` is the one GetUserCert returned.

    The signer certificate is taken from the SignedData; a certificate sent beside it must be
    the same one. Raise ``SignatureInvalid`` on any mismatch.
    """
    signed = parse_signed_data(signature)
    signer = signed.signer
    if signed.content_type != OID_DATA:
        raise SignatureInvalid("signed content type is not id-data")
    if signed.content is not None and not hmac.compare_digest(signed.content, challenge):
        raise SignatureInvalid("signed content is not the challenge")
    if signer.digest_algorithm != OID_SHA256:
        raise SignatureInvalid("digest algorithm is not SHA-256")

    content_types = signer.attributes.get(OID_CONTENT_TYPE, [])
    if len(content_types) != 1 or der.decode_oid(content_types[0]) != signed.content_type:
        raise SignatureInvalid("content-type attribute is missing or wrong")
    digests = signer.attributes.get(OID_MESSAGE_DIGEST, [])
    if len(digests) != 1:
        raise SignatureInvalid("message-digest attribute is missing")
    expected = hashlib.sha256(challenge).digest()
    if not hmac.compare_digest(digests[0].expect(der.OCTET_STRING).content, expected):
        raise SignatureInvalid("message digest does not match the challenge")

    signer_cert = _signer_certificate(signed, certificate)
    _verify_raw(signer_cert, signer.signature, signer.signed_attributes, signer.signature_algorithm)
    others = [c for c in signed.certificates if c != signer_cert]
    return VerifiedSignature(signer_cert, others, _card_serial(signer))


def verify_pkcs1(
    signature: bytes, challenge: bytes, certificate: x509.Certificate
) -> VerifiedSignature:
    """Verify a bare PKCS#1 v1.5 (or ECDSA) SHA-256 signature over ``challenge``."""
    if len(signature) > MAX_SIGNATURE_BYTES:
        raise SignatureInvalid("signature too large")
    _verify_raw(certificate, signature, challenge, OID_SHA256_RSA)
    return VerifiedSignature(certificate, [], None)


def _signer_certificate(signed: SignedData, sent: x509.Certificate | None) -> x509.Certificate:
    signer = signed.signer
    candidates = [c for c in signed.certificates if _identifies(signer, c)]
    if sent is not None:
        if not _identifies(signer, sent):
            raise SignatureInvalid("the certificate sent is not the signer's")
        return sent
    if not candidates:
        raise SignatureInvalid("the signer certificate is missing")
    return candidates[0]


def _identifies(signer: SignerInfo, certificate: x509.Certificate) -> bool:
    return (
        certificate.serial_number == signer.serial_number
        and certificate.issuer.public_bytes() == signer.issuer
    )


def _verify_raw(
    certificate: x509.Certificate, signature: bytes, data: bytes, algorithm: str
) -> None:
    key = certificate.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey) and algorithm in RSA_SIGNATURE_ALGORITHMS:
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm in (
            OID_ECDSA_SHA256,
            OID_SHA256_RSA,  # PKCS1 mode passes the RSA name; an EC card signs with ECDSA
        ):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            raise SignatureInvalid(f"signature algorithm {algorithm} does not fit the key")
    except InvalidSignature:
        raise SignatureInvalid("signature does not verify") from None


def _card_serial(signer: SignerInfo) -> str | None:
    values = signer.attributes.get(OID_CARD_SERIAL)
    if not values:
        return None
    value = values[0]
    try:
        if value.tag == der.OCTET_STRING:
            return value.content.decode("ascii")
        return der.decode_string(value)
    except (DerError, UnicodeDecodeError):
        raise SignatureInvalid("card serial attribute is malformed") from None
