"""Stand-ins for outside services (the MOI SP API) and a test PKI shaped like GRCA → MOICA.

The PKI issues RSA certificates with the MOICA profile features that ``push.verify`` checks:
key usage digitalSignature and the last 4 digits of the ID number in subjectDirectoryAttributes
(2.5.29.9), attribute 2.16.886.1.100.2.51, as a PrintableString.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from server.card.moica import encode_id_suffix_attributes
from server.testpki import ca_certificate, id_suffix_extension

# The MOICA last-4 attribute as the tests name it: SEQUENCE { SEQUENCE { OID, SET { String } } }.
subject_directory_attributes = encode_id_suffix_attributes

TEST_KEY_BITS = 2048  # MOICA-G2 key size; G3 uses 4096, which is slower to generate


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "TW"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=TEST_KEY_BITS)


def _ca_cert(
    name: str,
    key: rsa.RSAPrivateKey,
    issuer_name: str,
    issuer_key: rsa.RSAPrivateKey,
    now: dt.datetime,
    path_length: int | None,
) -> x509.Certificate:
    return ca_certificate(
        _name(name),
        key,
        _name(issuer_name),
        issuer_key,
        not_before=now - dt.timedelta(days=365),
        not_after=now + dt.timedelta(days=3650),
        path_length=path_length,
        digital_signature=False,
    )


@dataclass
class UserCredential:
    """A test user's mobile MOICA certificate and private key."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @property
    def cert_b64(self) -> str:
        return base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()

    def sign_b64(self, data: bytes) -> str:
        """Sign like the app: RSA PKCS#1 v1.5 over SHA-256 of ``data``, base64."""
        return base64.b64encode(self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())).decode()


@dataclass
class TestPki:
    """A GRCA-like root and a MOICA-like intermediate that issue user certificates."""

    __test__ = False  # not a pytest test class

    root_key: rsa.RSAPrivateKey
    root: x509.Certificate
    ca_key: rsa.RSAPrivateKey
    ca: x509.Certificate
    issued: list[UserCredential] = field(default_factory=list)

    def issue(
        self,
        id_number: str,
        *,
        name: str = "測試使用者",
        now: dt.datetime | None = None,
        valid_days: int = 365,
        expired: bool = False,
        digital_signature: bool = True,
        last4: str | None = "",
        issuer: tuple[rsa.RSAPrivateKey, x509.Certificate] | None = None,
    ) -> UserCredential:
        """Issue a user certificate; ``last4=""`` takes the real last 4, None leaves it out."""
        now = now or dt.datetime.now(dt.UTC)
        start = now - dt.timedelta(days=30)
        if expired:
            start, now = now - dt.timedelta(days=400), now - dt.timedelta(days=35)
        ca_key, ca = issuer or (self.ca_key, self.ca)
        key = _new_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(now + dt.timedelta(days=valid_days) if not expired else now)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature,
                    not digital_signature,
                    False,
                    False,
                    False,
                    False,
                    False,
                    False,
                    False,
                ),
                critical=True,
            )  # fmt: skip
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if last4 is not None:
            extension = id_suffix_extension(last4 or id_number[-4:])
            builder = builder.add_extension(extension, critical=False)
        credential = UserCredential(key, builder.sign(ca_key, hashes.SHA256()))
        self.issued.append(credential)
        return credential


def make_test_pki(now: dt.datetime | None = None, *, label: str = "") -> TestPki:
    """Create a fresh root (GRCA-like) and intermediate (MOICA-like), valid around ``now``."""
    now = now or dt.datetime.now(dt.UTC)
    root_key, ca_key = _new_key(), _new_key()
    root_name = f"Test Government Root CA{label}"
    root = _ca_cert(root_name, root_key, root_name, root_key, now, None)
    ca = _ca_cert(f"Test MOICA{label}", ca_key, root_name, root_key, now, 0)
    return TestPki(root_key, root, ca_key, ca)
