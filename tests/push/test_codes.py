"""Classification of every documented SP API error_code."""

from __future__ import annotations

import re

import pytest

from push.codes import CODES, EMBEDDED_ONLY_CODES, Outcome, classify

DOCUMENTED = {
    "SPTKTID_TXNLOG_NF": Outcome.PENDING,
    "20002": Outcome.PENDING,
    "20003": Outcome.PENDING,
    "APP_USER_CANCEL": Outcome.DENIED,
    "SPTKT_OVD": Outcome.EXPIRED,
    "SPTKTID_SPTKT_RDM": Outcome.ALREADY_USED,
    "IDNUM_USERPROF_NF": Outcome.NOT_BOUND,
    "IDNUM_DEVPROF_NF": Outcome.NOT_BOUND,
    "PS_FCM_NOT_FOUND": Outcome.PUSH_FAILED,
    "INV_SP_CHECKSUM": Outcome.CONFIG_ERROR,
    "SPSVCID_NF": Outcome.CONFIG_ERROR,
    "TXNLOG_INS_ERR": Outcome.CONFIG_ERROR,
    "SPTKT_TIME_FT_ERR": Outcome.CONFIG_ERROR,
    "SPTKT_TIME_ORV": Outcome.CONFIG_ERROR,
    "SIGNDATA_LEN_LIMIT": Outcome.CONFIG_ERROR,
    "PM_IDN_FT_ERR": Outcome.FAILED,
    "APP_SIGN_FAILURE": Outcome.FAILED,
    "SPTKTID_SPTKT_NF": Outcome.FAILED,
}
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.mark.parametrize(("code", "outcome"), DOCUMENTED.items())
def test_documented_code_classified(code, outcome):
    info = classify(code)

    assert info.outcome is outcome
    assert CJK.search(info.message)
    assert info.reason != "unknown_error"


@pytest.mark.parametrize("code", DOCUMENTED)
def test_prefixed_code_matches_suffix(code):
    for prefix in ("SP-API-ATH-01-", "SP-API-ATH-02-", "SP-API-LF-01-"):
        assert classify(prefix + code) == classify(code)


def test_every_code_has_own_message():
    messages = [classify(code).message for code in DOCUMENTED]

    assert len(set(messages)) == len(DOCUMENTED)
    assert set(CODES) - EMBEDDED_ONLY_CODES == set(DOCUMENTED)


def test_config_errors_have_operator_hint():
    for code, outcome in DOCUMENTED.items():
        info = classify(code)
        if outcome is Outcome.CONFIG_ERROR:
            assert info.operator_hint
            assert not CJK.search(info.operator_hint)
            assert code in info.message


def test_not_bound_message_explains_binding():
    for code in ("IDNUM_USERPROF_NF", "IDNUM_DEVPROF_NF"):
        message = classify(code).message
        assert "行動自然人憑證" in message
        assert "綁定" in message


def test_push_failed_offers_qr_code():
    message = classify("SP-API-ATH-03-PS_FCM_NOT_FOUND").message

    assert "QR Code" in message
    assert "重新開啟" in message


def test_reasons_are_stable_keys():
    assert classify("APP_USER_CANCEL").reason == "denied_in_app"
    assert classify("SPTKT_OVD").reason == "expired"
    assert classify("IDNUM_DEVPROF_NF").reason == "not_bound"
    assert classify("PS_FCM_NOT_FOUND").reason == "push_not_delivered"
    assert classify("INV_SP_CHECKSUM").reason == "config_error"
    assert classify("APP_SIGN_FAILURE").reason == "sign_failed"


@pytest.mark.parametrize("code", ["SP-API-ATH-02-SOMETHING_NEW", "99999", "", "-"])
def test_unknown_code_fails_safe(code):
    info = classify(code)

    assert info.outcome is Outcome.FAILED
    assert info.reason == "unknown_error"
    assert info.final


def test_pending_is_not_final():
    assert not classify("SP-API-ATH-02-SPTKTID_TXNLOG_NF").final


def test_success_code_is_not_an_error():
    with pytest.raises(ValueError):
        classify("0")
