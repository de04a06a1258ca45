"""Client of the TW FidO SP API: ``getSpTicket``, ``requestAthOrSignPush``, ``getAthOrSignResult``
and ``checkDeviceStatus``.

Every request carries an ``sp_checksum``. Every response's ``idp_checksum`` is verified against
the ``transaction_id`` this client sent before any field of the response is used. One client
serves the real MOI service and the embedded authority alike.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from push import checksum
from push.codes import SUCCESS_CODE, CodeInfo, classify
from push.ticket import Ticket, TicketError
from push.ticket import decode as decode_ticket
from server.idnumber import mask

log = logging.getLogger(__name__)

PATH_PREFIX = "/moise/sp/"
PATH_GET_SP_TICKET = "getSpTicket"
PATH_REQUEST_PUSH = "requestAthOrSignPush"
PATH_GET_RESULT = "getAthOrSignResult"
# NOTE: the checkDeviceStatus (LF-01) path is unconfirmed; public integrations use this name,
# and twfido.check_device_path overrides it.
PATH_CHECK_DEVICE = "checkDeviceStatus"

MIN_TIME_LIMIT = 30  # seconds; the SP API rejects shorter time_limit values
MAX_TIME_LIMIT = 600  # seconds; the SP API rejects longer time_limit values
MAX_SIGN_DATA_CHARS = 1024  # the SP API rejects longer sign_data (SIGNDATA_LEN_LIMIT)
MAX_RESPONSE_BYTES = 64 * 1024  # a real response (with a base64 certificate) is a few KiB
RETRY_BASE_DELAY = 0.25  # seconds before the first retry; doubled for each later one
RETRY_MAX_DELAY = 2.0  # seconds; keeps a retried call well inside a login's time window

# sign_info sent with sign_data. The app signs the base64-decoded sign_data bytes with SHA-256
# and its certificate's key (RSA PKCS#1 v1.5 for MOICA; ECDSA P-256 for the embedded authority's
# test devices), which push.verify checks against the returned certificate.
SIGN_TYPE = "PKCS#1"
TBS_ENCODING = "base64"
HASH_ALGORITHM = "SHA256"

# ATH-02 error codes that mean "not finished yet" rather than a failure.
_PENDING_SUFFIXES = frozenset({"SPTKTID_TXNLOG_NF", "20002", "20003"})


@dataclass(frozen=True)
class TicketAnswer:
    transaction_id: str
    sp_ticket: str
    ticket: Ticket


@dataclass(frozen=True)
class AthResult:
    transaction_id: str
    hashed_id_num: str
    signed_response: str  # base64 signature over sign_data (SIGN); may be empty for ATH
    cert: str  # base64 DER of the user's mobile MOICA certificate


@dataclass(frozen=True)
class DeviceStatus:
    is_fido: bool
    is_mcert_sign: bool


class SpApiError(Exception):
    """A final non-zero ``error_code``.

    ``verified`` is False when the response had no ``idp_checksum``, as when the server does
    not know our service id. The client uses such an error only to fail, never to succeed.
    """

    def __init__(self, code: str, message: str = "", *, verified: bool = True) -> None:
        self.code = code
        self.info: CodeInfo = classify(code)
        self.verified = verified
        super().__init__(f"SP API error {code}" + (f": {message}" if message else ""))


class SpApiUnavailable(Exception):
    """The SP API could not be reached, timed out, failed (5xx) or sent non-JSON, after retries."""


class SpApiUntrusted(Exception):
    """An answer with a missing or wrong idp_checksum, a bad ticket, or a malformed body."""


class _Transient(Exception):
    """A failure worth retrying."""


def _is_pending(code: str) -> bool:
    return code.strip().rsplit("-", 1)[-1] in _PENDING_SUFFIXES


class SpApiClient:
    """Call the four SP API operations over a shared ``aiohttp.ClientSession``."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        api_url: str,
        sp_service_id: str,
        aes_key: bytes,
        random_iv: bool = False,
        timeout: float = 10.0,
        retries: int = 2,
        check_device_path: str = PATH_CHECK_DEVICE,
    ) -> None:
        if len(aes_key) != checksum.KEY_BYTES:
            raise ValueError(f"the AES key must be {checksum.KEY_BYTES} bytes")
        self._http = http
        self._base = api_url.rstrip("/") + PATH_PREFIX
        self._sp_service_id = sp_service_id
        self._key = aes_key
        self._random_iv = random_iv
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retries = max(0, retries)
        self._check_device_path = check_device_path

    def __repr__(self) -> str:  # keeps the key out of tracebacks and debug output
        return f"SpApiClient(api={self._base!r}, sp_service_id={self._sp_service_id!r})"

    # -- the four calls ---------------------------------------------------------------------

    async def request_push(
        self,
        id_num: str,
        *,
        op_code: str,
        hint: str,
        time_limit: int,
        sign_data: str | None = None,
        device_user_def_desc: str | None = None,
    ) -> TicketAnswer:
        """Ask MOI to push an ATH or SIGN request to the user's bound device(s) (ATH-03)."""
        _check_time_limit(time_limit)
        _check_sign_data(sign_data)

        def build() -> dict[str, Any]:
            body: dict[str, Any] = {
                "transaction_id": str(uuid.uuid4()),
                "sp_service_id": self._sp_service_id,
                "id_num": id_num,
                "op_code": op_code,
                "hint": hint,
                "time_limit": time_limit,
            }
            if device_user_def_desc:
                body["device_user_def_desc"] = device_user_def_desc
            return self._finish(body, sign_data, checksum.ATH03_SP)

        return await self._ticket_call(PATH_REQUEST_PUSH, build, id_num)

    async def get_sp_ticket(
        self,
        id_num: str,
        *,
        op_code: str,
        hint: str,
        time_limit: int,
        op_mode: str = "I-SCAN",
        sign_data: str | None = None,
    ) -> TicketAnswer:
        """Get a ticket for a QR (I-SCAN) or app-to-app login (ATH-01)."""
        _check_time_limit(time_limit)
        _check_sign_data(sign_data)

        def build() -> dict[str, Any]:
            body: dict[str, Any] = {
                "transaction_id": str(uuid.uuid4()),
                "sp_service_id": self._sp_service_id,
                "id_num": id_num,
                "op_code": op_code,
                "op_mode": op_mode,
                "hint": hint,
                "time_limit": time_limit,
            }
            return self._finish(body, sign_data, checksum.ATH01_SP)

        return await self._ticket_call(PATH_GET_SP_TICKET, build, id_num)

    async def get_result(self, ticket: Ticket) -> AthResult | None:
        """Poll a transaction (ATH-02): None while pending, ``SpApiError`` on a final error.

        ATH-02 sends the ticket's ``transaction_id`` rather than a new one, because MOI looks
        the transaction up by that pair.
        """
        body: dict[str, Any] = {
            "transaction_id": ticket.transaction_id,
            "sp_service_id": self._sp_service_id,
            "sp_ticket_id": ticket.sp_ticket_id,
        }
        body["sp_checksum"] = self._checksum(body, checksum.ATH02_SP)
        body, answer = await self._exchange(PATH_GET_RESULT, lambda: body, None)

        code, result = _split(answer)
        fields = {
            "transaction_id": ticket.transaction_id,
            "error_code": code,
            "hashed_id_num": _text(result, "hashed_id_num"),
            "signed_response": _text(result, "signed_response"),
        }
        verified = self._verify_answer(code, result, fields, checksum.ATH02_IDP)
        if code != SUCCESS_CODE:
            if _is_pending(code):
                return None
            raise SpApiError(code, _text(answer, "error_message"), verified=verified)

        return AthResult(
            transaction_id=ticket.transaction_id,
            hashed_id_num=fields["hashed_id_num"],
            signed_response=fields["signed_response"],
            cert=_text(result, "cert"),
        )

    async def check_device_status(self, id_num: str) -> DeviceStatus:
        """Ask whether this ID number has a bound device (LF-01)."""

        def build() -> dict[str, Any]:
            body: dict[str, Any] = {
                "transaction_id": str(uuid.uuid4()),
                "sp_service_id": self._sp_service_id,
                "id_num": id_num,
            }
            body["sp_checksum"] = self._checksum(body, checksum.LF01_SP)
            return body

        body, answer = await self._exchange(self._check_device_path, build, id_num)

        code, result = _split(answer)
        fields = {
            "transaction_id": body["transaction_id"],
            "error_code": code,
            "is_fido": _text(result, "is_fido"),
            "is_mcert_sign": _text(result, "is_mcert_sign"),
        }
        verified = self._verify_answer(code, result, fields, checksum.LF01_IDP)
        if code != SUCCESS_CODE:
            raise SpApiError(code, _text(answer, "error_message"), verified=verified)
        return DeviceStatus(_flag(fields["is_fido"]), _flag(fields["is_mcert_sign"]))

    # -- shared steps -----------------------------------------------------------------------

    def _checksum(self, body: dict[str, Any], order: tuple[str, ...]) -> str:
        return checksum.make(self._key, body, order, random_iv=self._random_iv)

    def _finish(
        self, body: dict[str, Any], sign_data: str | None, order: tuple[str, ...]
    ) -> dict[str, Any]:
        """Add ``sign_info`` and the ``sp_checksum`` (covering sign_data) to a ticket request."""
        if sign_data is not None:
            body["sign_info"] = {
                "sign_type": SIGN_TYPE,
                "sign_data": sign_data,
                "tbs_encoding": TBS_ENCODING,
                "hash_algorithm": HASH_ALGORITHM,
            }
        body["sp_checksum"] = self._checksum({**body, "sign_data": sign_data}, order)
        return body

    async def _ticket_call(
        self, name: str, build: Callable[[], dict[str, Any]], id_num: str
    ) -> TicketAnswer:
        body, answer = await self._exchange(name, build, id_num)
        transaction_id = body["transaction_id"]

        code, result = _split(answer)
        sp_ticket = _text(result, "sp_ticket")
        fields = {"transaction_id": transaction_id, "error_code": code, "sp_ticket": sp_ticket}
        verified = self._verify_answer(code, result, fields, checksum.TICKET_IDP)
        if code != SUCCESS_CODE:
            raise SpApiError(code, _text(answer, "error_message"), verified=verified)

        try:
            ticket = decode_ticket(sp_ticket)
        except TicketError as exc:
            raise SpApiUntrusted(f"{name}: sp_ticket rejected: {exc}") from None
        if ticket.transaction_id != transaction_id:
            raise SpApiUntrusted(f"{name}: sp_ticket belongs to another transaction")
        return TicketAnswer(transaction_id, sp_ticket, ticket)

    def _verify_answer(
        self, code: str, result: dict[str, Any], fields: dict[str, str], order: tuple[str, ...]
    ) -> bool:
        """Verify the idp_checksum. Return False only for an error response that has none."""
        idp_checksum = result.get("idp_checksum")
        if idp_checksum in (None, "") and code != SUCCESS_CODE:
            log.warning(
                "SP API error %s for transaction %s came without idp_checksum",
                code,
                fields["transaction_id"],
            )
            return False
        try:
            checksum.verify(self._key, idp_checksum, fields, order)
        except checksum.ChecksumError as exc:
            log.warning(
                "SP API response for transaction %s rejected: %s", fields["transaction_id"], exc
            )
            raise SpApiUntrusted(f"idp_checksum rejected: {exc}") from None
        return True

    async def _exchange(
        self, name: str, build: Callable[[], dict[str, Any]], id_num: str | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """POST a request built by ``build``, retrying, and return (request body, JSON response).

        Each attempt calls ``build`` again, so ticket requests get a fresh transaction_id: MOI
        rejects a reused one (TXNLOG_INS_ERR) if the failed attempt did reach it.
        """
        url = self._base + name
        failure = ""
        for attempt in range(self._retries + 1):
            body = build()
            log.debug(
                "SP API %s transaction %s id %s (attempt %d)",
                name,
                body["transaction_id"],
                mask(id_num),
                attempt + 1,
            )
            try:
                return body, await self._post(url, body)
            except _Transient as exc:
                failure = str(exc)
            if attempt < self._retries:
                delay = min(RETRY_BASE_DELAY * 2**attempt, RETRY_MAX_DELAY)
                log.info("SP API %s failed (%s); retrying in %.2f s", name, failure, delay)
                await asyncio.sleep(delay)

        log.warning("SP API %s unavailable after %d attempts: %s", name, attempt + 1, failure)
        raise SpApiUnavailable(f"{name}: {failure}")

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            async with self._http.post(url, json=body, timeout=self._timeout) as response:
                if response.status >= 500:
                    raise _Transient(f"HTTP {response.status}")
                raw = await _read_limited(response)
                try:
                    answer = json.loads(raw)
                except (ValueError, RecursionError):
                    raise _Transient(f"HTTP {response.status} with a non-JSON body") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Transient(type(exc).__name__) from None

        if not isinstance(answer, dict) or "error_code" not in answer:
            raise SpApiUntrusted("response body is not an SP API response object")
        return answer


async def _read_limited(response: aiohttp.ClientResponse) -> bytes:
    data = bytearray()
    async for chunk in response.content.iter_chunked(8192):
        data += chunk
        if len(data) > MAX_RESPONSE_BYTES:
            raise SpApiUntrusted(f"response body is larger than {MAX_RESPONSE_BYTES} bytes")
    return bytes(data)


def _split(answer: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Return (error_code as text, result object or {})."""
    code = answer.get("error_code")
    if not isinstance(code, str | int) or isinstance(code, bool):
        raise SpApiUntrusted("error_code is missing or not text")
    result = answer.get("result")
    if result is None:
        result = {}
    if not isinstance(result, dict):
        raise SpApiUntrusted("result is not an object")
    return str(code), result


def _text(source: dict[str, Any], name: str) -> str:
    value = source.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SpApiUntrusted(f"{name} is not text")
    return value


def _flag(value: str) -> bool:
    if value not in ("Y", "N"):
        raise SpApiUntrusted("device status flag is neither Y nor N")
    return value == "Y"


def _check_time_limit(time_limit: int) -> None:
    if not MIN_TIME_LIMIT <= time_limit <= MAX_TIME_LIMIT:
        raise ValueError(
            f"time_limit must be {MIN_TIME_LIMIT}-{MAX_TIME_LIMIT} seconds, not {time_limit}"
        )


def _check_sign_data(sign_data: str | None) -> None:
    if sign_data is not None and len(sign_data) > MAX_SIGN_DATA_CHARS:
        raise ValueError(f"sign_data must be at most {MAX_SIGN_DATA_CHARS} characters")
