"""Certificate path checks for a card certificate: validity, key usage, chain to the anchors.

The chain itself is built and checked by ``cryptography.x509.verification`` (RFC 5280 path
building with the Web PKI profile for CA certificates). The end-entity policy is relaxed from
the Web PKI one, because card certificates carry no subjectAltName and no TLS extended key
usage; it requires keyUsage with digitalSignature instead. Validity and key usage are checked
first, on their own, so the user learns which of them failed.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

# GRCA → MOICA/GCA/XCA → holder: two CA levels; a little room for a cross-certificate.
MAX_CHAIN_DEPTH = 4


class PathError(ValueError):
    """The certificate cannot be accepted; ``reason`` is a stable key for the login ending."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class TrustAnchors:
    """Root certificates to trust, and CA certificates that may sit between them and a card."""

    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()

    @classmethod
    def from_pem_files(cls, roots: list[Path], intermediates: list[Path]) -> TrustAnchors:
        """Load PEM files (each may hold several certificates); blocking file I/O."""
        return cls(
            roots=tuple(cert for path in roots for cert in _load_pem(path)),
            intermediates=tuple(cert for path in intermediates for cert in _load_pem(path)),
        )

    def merged(self, other: TrustAnchors) -> TrustAnchors:
        return TrustAnchors(self.roots + other.roots, self.intermediates + other.intermediates)


def _load_pem(path: Path) -> list[x509.Certificate]:
    certificates = x509.load_pem_x509_certificates(path.read_bytes())
    if not certificates:
        raise ValueError(f"{path} contains no PEM certificate")
    return certificates


def check_certificate(
    certificate: x509.Certificate,
    anchors: TrustAnchors,
    now: datetime.datetime,
    extra_intermediates: list[x509.Certificate] | None = None,
) -> list[x509.Certificate]:
    """Check one card certificate at ``now``; return its chain, leaf first, root last.

    Raise ``PathError`` with reason ``not_yet_valid``, ``expired``, ``key_usage`` or
    ``untrusted_issuer``.
    """
    if now < certificate.not_valid_before_utc:
        raise PathError("not_yet_valid", f"valid from {certificate.not_valid_before_utc}")
    if now > certificate.not_valid_after_utc:
        raise PathError("expired", f"expired at {certificate.not_valid_after_utc}")
    _check_key_usage(certificate)

    if not anchors.roots:
        raise PathError("untrusted_issuer", "no trust anchors are configured")
    verifier = (
        PolicyBuilder()
        .store(Store(list(anchors.roots)))
        .time(now)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_card_policy()
        )
        .build_client_verifier()
    )
    intermediates = list(anchors.intermediates) + list(extra_intermediates or [])
    try:
        verified = verifier.verify(certificate, intermediates)
    except VerificationError as exc:
        raise PathError("untrusted_issuer", str(exc)) from None
    return list(verified.chain)


def _check_key_usage(certificate: x509.Certificate) -> None:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise PathError("key_usage", "keyUsage is missing") from None
    if not usage.digital_signature:
        raise PathError("key_usage", "keyUsage lacks digitalSignature")
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return
    if constraints.ca:
        raise PathError("key_usage", "a CA certificate cannot sign in")


def _require_digital_signature(
    policy: Policy, certificate: x509.Certificate, usage: x509.KeyUsage
) -> None:
    if not usage.digital_signature:
        raise ValueError("keyUsage lacks digitalSignature")


def _card_policy() -> ExtensionPolicy:
    return ExtensionPolicy.permit_all().require_present(
        x509.KeyUsage, Criticality.AGNOSTIC, _require_digital_signature
    )
