"""The SP side of the embedded authority: the four TW FidO SP API calls, without HTTP.

``SpApi.handle(name, body)`` returns ``(http_status, answer)`` where the answer is
``{"error_code", "error_message", "result"}`` as MOI sends it. Every answer, errors included,
carries an ``idp_checksum`` in ``result``. Error codes are ``{interface}-{code}``, for example
``SP-API-ATH-01-INV_SP_CHECKSUM``.

Checks, in order: the body is a JSON object, ``transaction_id`` is present, ``sp_service_id``
is ours, ``sp_checksum`` matches, the ``transaction_id`` is new (not for ATH-02, which reuses
the ticket's), then the call's own fields.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from typing import Any

from push import checksum
from push.authority.service import PUSH_OP_MODE, Authority, TransactionRequest
from push.authority.transactions import State, TableFull
from server import idnumber

log = logging.getLogger(__name__)

SUCCESS = "0"
MAX_TRANSACTION_ID_CHARS = 100  # the SP API's limit for transaction_id
MIN_TIME_LIMIT = 30  # seconds; the SP API rejects shorter windows (SPTKT_TIME_ORV)
MAX_TIME_LIMIT = 600  # seconds; the SP API rejects longer windows (SPTKT_TIME_ORV)
DEFAULT_TIME_LIMIT = 60  # seconds, when the request has no time_limit (the public demo's value)
MAX_SIGN_DATA_CHARS = 1024  # the SP API's sign_data limit (SIGNDATA_LEN_LIMIT)
MAX_HINT_CHARS = 256  # the app shows the hint on one screen
OP_CODES = ("ATH", "SIGN")  # NOTE: NFCSIGN (sign with the physical card over NFC) is not simulated
OP_MODES = ("I-SCAN", "APP2APP", "MWEB2APP")

# Interface prefix of each call's error codes.
INTERFACES = {
    "getSpTicket": "SP-API-ATH-01",
    "requestAthOrSignPush": "SP-API-ATH-03",
    "getAthOrSignResult": "SP-API-ATH-02",
    "checkDeviceStatus": "SP-API-LF-01",
}
SP_CHECKSUMS = {
    "getSpTicket": checksum.ATH01_SP,
    "requestAthOrSignPush": checksum.ATH03_SP,
    "getAthOrSignResult": checksum.ATH02_SP,
    "checkDeviceStatus": checksum.LF01_SP,
}
IDP_CHECKSUMS = {
    "getSpTicket": checksum.TICKET_IDP,
    "requestAthOrSignPush": checksum.TICKET_IDP,
    "getAthOrSignResult": checksum.ATH02_IDP,
    "checkDeviceStatus": checksum.LF01_IDP,
}
# Result fields covered by the idp_checksum, empty in error answers.
RESULT_FIELDS = {
    "getSpTicket": ("sp_ticket",),
    "requestAthOrSignPush": ("sp_ticket",),
    "getAthOrSignResult": ("hashed_id_num", "signed_response"),
    "checkDeviceStatus": ("is_fido", "is_mcert_sign"),
}

# NOTE: MOI's codes for a non-JSON body, a bad transaction_id, op_code, op_mode, hint or
# sign_info are not public; REQ_FT_ERR, TXNID_FT_ERR, OPCODE_FT_ERR, OPMODE_FT_ERR,
# HINT_LEN_LIMIT and SIGNDATA_FT_ERR are this authority's own.
MESSAGES = {
    "REQ_FT_ERR": "請求格式錯誤",
    "TXNID_FT_ERR": "交易序號格式錯誤",
    "SPSVCID_NF": "查無此服務代碼",
    "INV_SP_CHECKSUM": "檢查碼驗證失敗",
    "TXNLOG_INS_ERR": "交易紀錄新增失敗",
    "PM_IDN_FT_ERR": "身分證統一編號格式錯誤",
    "OPCODE_FT_ERR": "作業代碼錯誤",
    "OPMODE_FT_ERR": "作業模式錯誤",
    "HINT_LEN_LIMIT": "提示訊息過長",
    "SPTKT_TIME_FT_ERR": "時限格式錯誤",
    "SPTKT_TIME_ORV": "時限超出範圍",
    "SIGNDATA_LEN_LIMIT": "簽章資料過長",
    "SIGNDATA_FT_ERR": "簽章資料格式錯誤",
    "IDNUM_DEVPROF_NF": "此身分證統一編號未綁定裝置",
    "PS_FCM_NOT_FOUND": "無法推播至使用者裝置",
    "SPTKTID_SPTKT_NF": "查無此交易",
    "SPTKTID_TXNLOG_NF": "使用者尚未完成驗證",
    "SPTKT_OVD": "交易已逾時",
    "SPTKTID_SPTKT_RDM": "交易結果已取回",
    "APP_USER_CANCEL": "使用者拒絕",
    "APP_SIGN_FAILURE": "簽章失敗",
}


class Rejected(Exception):
    """A request rejected with an error code."""

    def __init__(self, code: str, status: int = 200) -> None:
        super().__init__(code)
        self.code = code
        self.status = status


class SpApi:
    def __init__(self, authority: Authority, aes_key: bytes) -> None:
        self._authority = authority
        self._key = aes_key

    async def handle(self, name: str, body: object) -> tuple[int, dict[str, Any]]:
        """Answer one SP API call named ``name`` (a key of ``INTERFACES``)."""
        transaction_id = ""
        if isinstance(body, dict) and isinstance(body.get("transaction_id"), str):
            transaction_id = body["transaction_id"]
        try:
            if not isinstance(body, dict):
                raise Rejected("REQ_FT_ERR", 400)
            await self._check_common(name, body)
            result = await self._dispatch(name, body)
        except Rejected as exc:
            log.info("SP API %s transaction %r rejected: %s", name, transaction_id[:100], exc.code)
            return exc.status, self._answer(name, transaction_id, exc.code, {})
        return 200, self._answer(name, transaction_id, SUCCESS, result)

    async def _check_common(self, name: str, body: dict[str, Any]) -> None:
        transaction_id = body.get("transaction_id")
        if not isinstance(transaction_id, str) or not transaction_id:
            raise Rejected("TXNID_FT_ERR")
        if len(transaction_id) > MAX_TRANSACTION_ID_CHARS:
            raise Rejected("TXNID_FT_ERR")
        service_id = body.get("sp_service_id")
        if not isinstance(service_id, str) or not hmac.compare_digest(
            service_id.encode(), self._authority.sp_service_id.encode()
        ):
            raise Rejected("SPSVCID_NF")

        fields = dict(body)
        fields["sign_data"] = _sign_info(body).get("sign_data")
        try:
            checksum.verify(self._key, body.get("sp_checksum"), fields, SP_CHECKSUMS[name])
        except checksum.ChecksumError:
            raise Rejected("INV_SP_CHECKSUM") from None

        if name != "getAthOrSignResult" and not (
            await self._authority.transactions.claim_transaction_id(
                transaction_id, self._authority.clock()
            )
        ):
            raise Rejected("TXNLOG_INS_ERR")

    async def _dispatch(self, name: str, body: dict[str, Any]) -> dict[str, str]:
        if name == "getAthOrSignResult":
            return await self._get_result(body)
        id_number = _id_number(body)
        if name == "checkDeviceStatus":
            bound = "Y" if await self._authority.registry.for_id_number(id_number) else "N"
            return {"is_fido": bound, "is_mcert_sign": bound}
        return await self._ticket(name, body, id_number)

    async def _ticket(self, name: str, body: dict[str, Any], id_number: str) -> dict[str, str]:
        is_push = name == "requestAthOrSignPush"
        request = TransactionRequest(
            transaction_id=body["transaction_id"],
            id_number=id_number,
            op_code=_op_code(body),
            op_mode=PUSH_OP_MODE if is_push else _op_mode(body),
            hint=_hint(body),
            time_limit=_time_limit(body),
            sign_bytes=_sign_bytes(body),
        )
        if not await self._authority.registry.for_id_number(id_number):
            raise Rejected("IDNUM_DEVPROF_NF")

        device_name = body.get("device_user_def_desc")
        device_name = device_name if isinstance(device_name, str) else ""
        if is_push and not await self._authority.reachable(id_number, device_name):
            raise Rejected("PS_FCM_NOT_FOUND")

        try:
            transaction = await self._authority.create_transaction(request)
        except TableFull:
            log.warning("transaction table full; rejecting %s", body["transaction_id"])
            raise Rejected("TXNLOG_INS_ERR") from None

        if is_push and not await self._authority.deliver_push(transaction, device_name):
            await self._authority.transactions.finish(
                transaction, State.FAILED, "push_failed", self._authority.clock()
            )
            raise Rejected("PS_FCM_NOT_FOUND")
        return {"sp_ticket": transaction.sp_ticket}

    async def _get_result(self, body: dict[str, Any]) -> dict[str, str]:
        sp_ticket_id = body.get("sp_ticket_id")
        transaction = None
        if isinstance(sp_ticket_id, str):
            transaction = await self._authority.transactions.get(sp_ticket_id)
        if transaction is None or transaction.transaction_id != body["transaction_id"]:
            raise Rejected("SPTKTID_SPTKT_NF")

        if transaction.expired(self._authority.clock()):
            raise Rejected("SPTKT_OVD")
        if transaction.state is State.PENDING:
            raise Rejected("SPTKTID_TXNLOG_NF")
        if transaction.state is State.DENIED:
            raise Rejected("APP_USER_CANCEL")
        if transaction.state is State.FAILED:
            raise Rejected("APP_SIGN_FAILURE")
        if not await self._authority.transactions.mark_fetched(transaction):
            raise Rejected("SPTKTID_SPTKT_RDM")

        return {
            "hashed_id_num": transaction.hashed_id_num,
            "signed_response": transaction.signed_response,
            "cert": transaction.certificate,
        }

    def _answer(
        self, name: str, transaction_id: str, code: str, result: dict[str, str]
    ) -> dict[str, Any]:
        error_code = code if code == SUCCESS else f"{INTERFACES[name]}-{code}"
        covered = {field: result.get(field, "") for field in RESULT_FIELDS[name]}
        fields = {"transaction_id": transaction_id, "error_code": error_code, **covered}
        answer_result: dict[str, Any] = {**covered, **result}
        # Always a fresh IV: every answer with the all-zero IV would reuse one GCM nonce under
        # the SP key, and two such answers reveal enough to forge checksums. Readers take the IV
        # from the checksum itself, so the SP accepts either.
        answer_result["idp_checksum"] = checksum.make(
            self._key, fields, IDP_CHECKSUMS[name], random_iv=True
        )
        return {
            "error_code": error_code,
            "error_message": "成功" if code == SUCCESS else MESSAGES.get(code, code),
            "result": answer_result,
        }


def _sign_info(body: dict[str, Any]) -> dict[str, Any]:
    sign_info = body.get("sign_info")
    return sign_info if isinstance(sign_info, dict) else {}


def _id_number(body: dict[str, Any]) -> str:
    raw = body.get("id_num")
    if not isinstance(raw, str) or not idnumber.is_valid(raw):
        raise Rejected("PM_IDN_FT_ERR")
    return idnumber.normalize(raw)


def _op_code(body: dict[str, Any]) -> str:
    op_code = body.get("op_code")
    if op_code not in OP_CODES:
        raise Rejected("OPCODE_FT_ERR")
    return str(op_code)


def _op_mode(body: dict[str, Any]) -> str:
    op_mode = body.get("op_mode")
    if op_mode not in OP_MODES:
        raise Rejected("OPMODE_FT_ERR")
    return str(op_mode)


def _hint(body: dict[str, Any]) -> str:
    hint = body.get("hint", "")
    if not isinstance(hint, str) or len(hint) > MAX_HINT_CHARS:
        raise Rejected("HINT_LEN_LIMIT")
    return hint


def _time_limit(body: dict[str, Any]) -> int:
    raw = body.get("time_limit", DEFAULT_TIME_LIMIT)
    if isinstance(raw, str) and raw.isdigit():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise Rejected("SPTKT_TIME_FT_ERR")
    if not MIN_TIME_LIMIT <= raw <= MAX_TIME_LIMIT:
        raise Rejected("SPTKT_TIME_ORV")
    return raw


def _sign_bytes(body: dict[str, Any]) -> bytes | None:
    """Return the bytes that a SIGN request has the phone sign, or None for ATH."""
    if body.get("op_code") != "SIGN":
        return None
    sign_info = _sign_info(body)
    sign_data = sign_info.get("sign_data")
    if not isinstance(sign_data, str) or not sign_data:
        raise Rejected("SIGNDATA_FT_ERR")
    if len(sign_data) > MAX_SIGN_DATA_CHARS:
        raise Rejected("SIGNDATA_LEN_LIMIT")
    if sign_info.get("tbs_encoding", "NONE") != "base64":
        return sign_data.encode("utf-8")
    try:
        return base64.b64decode(sign_data, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected("SIGNDATA_FT_ERR") from None
