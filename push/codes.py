"""TW FidO SP API ``error_code`` values: what each one means for the login, and its zh-TW message.

Codes arrive as ``{interface}-{code}`` (``SP-API-ATH-01-INV_SP_CHECKSUM``), so they are matched
by the part after the last hyphen. An unknown code fails the login (fail safe). This module has
no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

SUCCESS_CODE = "0"


class Outcome(StrEnum):
    PENDING = "pending"  # not finished yet: keep polling
    DENIED = "denied"  # the user declined in the app
    EXPIRED = "expired"
    NOT_BOUND = "not_bound"  # no mobile credential or no bound device for this ID number
    PUSH_FAILED = "push_failed"  # the push did not reach the phone; the QR code still works
    FAILED = "failed"
    CONFIG_ERROR = "config_error"  # our SP settings or request are wrong; the user cannot fix it
    ALREADY_USED = "already_used"


@dataclass(frozen=True)
class CodeInfo:
    outcome: Outcome
    reason: str  # stable key for logs, audit and the browser API
    message: str  # zh-TW, shown to the user
    operator_hint: str = ""  # English, for the log only; set for CONFIG_ERROR codes

    @property
    def final(self) -> bool:
        return self.outcome is not Outcome.PENDING


_CONFIG_MESSAGE = (
    "行動自然人憑證服務的系統設定有誤，暫時無法使用此登入方式。"
    "請改用其他方式登入，並通知系統管理者（錯誤代碼：{code}）。"
)


def _config_error(code: str, hint: str) -> CodeInfo:
    return CodeInfo(Outcome.CONFIG_ERROR, "config_error", _CONFIG_MESSAGE.format(code=code), hint)


# NOTE: the meaning of 20002 and 20003 is not documented publicly; integrations treat them as
# "still pending", so the poller keeps polling until its deadline.
CODES: dict[str, CodeInfo] = {
    "SPTKTID_TXNLOG_NF": CodeInfo(
        Outcome.PENDING, "pending", "已送出驗證請求，請在手機的「行動自然人憑證」App 中確認。"
    ),
    "20002": CodeInfo(Outcome.PENDING, "pending", "驗證請求處理中，請稍候並留意手機上的通知。"),
    "20003": CodeInfo(Outcome.PENDING, "pending", "正在等待您在 App 中完成驗證，請稍候。"),
    "APP_USER_CANCEL": CodeInfo(
        Outcome.DENIED, "denied_in_app", "您已在「行動自然人憑證」App 中拒絕此次登入。"
    ),
    "SPTKT_OVD": CodeInfo(
        Outcome.EXPIRED, "expired", "驗證請求已逾時，未在時限內完成確認，請重新登入。"
    ),
    "SPTKTID_SPTKT_RDM": CodeInfo(
        Outcome.ALREADY_USED, "already_used", "此驗證請求已使用過，無法再次使用，請重新登入。"
    ),
    "IDNUM_USERPROF_NF": CodeInfo(
        Outcome.NOT_BOUND,
        "not_bound",
        "此身分證統一編號尚未申請行動自然人憑證。請在手機下載「行動自然人憑證」App，"
        "完成憑證申請與裝置綁定後再登入，或改用其他登入方式。",
    ),
    "IDNUM_DEVPROF_NF": CodeInfo(
        Outcome.NOT_BOUND,
        "not_bound",
        "此身分證統一編號尚未綁定行動裝置。請在手機下載並開啟「行動自然人憑證」App，"
        "完成裝置綁定後再登入，或改用其他登入方式。",
    ),
    "PS_FCM_NOT_FOUND": CodeInfo(
        Outcome.PUSH_FAILED,
        "push_not_delivered",
        "無法將通知推播到您的手機。請重新開啟「行動自然人憑證」App 後再試一次，"
        "或改用 App 掃描畫面上的 QR Code 登入。",
    ),
    "INV_SP_CHECKSUM": _config_error(
        "INV_SP_CHECKSUM",
        "MOI rejected sp_checksum: check twfido.aes_key, twfido.random_iv and the field order",
    ),
    "SPSVCID_NF": _config_error(
        "SPSVCID_NF", "MOI does not know twfido.sp_service_id (wrong id, or UAT id on production)"
    ),
    "TXNLOG_INS_ERR": _config_error(
        "TXNLOG_INS_ERR",
        "MOI could not record the transaction; a reused transaction_id is the usual cause",
    ),
    "SPTKT_TIME_FT_ERR": _config_error(
        "SPTKT_TIME_FT_ERR", "MOI rejected the format of time_limit (expected whole seconds)"
    ),
    "SPTKT_TIME_ORV": _config_error(
        "SPTKT_TIME_ORV", "time_limit is outside the accepted range of 30-600 seconds"
    ),
    "SIGNDATA_LEN_LIMIT": _config_error(
        "SIGNDATA_LEN_LIMIT", "sign_data is longer than the 1024 characters MOI accepts"
    ),
    # Embedded-only: the embedded authority's own codes for requests MOI's public
    # documentation has no code for (see push.authority.spapi); MOI is not known to send them.
    "REQ_FT_ERR": _config_error(
        "REQ_FT_ERR", "embedded authority: the request body is not a JSON object"
    ),
    "TXNID_FT_ERR": _config_error(
        "TXNID_FT_ERR", "embedded authority: transaction_id is missing or over 100 characters"
    ),
    "OPCODE_FT_ERR": _config_error(
        "OPCODE_FT_ERR", "embedded authority: op_code is not ATH or SIGN (check twfido.op_code)"
    ),
    "OPMODE_FT_ERR": _config_error(
        "OPMODE_FT_ERR", "embedded authority: op_mode is not I-SCAN, APP2APP or MWEB2APP"
    ),
    "HINT_LEN_LIMIT": _config_error(
        "HINT_LEN_LIMIT", "embedded authority: the hint is longer than 256 characters"
    ),
    "SIGNDATA_FT_ERR": _config_error(
        "SIGNDATA_FT_ERR",
        "embedded authority: SIGN request without sign_data, or sign_data not base64",
    ),
    "PM_IDN_FT_ERR": CodeInfo(
        Outcome.FAILED,
        "invalid_id_number",
        "身分證統一編號格式不正確，請確認為 1 個英文字母加 9 位數字後重新輸入。",
    ),
    "APP_SIGN_FAILURE": CodeInfo(
        Outcome.FAILED,
        "sign_failed",
        "「行動自然人憑證」App 簽章失敗，請重新登入；若一再發生，請在 App 中檢查憑證狀態。",
    ),
    "SPTKTID_SPTKT_NF": CodeInfo(
        Outcome.FAILED, "ticket_not_found", "找不到此驗證請求，可能已失效，請重新登入。"
    ),
}

# Codes only the embedded authority sends (see CODES above); kept apart for the docs and tests.
EMBEDDED_ONLY_CODES = frozenset(
    {"REQ_FT_ERR", "TXNID_FT_ERR", "OPCODE_FT_ERR", "OPMODE_FT_ERR", "HINT_LEN_LIMIT",
     "SIGNDATA_FT_ERR"}
)  # fmt: skip

UNKNOWN = CodeInfo(
    Outcome.FAILED,
    "unknown_error",
    "行動自然人憑證驗證失敗，請稍後再試或改用其他登入方式。",
    "MOI returned an error_code this service does not know; check the SP API specification",
)


def code_suffix(error_code: str) -> str:
    """Return the code without its interface prefix: ``SP-API-ATH-01-SPTKT_OVD`` → ``SPTKT_OVD``."""
    return error_code.strip().rsplit("-", 1)[-1]


def classify(error_code: str) -> CodeInfo:
    """Return what a non-zero ``error_code`` means; unknown codes are ``FAILED``."""
    if error_code.strip() == SUCCESS_CODE:
        raise ValueError("error_code 0 means success and has no error classification")
    return CODES.get(code_suffix(error_code), UNKNOWN)
