"""National ID numbers (身分證統一編號) and resident numbers (統一證號): validation and masking.

Formats accepted:
- citizen: one letter, then 1 or 2, then 8 digits;
- new-format resident number (since 2021-01-02): one letter, then 8 or 9, then 8 digits;
- old-format resident number (valid until 2031-01-01): two letters, the second A-D, then 8 digits.
"""

from __future__ import annotations

import re

from server.errors import InvalidIdNumber

# Letter codes of the first character, in the order of the national ID rules.
LETTER_CODES: dict[str, int] = {
    "A": 10, "B": 11, "C": 12, "D": 13, "E": 14, "F": 15, "G": 16, "H": 17, "I": 34,
    "J": 18, "K": 19, "L": 20, "M": 21, "N": 22, "O": 35, "P": 23, "Q": 24, "R": 25,
    "S": 26, "T": 27, "U": 28, "V": 29, "W": 32, "X": 30, "Y": 31, "Z": 33,
}  # fmt: skip

# Weights of the letter's units digit and the eight digits before the check digit.
WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2, 1)

_NEW_FORMAT = re.compile(r"[A-Z][1289][0-9]{8}")
_OLD_RESIDENT = re.compile(r"[A-Z][A-D][0-9]{8}")  # [0-9], not \d: no other scripts' digits


def normalize(raw: str) -> str:
    """Return the ID number in upper case without surrounding spaces."""
    return raw.strip().upper()


def checksum_ok(id_number: str) -> bool:
    """Check the check digit of a number already known to match one of the formats."""
    code = LETTER_CODES[id_number[0]]
    second = id_number[1]
    # Old resident numbers count the second letter's units digit (A→0 … D→3) as d1.
    d1 = LETTER_CODES[second] % 10 if second.isalpha() else int(second)
    digits = [code % 10, d1, *(int(c) for c in id_number[2:9])]

    total = code // 10 + sum(w * d for w, d in zip(WEIGHTS, digits, strict=True))
    total += int(id_number[9])
    return total % 10 == 0


def validate(raw: str) -> str:
    """Return the normalised ID number, or raise ``InvalidIdNumber``."""
    if not isinstance(raw, str):
        raise InvalidIdNumber()
    id_number = normalize(raw)
    if not (_NEW_FORMAT.fullmatch(id_number) or _OLD_RESIDENT.fullmatch(id_number)):
        raise InvalidIdNumber(
            "身分證統一編號格式不正確：應為 1 個英文字母加 9 位數字（例：A123456789）。"
        )
    if not checksum_ok(id_number):
        raise InvalidIdNumber("身分證統一編號檢查碼不正確，請確認是否輸入錯誤。")
    return id_number


def is_valid(raw: str) -> bool:
    try:
        validate(raw)
    except InvalidIdNumber:
        return False
    return True


def mask(id_number: str | None) -> str:
    """Mask an ID number for logs: ``A123456789`` → ``A12****789``."""
    if not id_number:
        return "-"
    if len(id_number) < 7:
        return "*" * len(id_number)
    return id_number[:3] + "*" * (len(id_number) - 6) + id_number[-3:]
