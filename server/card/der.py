"""A strict, minimal DER reader and writer for the few structures the card method handles.

``cryptography`` parses certificates, OCSP and CRLs, but has no API to read a CMS SignedData's
signer info, so this module reads exactly that (and the MOICA subjectDirectoryAttributes). It
accepts DER only: definite lengths in minimal form, no trailing bytes, and a depth limit.
"""

from __future__ import annotations

from dataclasses import dataclass

# Universal tags used by the callers.
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
UTF8_STRING = 0x0C
PRINTABLE_STRING = 0x13
IA5_STRING = 0x16
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
SEQUENCE = 0x30
SET = 0x31
STRING_TAGS = (UTF8_STRING, PRINTABLE_STRING, IA5_STRING)

MAX_LENGTH_OCTETS = 4  # lengths above 4 GiB never occur in a signature or a certificate
MAX_OID_ARC_OCTETS = 8  # an arc longer than 56 bits is not a real OID


class DerError(ValueError):
    """The bytes are not the DER structure that was expected."""


@dataclass(frozen=True, slots=True)
class Tlv:
    """One DER element: its tag byte, its content and the full encoding (tag + length + content)."""

    tag: int
    content: bytes
    encoded: bytes

    def children(self) -> list[Tlv]:
        """Decode the content of a constructed element as a list of elements."""
        if not self.tag & 0x20:
            raise DerError(f"tag 0x{self.tag:02x} is not constructed")
        return read_all(self.content)

    def expect(self, tag: int) -> Tlv:
        if self.tag != tag:
            raise DerError(f"expected tag 0x{tag:02x}, found 0x{self.tag:02x}")
        return self


def read_one(data: bytes, offset: int = 0) -> tuple[Tlv, int]:
    """Decode the element at ``offset``; return it and the offset after it."""
    if offset + 2 > len(data):
        raise DerError("truncated element")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte tags are not used in these structures")
    first = data[offset + 1]
    position = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > MAX_LENGTH_OCTETS:
            raise DerError("indefinite or oversized length")
        if position + count > len(data):
            raise DerError("truncated length")
        raw = data[position : position + count]
        if raw[0] == 0:
            raise DerError("length not in minimal form")
        length = int.from_bytes(raw, "big")
        if length < 0x80:
            raise DerError("length not in minimal form")
        position += count
    end = position + length
    if end > len(data):
        raise DerError("truncated content")
    return Tlv(tag, data[position:end], data[offset:end]), end


def read_all(data: bytes) -> list[Tlv]:
    """Decode consecutive elements that fill ``data`` exactly."""
    items = []
    offset = 0
    while offset < len(data):
        item, offset = read_one(data, offset)
        items.append(item)
    return items


def read_single(data: bytes) -> Tlv:
    """Decode exactly one element with nothing after it."""
    item, end = read_one(data)
    if end != len(data):
        raise DerError("trailing bytes after the element")
    return item


def decode_oid(tlv: Tlv) -> str:
    tlv.expect(OID)
    body = tlv.content
    if not body:
        raise DerError("empty OID")
    arcs: list[int] = []
    value = 0
    octets = 0
    for byte in body:
        if octets == 0 and byte == 0x80:
            raise DerError("OID arc not in minimal form")
        value = (value << 7) | (byte & 0x7F)
        octets += 1
        if octets > MAX_OID_ARC_OCTETS:
            raise DerError("OID arc too long")
        if not byte & 0x80:
            arcs.append(value)
            value = 0
            octets = 0
    if octets:
        raise DerError("truncated OID")
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(arc) for arc in head + arcs[1:])


def decode_integer(tlv: Tlv) -> int:
    tlv.expect(INTEGER)
    if not tlv.content:
        raise DerError("empty INTEGER")
    return int.from_bytes(tlv.content, "big", signed=True)


def decode_string(tlv: Tlv) -> str:
    """Decode a UTF8String, PrintableString or IA5String."""
    if tlv.tag not in STRING_TAGS:
        raise DerError(f"tag 0x{tlv.tag:02x} is not a string")
    try:
        return tlv.content.decode("utf-8" if tlv.tag == UTF8_STRING else "ascii")
    except UnicodeDecodeError as exc:
        raise DerError(f"invalid string: {exc.reason}") from None


# -- writing (used by the test PKI and the simulator's software token) -----------------------


def encode(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = (length.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + length.to_bytes(size, "big") + content


def encode_oid(dotted: str) -> bytes:
    parts = [int(part) for part in dotted.split(".")]
    body = bytearray([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        body.extend(reversed(chunk))
    return encode(OID, bytes(body))


def encode_integer(value: int) -> bytes:
    size = max(1, (value.bit_length() + 8) // 8)  # room for the sign bit
    return encode(INTEGER, value.to_bytes(size, "big", signed=True))


def encode_set_of(items: list[bytes]) -> bytes:
    """Encode a SET OF with its elements sorted by encoding, as DER requires."""
    return encode(SET, b"".join(sorted(items)))
