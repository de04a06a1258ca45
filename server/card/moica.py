"""MOICA certificate profile: the holder's name and the last 4 digits of the national ID.

MOICA (內政部憑證管理中心) puts the holder's name in the subject CN and the last 4 digits of
the ID number in subjectDirectoryAttributes (2.5.29.9) under attribute 2.16.886.1.100.2.51.
Government (GCA) and organisation (XCA) certificates carry neither attribute.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

from server.card import der
from server.card.der import DerError

SUBJECT_DIRECTORY_ATTRIBUTES = x509.ObjectIdentifier("2.5.29.9")
ID_SUFFIX_ATTRIBUTE = "2.16.886.1.100.2.51"
ID_SUFFIX_LENGTH = 4


class ProfileError(ValueError):
    """The certificate's MOICA attributes are malformed."""


def holder_name(certificate: x509.Certificate) -> str:
    """Return the subject CN (the holder's name on a MOICA card), or ""."""
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def id_suffix(certificate: x509.Certificate) -> str | None:
    """Return the ID-number suffix from subjectDirectoryAttributes, or None when absent."""
    try:
        extension = certificate.extensions.get_extension_for_oid(SUBJECT_DIRECTORY_ATTRIBUTES)
    except x509.ExtensionNotFound:
        return None
    value = extension.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise ProfileError("subjectDirectoryAttributes has an unexpected type")
    try:
        attributes = der.read_single(value.value).expect(der.SEQUENCE).children()
        for attribute in attributes:
            oid_tlv, values = attribute.expect(der.SEQUENCE).children()
            if der.decode_oid(oid_tlv) != ID_SUFFIX_ATTRIBUTE:
                continue
            (item,) = values.expect(der.SET).children()
            suffix = der.decode_string(item)
            if len(suffix) != ID_SUFFIX_LENGTH or not suffix.isdigit():
                raise ProfileError("the ID-number suffix is not 4 digits")
            return suffix
    except (DerError, ValueError) as exc:
        raise ProfileError(f"malformed subjectDirectoryAttributes: {exc}") from None
    return None


def encode_id_suffix_attributes(suffix: str) -> bytes:
    """Encode SubjectDirectoryAttributes holding the ID-number suffix (for test certificates)."""
    value = der.encode(der.PRINTABLE_STRING, suffix.encode("ascii"))
    attribute = der.encode(
        der.SEQUENCE, der.encode_oid(ID_SUFFIX_ATTRIBUTE) + der.encode(der.SET, value)
    )
    return der.encode(der.SEQUENCE, attribute)
