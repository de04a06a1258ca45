"""Verification of a SIGN-mode result: the signature, the certificate chain and the ID last-4.

Run this after the client has verified the ``idp_checksum``. The work is CPU-bound (RSA, chain
building), so servers call it through ``asyncio.to_thread``.

The signature scheme follows the certificate's key: RSA keys (real MOICA mobile certificates)
must sign with PKCS#1 v1.5 over SHA-256; EC P-256 keys (the embedded authority's test devices)
with ECDSA over SHA-256, the signature DER-encoded.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from push.client import TBS_ENCODING, AthResult

MAX_CHAIN_DEPTH = 3  # user → MOICA → GRCA, plus one cross-certificate at most
MAX_CERT_B64_CHARS = 16 * 1024  # a 4096-bit MOICA user certificate is about 2.5 KB of base64
MAX_SIGNATURE_B64_CHARS = 2048  # base64 of an RSA-4096 signature is 684 characters
EC_CURVE = "secp256r1"  # the only curve accepted: the embedded authority's device keys use it
# Ways to check hashed_id_num (twfido.hashed_id_num); the real hash is unconfirmed.
HASHED_ID_SCHEMES = ("off", "sha256-hex")
MAX_DER_ITEMS = 32  # attributes read from subjectDirectoryAttributes, against hostile input

SUBJECT_DIRECTORY_ATTRIBUTES = x509.ObjectIdentifier("2.5.29.9")
# Content octets of OID 2.16.886.1.100.2.51, the MOICA attribute with the ID number's last 4.
ID_LAST4_OID = bytes.fromhex("60867601640233")
_STRING_TAGS = frozenset({0x0C, 0x12, 0x13, 0x16})  # UTF8, Numeric, Printable, IA5 String


class VerificationFailed(Exception):
    """Base of the SIGN-mode verification errors."""


class SignatureInvalid(VerificationFailed):
    """``signed_response`` is not a valid signature over ``sign_data`` by the certificate's key."""


class CertificateInvalid(VerificationFailed):
    """The certificate is malformed, untrusted, outside its validity, or not the user's."""


class IdentityMismatch(VerificationFailed):
    """``hashed_id_num`` does not belong to the ID number the login was started for."""


class SignedResultVerifier:
    """The SIGN-mode check a login method awaits: ``await verifier(result, sign_data, id_num)``.

    ``load_anchors`` is a blocking function returning the trust anchors; ``load()`` runs it once
    in a worker thread at start. Every certificate it returns is also offered as an
    intermediate, so one file may hold GRCA and MOICA together. Raises ``VerificationFailed``.
    """

    def __init__(
        self,
        load_anchors: Callable[[], list[x509.Certificate]],
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._load_anchors = load_anchors
        self._clock = clock
        self._anchors: list[x509.Certificate] = []

    async def load(self) -> None:
        self._anchors = await asyncio.to_thread(self._load_anchors)
        if not self._anchors:
            raise ValueError("no trust anchors for SIGN-mode results")

    @property
    def anchors(self) -> list[x509.Certificate]:
        return list(self._anchors)

    async def __call__(self, result: AthResult, sign_data: str, id_number: str) -> None:
        try:
            await asyncio.to_thread(
                verify_signed_result,
                result,
                sign_data=sign_data,
                id_number=id_number,
                anchors=self._anchors,
                intermediates=self._anchors,
                now=self._clock(),
            )
        except VerificationFailed:
            raise
        except ValueError as exc:  # e.g. an unreadable public key in the certificate
            raise CertificateInvalid(f"certificate rejected: {exc}") from None


def verify_signed_result(
    result: AthResult,
    *,
    sign_data: str,
    id_number: str,
    anchors: list[x509.Certificate],
    now: dt.datetime,
    intermediates: Sequence[x509.Certificate] = (),
) -> None:
    """Raise ``SignatureInvalid`` or ``CertificateInvalid`` unless the signed result is good.

    ``sign_data`` is the text sent in ``sign_info``. Because the client sends
    ``tbs_encoding=base64``, the signed bytes are its base64 decoding.
    """
    cert = _load_cert(result.cert)
    _check_signature(cert, result.signed_response, _signed_bytes(sign_data))
    _check_chain(cert, anchors, intermediates, now)
    _check_key_usage(cert)
    _check_last4(cert, id_number)


def load_trust_anchors(paths: Sequence[Path]) -> list[x509.Certificate]:
    """Read every certificate of the PEM files ``paths`` (blocking file I/O; call in a thread).

    A file may hold several certificates (GRCA and MOICA, or two CA generations). Raise
    ``ValueError`` naming the file when one cannot be read or contains no certificate.
    """
    anchors: list[x509.Certificate] = []
    for path in paths:
        try:
            anchors.extend(x509.load_pem_x509_certificates(path.read_bytes()))
        except OSError as exc:
            raise ValueError(f"cannot read trust anchor file {path}: {exc.strerror}") from None
        except ValueError:
            raise ValueError(f"trust anchor file {path} contains no PEM certificate") from None
    return anchors


def _load_cert(cert_b64: str) -> x509.Certificate:
    if not cert_b64 or len(cert_b64) > MAX_CERT_B64_CHARS:
        raise CertificateInvalid("certificate missing or too large")
    try:
        return x509.load_der_x509_certificate(base64.b64decode(cert_b64, validate=True))
    except (binascii.Error, ValueError):
        raise CertificateInvalid("certificate is not base64 DER") from None


def _signed_bytes(sign_data: str) -> bytes:
    if TBS_ENCODING != "base64":
        return sign_data.encode("utf-8")
    try:
        return base64.b64decode(sign_data, validate=True)
    except binascii.Error:
        raise ValueError("sign_data is not base64, but tbs_encoding is base64") from None


def _check_signature(cert: x509.Certificate, signature_b64: str, data: bytes) -> None:
    if not signature_b64 or len(signature_b64) > MAX_SIGNATURE_B64_CHARS:
        raise SignatureInvalid("signed_response missing or too large")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except binascii.Error:
        raise SignatureInvalid("signed_response is not base64") from None

    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == EC_CURVE:
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            raise CertificateInvalid("certificate key is neither RSA nor EC P-256")
    except (InvalidSignature, ValueError):
        # ValueError: a DER ECDSA signature that does not even parse.
        raise SignatureInvalid("signed_response does not verify with the certificate") from None


def _check_chain(
    cert: x509.Certificate,
    anchors: list[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
    now: dt.datetime,
) -> None:
    """Build a chain to an anchor and check every certificate's validity at ``now``.

    The end-entity policy permits any extensions because MOICA user certificates carry no
    clientAuth extended key usage. ``_check_key_usage`` checks the one usage that matters.
    """
    if not anchors:
        raise CertificateInvalid("no trust anchors configured")
    # NOTE: the CA side uses cryptography's Web PKI defaults; real GRCA/MOICA certificates
    # have not been run through it here. Revocation (OCSP/CRL) is not checked yet.
    verifier = (
        PolicyBuilder()
        .store(Store(anchors))
        .time(now)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=ExtensionPolicy.permit_all(),
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(cert, list(intermediates))
    except VerificationError as exc:
        raise CertificateInvalid(f"certificate chain rejected: {exc}") from None


def _check_key_usage(cert: x509.Certificate) -> None:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise CertificateInvalid("certificate has no key usage extension") from None
    if not usage.digital_signature:
        raise CertificateInvalid("certificate key usage lacks digitalSignature")


def _check_last4(cert: x509.Certificate, id_number: str) -> None:
    """Compare the last-4 attribute, when the certificate has one, with the ID number."""
    try:
        extension = cert.extensions.get_extension_for_oid(SUBJECT_DIRECTORY_ATTRIBUTES)
    except x509.ExtensionNotFound:
        return
    last4 = id_last4_from_attributes(extension.value.public_bytes())
    if last4 is not None and last4 != id_number[-4:]:
        raise CertificateInvalid("certificate belongs to another ID number (last 4 differ)")


def check_hashed_id_num(hashed_id_num: str, id_number: str, scheme: str) -> None:
    """Raise ``IdentityMismatch`` unless ``hashed_id_num`` is ``id_number`` hashed by ``scheme``.

    ``"off"`` checks nothing. ``"sha256-hex"``: lowercase hex SHA-256 of the upper-case ID
    number's ASCII bytes, as the embedded authority and the test fake compute it.
    """
    # NOTE: MOI's hash for hashed_id_num is unconfirmed, so the check is off unless configured.
    if scheme == "off":
        return
    if scheme != "sha256-hex":
        raise ValueError(f"unknown hashed_id_num scheme {scheme!r}")
    expected = hashlib.sha256(id_number.upper().encode("ascii")).hexdigest()
    if not hmac.compare_digest(hashed_id_num.strip().lower().encode(), expected.encode()):
        raise IdentityMismatch("hashed_id_num does not match the ID number")


def id_last4_from_attributes(der: bytes) -> str | None:
    """Return the ID last-4 attribute from a subjectDirectoryAttributes value, or None.

    Assumed encoding: ``SEQUENCE OF Attribute``, where ``Attribute ::= SEQUENCE { type OID,
    values SET OF value }`` and the value is a character string (PrintableString in the test PKI;
    UTF8, Numeric and IA5 String are accepted too). Raise ``CertificateInvalid`` on malformed DER.
    """
    tag, attributes, rest = _read_tlv(der)
    if tag != 0x30 or rest:
        raise CertificateInvalid("subjectDirectoryAttributes is not a SEQUENCE")
    for _ in range(MAX_DER_ITEMS):
        if not attributes:
            return None
        tag, attribute, attributes = _read_tlv(attributes)
        if tag != 0x30:
            raise CertificateInvalid("subjectDirectoryAttributes has a non-SEQUENCE attribute")
        oid_tag, oid, values = _read_tlv(attribute)
        if oid_tag != 0x06:
            raise CertificateInvalid("attribute type is not an OID")
        if oid != ID_LAST4_OID:
            continue
        set_tag, members, _ = _read_tlv(values)
        if set_tag != 0x31 or not members:
            raise CertificateInvalid("ID last-4 attribute has no value")
        value_tag, value, _ = _read_tlv(members)
        if value_tag not in _STRING_TAGS:
            raise CertificateInvalid("ID last-4 attribute is not a character string")
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise CertificateInvalid("ID last-4 attribute is not text") from None
    raise CertificateInvalid("subjectDirectoryAttributes has too many attributes")


def _read_tlv(data: bytes) -> tuple[int, bytes, bytes]:
    """Split one DER tag-length-value off ``data``: (tag, value, remaining bytes)."""
    if len(data) < 2:
        raise CertificateInvalid("truncated DER")
    tag, first = data[0], data[1]
    offset = 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if not 1 <= count <= 3 or len(data) < 2 + count:
            raise CertificateInvalid("unsupported DER length")
        length = int.from_bytes(data[2 : 2 + count], "big")
        offset += count
    if len(data) < offset + length:
        raise CertificateInvalid("truncated DER")
    return tag, data[offset : offset + length], data[offset + length :]
