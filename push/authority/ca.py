"""Local test CA of the embedded authority: a GRCA-like root and a MOICA-like intermediate.

The CA issues the test mobile certificate of every enrolled device. It is created on first start
and kept in ``data_dir/twfido-ca/`` (private keys 0600). It is a stand-in for MOI's real PKI, so
nothing it issues should ever be trusted outside tests and demos.

NOTE: real MOICA mobile certificates are RSA (MOICA-G3: RSA-4096 under GRCA-G3). This CA and
the device keys are EC P-256, which keeps enrollment and signing fast.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from server.testpki import ca_certificate, id_suffix_extension, pki_name, write_private_key

log = logging.getLogger(__name__)

CA_DIR = "twfido-ca"
ROOT_DAYS = 20 * 365  # GRCA roots are long-lived; the test root outlives any demo data
INTERMEDIATE_DAYS = 10 * 365
DEVICE_CERT_DAYS = 2 * 365  # MOICA mobile certificates are issued for a few years
CLOCK_SKEW = datetime.timedelta(minutes=5)  # notBefore back-dated so a slow client clock accepts it

ROOT_NAME = pki_name("GRCA Test Root (embedded authority, not trusted)")
INTERMEDIATE_NAME = pki_name("MOICA Test (embedded authority, not trusted)")


@dataclass(frozen=True)
class TestCa:
    root_cert: x509.Certificate
    intermediate_cert: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey

    __test__ = False  # not a pytest test class, despite the name

    def issue_device_certificate(
        self, public_key: ec.EllipticCurvePublicKey, id_number: str, device_id: str
    ) -> x509.Certificate:
        """Issue a MOICA-like mobile certificate for a device key bound to ``id_number``."""
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "TW"),
                x509.NameAttribute(NameOID.COMMON_NAME, "行動自然人憑證測試使用者"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"device {device_id}"),
            ]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.intermediate_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + datetime.timedelta(days=DEVICE_CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_signing_key_usage(), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(id_suffix_extension(id_number[-4:]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.intermediate_key.public_key()
                ),
                critical=False,
            )
        )
        return builder.sign(self.intermediate_key, hashes.SHA256())


def certificate_paths(data_dir: Path) -> tuple[Path, Path]:
    """Return the PEM files of the root and the intermediate certificate under ``data_dir``.

    A verifier trusts these for SIGN-mode results of the embedded authority. They exist once
    ``load_or_create(data_dir)`` has run.
    """
    folder = data_dir / CA_DIR
    return folder / "root.pem", folder / "intermediate.pem"


def load_or_create(data_dir: Path) -> TestCa:
    """Load the test CA from ``data_dir``, or create and save it on first use (blocking I/O)."""
    folder = data_dir / CA_DIR
    root_pem, intermediate_pem = certificate_paths(data_dir)
    paths = {
        "root.pem": root_pem,
        "root.key": folder / "root.key",
        "intermediate.pem": intermediate_pem,
        "intermediate.key": folder / "intermediate.key",
    }
    if all(path.exists() for path in paths.values()):
        return TestCa(
            root_cert=x509.load_pem_x509_certificate(paths["root.pem"].read_bytes()),
            intermediate_cert=x509.load_pem_x509_certificate(
                paths["intermediate.pem"].read_bytes()
            ),
            intermediate_key=_load_key(paths["intermediate.key"]),
        )

    folder.mkdir(parents=True, exist_ok=True)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_cert = _ca_certificate(ROOT_NAME, root_key, ROOT_NAME, root_key, ROOT_DAYS, path_length=1)
    intermediate_key = ec.generate_private_key(ec.SECP256R1())
    intermediate_cert = _ca_certificate(
        INTERMEDIATE_NAME, intermediate_key, ROOT_NAME, root_key, INTERMEDIATE_DAYS, path_length=0
    )

    write_private_key(paths["root.key"], root_key)
    write_private_key(paths["intermediate.key"], intermediate_key)
    paths["root.pem"].write_bytes(root_cert.public_bytes(serialization.Encoding.PEM))
    paths["intermediate.pem"].write_bytes(
        intermediate_cert.public_bytes(serialization.Encoding.PEM)
    )
    log.info("created the embedded authority's test CA in %s", folder)
    return TestCa(root_cert, intermediate_cert, intermediate_key)


def _ca_certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
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
        digital_signature=False,
    )


def _signing_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=True, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC private key")
    return key
