"""A test PKI with the MOICA card profile, for the HiPKI simulator, the demo and the tests.

It has a GRCA-like root, a MOICA-like issuing CA and holder certificates: subject CN = name,
keyUsage digitalSignature + nonRepudiation, the last 4 ID digits in subjectDirectoryAttributes,
an AIA OCSP URL and a CRL distribution point on the local responder (``server.ocsp_responder``).
Keys are RSA-2048 like real MOICA cards. Nothing it issues may be trusted outside tests and demos.
"""

from __future__ import annotations

import datetime
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from server.card.moica import SUBJECT_DIRECTORY_ATTRIBUTES, encode_id_suffix_attributes

RSA_BITS = 2048  # MOICA holder keys are RSA-2048
ROOT_DAYS = 20 * 365  # GRCA roots are long-lived
CA_DAYS = 10 * 365
HOLDER_DAYS = 5 * 365  # MOICA cards are valid for up to 8 years; 5 keeps tests simple
CLOCK_SKEW = datetime.timedelta(minutes=5)  # notBefore back-dated so a slow clock accepts it
OCSP_PATH = "/ocsp"
CRL_PATH = "/crl/moica-test.crl"


def pki_name(common_name: str) -> x509.Name:
    """Return a subject name of the ebas-login test PKI with this common name."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "TW"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ebas-login test PKI"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


ROOT_NAME = pki_name("GRCA Test Root (card simulator, not trusted)")
CA_NAME = pki_name("MOICA Test (card simulator, not trusted)")


@dataclass(frozen=True)
class Holder:
    """A card holder's certificate, private key and card number (the software token's contents)."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey
    card_serial: str

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class TestPki:
    root: x509.Certificate
    root_key: rsa.RSAPrivateKey
    ca: x509.Certificate
    ca_key: rsa.RSAPrivateKey
    responder_url: str  # base URL of the local OCSP/CRL responder, e.g. http://127.0.0.1:61162

    __test__ = False  # not a pytest test class, despite the name

    @classmethod
    def create(cls, responder_url: str, *, root_name: x509.Name = ROOT_NAME) -> TestPki:
        root_key = new_key()
        root = _ca_certificate(root_name, root_key, root_name, root_key, ROOT_DAYS, path_length=1)
        ca_key = new_key()
        ca = _ca_certificate(CA_NAME, ca_key, root_name, root_key, CA_DAYS, path_length=0)
        return cls(root, root_key, ca, ca_key, responder_url.rstrip("/"))

    @property
    def ocsp_url(self) -> str:
        return self.responder_url + OCSP_PATH

    @property
    def crl_url(self) -> str:
        return self.responder_url + CRL_PATH

    def issue(
        self,
        name: str,
        id_number: str | None,
        *,
        key: rsa.RSAPrivateKey | None = None,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        digital_signature: bool = True,
    ) -> Holder:
        """Issue a holder certificate; ``id_number`` None leaves out the last-4 attribute."""
        key = key or new_key()
        now = datetime.datetime.now(datetime.UTC)
        not_before = not_before or now - CLOCK_SKEW
        not_after = not_after or now + datetime.timedelta(days=HOLDER_DAYS)
        card_serial = "TP" + "".join(secrets.choice("0123456789") for _ in range(14))
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "TW"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, card_serial),
            ]
        )
        usage = x509.KeyUsage(
            digital_signature=digital_signature, content_commitment=digital_signature,
            key_encipherment=not digital_signature, data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False,
        )  # fmt: skip
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            AuthorityInformationAccessOID.OCSP,
                            x509.UniformResourceIdentifier(self.ocsp_url),
                        )
                    ]
                ),
                critical=False,
            )
            .add_extension(
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            full_name=[x509.UniformResourceIdentifier(self.crl_url)],
                            relative_name=None,
                            reasons=None,
                            crl_issuer=None,
                        )  # fmt: skip
                    ]
                ),
                critical=False,
            )
        )
        if id_number is not None:
            builder = builder.add_extension(id_suffix_extension(id_number[-4:]), critical=False)
        return Holder(builder.sign(self.ca_key, hashes.SHA256()), key, card_serial)

    # -- files (blocking I/O; the simulator keeps its PKI across restarts) ----------------------

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        write_private_key(folder / "root.key", self.root_key)
        write_private_key(folder / "ca.key", self.ca_key)
        (folder / "root.pem").write_bytes(self.root.public_bytes(serialization.Encoding.PEM))
        (folder / "ca.pem").write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))
        (folder / "responder-url").write_text(self.responder_url)

    @classmethod
    def load(cls, folder: Path) -> TestPki:
        return cls(
            root=x509.load_pem_x509_certificate((folder / "root.pem").read_bytes()),
            root_key=load_private_key(folder / "root.key"),
            ca=x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes()),
            ca_key=load_private_key(folder / "ca.key"),
            responder_url=(folder / "responder-url").read_text().strip(),
        )

    @classmethod
    def load_or_create(cls, folder: Path, responder_url: str) -> TestPki:
        """Load the PKI from ``folder``; create it when absent or made for another responder."""
        if (folder / "responder-url").exists():
            pki = cls.load(folder)
            if pki.responder_url == responder_url.rstrip("/"):
                return pki
        pki = cls.create(responder_url)
        pki.save(folder)
        return pki


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)


def save_holder(folder: Path, holder: Holder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_private_key(folder / "holder.key", holder.key)
    (folder / "holder.pem").write_bytes(holder.certificate_pem)
    (folder / "card-serial").write_text(holder.card_serial)


def load_holder(folder: Path) -> Holder | None:
    paths = [folder / name for name in ("holder.key", "holder.pem", "card-serial")]
    if not all(path.exists() for path in paths):
        return None
    return Holder(
        certificate=x509.load_pem_x509_certificate(paths[1].read_bytes()),
        key=load_private_key(paths[0]),
        card_serial=paths[2].read_text().strip(),
    )


def write_private_key(path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
    """Write a PEM private key readable only by its owner (created 0600, replaced atomically)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.replace(temporary, path)


def load_private_key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} is not an RSA private key")
    return key


def ca_certificate(
    subject: x509.Name,
    key: CertificateIssuerPrivateKeyTypes,
    issuer: x509.Name,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    *,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    path_length: int | None,
    digital_signature: bool,
) -> x509.Certificate:
    """Build a CA certificate (keyCertSign + cRLSign, key identifiers), signed with SHA-256.

    Shared by the card PKI here, the embedded authority's CA and the tests' mobile PKI, which
    differ only in key type, validity, path length and the digitalSignature bit.
    """
    usage = x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )


def id_suffix_extension(suffix: str) -> x509.UnrecognizedExtension:
    """Build the MOICA subjectDirectoryAttributes extension with the ID number's last 4 digits."""
    return x509.UnrecognizedExtension(
        SUBJECT_DIRECTORY_ATTRIBUTES, encode_id_suffix_attributes(suffix)
    )


def _ca_certificate(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    days: int,
    *,
    path_length: int,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    return ca_certificate(
        subject,
        key,
        issuer,
        issuer_key,
        not_before=now - CLOCK_SKEW,
        not_after=now + datetime.timedelta(days=days),
        path_length=path_length,
        digital_signature=True,
    )
