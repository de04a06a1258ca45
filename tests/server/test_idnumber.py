import pytest

from server.errors import InvalidIdNumber
from server.idnumber import is_valid, mask, validate


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("A123456789", "A123456789"),  # citizen, male
        ("F231104095", "F231104095"),  # citizen, female
        ("  a123456789 ", "A123456789"),  # lower case and spaces normalised
        ("A800000014", "A800000014"),  # new-format resident number (8)
        ("A900000016", "A900000016"),  # new-format resident number (9)
        ("AA00000009", "AA00000009"),  # old-format resident number, second letter A
        ("FD12345676", "FD12345676"),  # old-format resident number, second letter D
        ("I100000003", "I100000003"),  # letter I (code 34)
        ("O100000004", "O100000004"),  # letter O (code 35)
    ],
)
def test_valid_numbers_normalised(raw: str, expected: str) -> None:
    assert validate(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "A123456788",  # wrong check digit
        "A323456789",  # second digit 3 is no format
        "A12345678",  # too short
        "A1234567890",  # too long
        "1123456789",  # no letter
        "AE00000001",  # old resident letter must be A-D
        "A12345678X",
        "",
        "Ａ123456789",  # full-width letter
        "A12345678٩",  # Arabic-Indic digit nine
        "A１23456789",  # full-width digit
    ],
)
def test_invalid_numbers_rejected(raw: str) -> None:
    with pytest.raises(InvalidIdNumber):
        validate(raw)


def test_check_digit_error_has_own_message() -> None:
    with pytest.raises(InvalidIdNumber) as caught:
        validate("A123456788")
    assert "檢查碼" in caught.value.text


def test_format_error_has_own_message() -> None:
    with pytest.raises(InvalidIdNumber) as caught:
        validate("A12345")
    assert "格式" in caught.value.text


def test_non_string_rejected() -> None:
    assert not is_valid(None)  # type: ignore[arg-type]


def test_mask_keeps_three_each_side() -> None:
    assert mask("A123456789") == "A12****789"
    assert mask(None) == "-"
    assert mask("AB") == "**"
