"""NHI card basic data, ROC dates and component replies (server/nhi_card.py)."""

from __future__ import annotations

import base64
from datetime import date

import pytest

from server.nhi_card import (
    BASIC_LENGTH,
    BasicData,
    CardDataError,
    ComponentError,
    decode_basic_reply,
    encode_basic,
    encode_basic_reply,
    format_roc_date,
    is_h_sign,
    is_random,
    mask_card,
    parse_basic,
    parse_roc_date,
    reply_body,
    validate_card_number,
)

# The layout written out by hand: card number, Big5 name padded with NULs, ID, dates, sex.
RAW = (
    b"000011112222"
    + "王小明".encode("big5").ljust(20, b"\x00")
    + b"A123456789"
    + b"0680315"
    + b"M"
    + b"1040601"
)


def test_parse_basic_reads_every_field() -> None:
    data = parse_basic(RAW)

    assert data.card_number == "000011112222"
    assert data.name == "王小明"
    assert data.id_number == "A123456789"
    assert data.birth_date == date(1979, 3, 15)
    assert data.sex == "M"
    assert data.issue_date == date(2015, 6, 1)


def test_big5_name_bytes_are_big5() -> None:
    assert RAW[12:18] == b"\xa4\xfd\xa4p\xa9\xfa"


def test_encode_then_parse_round_trips() -> None:
    data = BasicData(
        "123456789012", "歐陽娜娜", "F223456781", date(2000, 2, 29), "F", date(2020, 12, 31)
    )

    raw = encode_basic(data)

    assert len(raw) == BASIC_LENGTH
    assert parse_basic(raw) == data


def test_name_of_ten_big5_characters_fills_field() -> None:
    name = "一二三四五六七八九十"
    data = BasicData("123456789012", name, "A123456789", date(1990, 1, 1), "M", date(2010, 1, 1))

    assert parse_basic(encode_basic(data)).name == name


def test_name_longer_than_field_rejected() -> None:
    data = BasicData(
        "123456789012",
        "一二三四五六七八九十一",
        "A123456789",
        date(1990, 1, 1),
        "M",
        date(2010, 1, 1),
    )

    with pytest.raises(CardDataError):
        encode_basic(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0680315", date(1979, 3, 15)), ("0010101", date(1912, 1, 1)), ("1130229", date(2024, 2, 29))],
)
def test_roc_dates_parse(text: str, expected: date) -> None:
    assert parse_roc_date(text) == expected
    assert format_roc_date(expected) == text


@pytest.mark.parametrize("text", ["680315", "0681315", "1120229", "abcdefg", "06803155"])
def test_bad_roc_dates_rejected(text: str) -> None:
    with pytest.raises(CardDataError):
        parse_roc_date(text)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (RAW[:-1], "57 bytes"),
        (b"00001111222X" + RAW[12:], "12 digits"),
        (RAW[:49] + b"X" + RAW[50:], "sex"),
        (RAW[:12] + b"\xff\xff" + RAW[14:], "Big5"),
        (RAW[:42] + b"0681399" + RAW[49:], "calendar"),
    ],
)
def test_malformed_basic_data_rejected(raw: bytes, reason: str) -> None:
    with pytest.raises(CardDataError) as caught:
        parse_basic(raw)

    assert reason in str(caught.value)


def test_basic_reply_is_prefixed_base64() -> None:
    data = parse_basic(RAW)

    reply = encode_basic_reply(data)

    assert reply == "GetBasic:" + base64.b64encode(RAW).decode()
    assert decode_basic_reply(reply) == data


def test_error_code_reply_raises_component_error() -> None:
    with pytest.raises(ComponentError) as caught:
        reply_body("8013", "GetBasic")

    assert caught.value.code == "8013"


def test_reply_to_other_command_rejected() -> None:
    with pytest.raises(CardDataError):
        reply_body("GetRandom:1234", "GetBasic")


def test_card_number_validation() -> None:
    assert validate_card_number(" 000011112222 ") == "000011112222"
    with pytest.raises(CardDataError):
        validate_card_number("00001111222")


def test_random_and_h_sign_forms() -> None:
    assert is_random("0001" + "1" * 16)
    assert not is_random("0002" + "1" * 16)
    assert not is_random("0001" + "1" * 15)
    assert is_h_sign("A" * 256)
    assert not is_h_sign("A" * 255)
    assert not is_h_sign("!" * 256)


def test_mask_card_keeps_ends() -> None:
    assert mask_card("000011112222") == "0000****2222"
