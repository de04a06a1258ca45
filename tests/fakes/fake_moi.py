"""A fake MOI TW FidO SP API server for tests: strict on requests, scriptable per ID number.

It checks every ``sp_checksum``, the ``sp_service_id``, ``transaction_id`` reuse, the
``time_limit`` range, the ID number format and the ``sign_data`` length like the real service.
Its responses carry ``idp_checksum`` values, and it records each call with its arrival time.
Tests decide per ID number what the "user" does (approve, deny, stay pending for N polls, ...).

Run it alone: ``python -m tests.fakes.fake_moi --port 8765`` (prints the AES key it uses).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from push import checksum, ticket
from server.idnumber import is_valid
from tests.fakes import UserCredential

SP_SERVICE_ID = "fake-sp-service"
SP_NAME = "測試服務"
DEFAULT_TIME_LIMIT = 60  # seconds; what public integrations send when they omit time_limit
MAX_TRANSACTION_ID_CHARS = 100
MAX_SIGN_DATA_CHARS = 1024

PREFIX = {
    "getSpTicket": "SP-API-ATH-01-",
    "getAthOrSignResult": "SP-API-ATH-02-",
    "requestAthOrSignPush": "SP-API-ATH-03-",
    "checkDeviceStatus": "SP-API-LF-01-",
}
# Final outcomes a script can give; "manual" waits for controller.approve()/deny().
OUTCOMES = ("approve", "deny", "expire", "sign_fail", "manual")


@dataclass
class Script:
    """What the fake does for one ID number."""

    outcome: str = "approve"
    pending_polls: int = 0  # ATH-02 returns SPTKTID_TXNLOG_NF this many times first
    bound: bool = True  # False: IDNUM_USERPROF_NF (no mobile credential at all)
    device_bound: bool = True  # False: IDNUM_DEVPROF_NF
    push_fails: bool = False  # ATH-03 returns PS_FCM_NOT_FOUND, but ATH-01 (QR) still works
    tamper_idp_checksum: bool = False  # every answer for this ID gets a wrong idp_checksum
    tamper_ticket_digest: bool = False  # tickets get a wrong digest (idp_checksum still right)
    credential: UserCredential | None = None  # signs sign_data and supplies ``cert``


@dataclass
class Call:
    name: str
    at: float  # time.monotonic() on arrival
    body: dict[str, Any]
    error_code: str = ""
    status: int = 200


@dataclass
class Transaction:
    id_num: str
    op_code: str
    sign_data: str | None
    sp_ticket: str
    parsed: ticket.Ticket
    expires_at: float
    polls: int = 0
    decision: str = ""  # "approve" | "deny" once decided by the controller
    redeemed: bool = False


@dataclass
class FakeMoi:
    """The fake's state, and the controller tests use to script and inspect it."""

    aes_key: bytes = field(default_factory=lambda: os.urandom(32))
    sp_service_id: str = SP_SERVICE_ID
    default: Script = field(default_factory=Script)
    scripts: dict[str, Script] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    transactions: dict[str, Transaction] = field(default_factory=dict)  # by sp_ticket_id
    seen_transaction_ids: set[str] = field(default_factory=set)
    fail_statuses: list[int] = field(default_factory=list)  # next answers' HTTP errors

    # -- scripting ----------------------------------------------------------------------------

    def script(self, id_num: str, **settings: Any) -> Script:
        if settings.get("outcome", "approve") not in OUTCOMES:
            raise ValueError(f"unknown outcome {settings['outcome']!r}; use one of {OUTCOMES}")
        self.scripts[id_num] = Script(**settings)
        return self.scripts[id_num]

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next ``count`` requests with HTTP ``status`` (before any checks)."""
        self.fail_statuses.extend([status] * count)

    def approve(self, sp_ticket_id: str) -> None:
        self.transactions[sp_ticket_id].decision = "approve"

    def deny(self, sp_ticket_id: str) -> None:
        self.transactions[sp_ticket_id].decision = "deny"

    def calls_to(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    def _script_for(self, id_num: str) -> Script:
        return self.scripts.get(id_num, self.default)

    # -- HTTP ---------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/moise/sp/{name}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        call = Call(name, time.monotonic(), {})
        self.calls.append(call)
        if name not in PREFIX:
            call.status = 404
            return web.Response(status=404, text="not found")
        if self.fail_statuses:
            call.status = self.fail_statuses.pop(0)
            return web.Response(status=call.status, text="fake failure")
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            call.status = 400
            return web.Response(status=400, text="body is not a JSON object")
        call.body = body

        answer = self._answer(name, body)
        call.error_code = answer["error_code"]
        return web.json_response(answer)

    def _answer(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        prefix = PREFIX[name]
        transaction_id = _text(body, "transaction_id")

        def error(code: str, *, signed: bool = True, script: Script | None = None) -> dict:
            return self._reply(name, transaction_id, prefix + code, {}, signed, script)

        if body.get("sp_service_id") != self.sp_service_id:
            return error("SPSVCID_NF", signed=False)  # no key known, so no idp_checksum
        sign_info = body.get("sign_info") if isinstance(body.get("sign_info"), dict) else {}
        fields = {**body, "sign_data": sign_info.get("sign_data")}
        try:
            checksum.verify(self.aes_key, body.get("sp_checksum"), fields, _SP_ORDER[name])
        except checksum.ChecksumError:
            return error("INV_SP_CHECKSUM")
        if not transaction_id or len(transaction_id) > MAX_TRANSACTION_ID_CHARS:
            return error("TXNLOG_INS_ERR")

        if name == "getAthOrSignResult":
            return self._result(transaction_id, _text(body, "sp_ticket_id"))
        if transaction_id in self.seen_transaction_ids:
            return error("TXNLOG_INS_ERR")
        self.seen_transaction_ids.add(transaction_id)

        id_num = _text(body, "id_num")
        if not is_valid(id_num) or id_num != id_num.upper():
            return error("PM_IDN_FT_ERR")
        script = self._script_for(id_num)
        if not script.bound:
            return error("IDNUM_USERPROF_NF", script=script)
        if name == "checkDeviceStatus":
            flags = {"is_fido": "Y" if script.device_bound else "N", "is_mcert_sign": "Y"}
            return self._reply(name, transaction_id, "0", flags, True, script)
        if not script.device_bound:
            return error("IDNUM_DEVPROF_NF", script=script)
        return self._issue_ticket(name, body, transaction_id, sign_info, script)

    def _issue_ticket(
        self,
        name: str,
        body: dict[str, Any],
        transaction_id: str,
        sign_info: dict[str, Any],
        script: Script,
    ) -> dict[str, Any]:
        prefix = PREFIX[name]

        def error(code: str) -> dict:
            return self._reply(name, transaction_id, prefix + code, {}, True, script)

        time_limit = body.get("time_limit", DEFAULT_TIME_LIMIT)
        if isinstance(time_limit, str) and time_limit.isdigit():
            time_limit = int(time_limit)
        if not isinstance(time_limit, int) or isinstance(time_limit, bool):
            return error("SPTKT_TIME_FT_ERR")
        if not 30 <= time_limit <= 600:
            return error("SPTKT_TIME_ORV")
        op_code = _text(body, "op_code")
        sign_data = sign_info.get("sign_data")
        if op_code not in ("ATH", "SIGN", "NFCSIGN") or (op_code == "SIGN" and not sign_data):
            return error("PM_OP_CODE_ERR")  # NOTE: fake-only code; the real one is unknown
        if isinstance(sign_data, str) and len(sign_data) > MAX_SIGN_DATA_CHARS:
            return error("SIGNDATA_LEN_LIMIT")
        if name == "requestAthOrSignPush" and script.push_fails:
            return error("PS_FCM_NOT_FOUND")

        id_num = _text(body, "id_num")
        parsed = ticket.Ticket(
            transaction_id=transaction_id,
            op_code=op_code,
            op_mode=_text(body, "op_mode") or "PUSH",
            sp_service_id=self.sp_service_id,
            sp_ticket_id=uuid.uuid4().hex,
            sp_name=SP_NAME,
            hint=_text(body, "hint"),
            expiration_time=str(int(time.time()) + time_limit),
            hashed_id_num=_hash_id(id_num),
            version="1.0",
        )
        sp_ticket = ticket.encode(parsed)
        self.transactions[parsed.sp_ticket_id] = Transaction(
            id_num, op_code, sign_data, sp_ticket, parsed, time.monotonic() + time_limit
        )
        if script.tamper_ticket_digest:
            sp_ticket = sp_ticket[:-2] + ("AA" if not sp_ticket.endswith("AA") else "BB")
        return self._reply(name, transaction_id, "0", {"sp_ticket": sp_ticket}, True, script)

    def _result(self, transaction_id: str, sp_ticket_id: str) -> dict[str, Any]:
        name = "getAthOrSignResult"
        prefix = PREFIX[name]
        txn = self.transactions.get(sp_ticket_id)
        if txn is None or txn.parsed.transaction_id != transaction_id:
            return self._reply(name, transaction_id, prefix + "SPTKTID_SPTKT_NF", {}, True, None)
        script = self._script_for(txn.id_num)

        def answer(code: str, result: dict[str, str] | None = None) -> dict[str, Any]:
            full = code if code == "0" else prefix + code
            return self._reply(name, transaction_id, full, result or {}, True, script)

        if txn.redeemed:
            return answer("SPTKTID_SPTKT_RDM")
        if time.monotonic() > txn.expires_at:
            return answer("SPTKT_OVD")
        txn.polls += 1
        outcome = txn.decision or script.outcome
        if txn.polls <= script.pending_polls or outcome == "manual":
            return answer("SPTKTID_TXNLOG_NF")
        if outcome == "deny":
            return answer("APP_USER_CANCEL")
        if outcome == "expire":
            return answer("SPTKT_OVD")
        if outcome == "sign_fail":
            return answer("APP_SIGN_FAILURE")

        txn.redeemed = True
        return answer("0", self._signed_result(txn, script))

    def _signed_result(self, txn: Transaction, script: Script) -> dict[str, str]:
        signed_response = cert = ""
        if script.credential is not None:
            cert = script.credential.cert_b64
            if txn.sign_data:
                try:
                    data = base64.b64decode(txn.sign_data, validate=True)
                except binascii.Error:
                    data = txn.sign_data.encode("utf-8")
                signed_response = script.credential.sign_b64(data)
        return {
            "hashed_id_num": _hash_id(txn.id_num),
            "signed_response": signed_response,
            "cert": cert,
        }

    def _reply(
        self,
        name: str,
        transaction_id: str,
        error_code: str,
        result: dict[str, str],
        signed: bool,
        script: Script | None,
    ) -> dict[str, Any]:
        if signed:
            fields = {"transaction_id": transaction_id, "error_code": error_code, **result}
            idp = checksum.make(self.aes_key, fields, _IDP_ORDER[name], random_iv=False)
            if script is not None and script.tamper_idp_checksum:
                idp = idp[:-1] + ("0" if idp[-1] != "0" else "1")
            result = {**result, "idp_checksum": idp}
        return {
            "error_code": error_code,
            "error_message": "" if error_code == "0" else error_code.rsplit("-", 1)[-1],
            "result": result or None,
        }


_SP_ORDER = {
    "getSpTicket": checksum.ATH01_SP,
    "requestAthOrSignPush": checksum.ATH03_SP,
    "getAthOrSignResult": checksum.ATH02_SP,
    "checkDeviceStatus": checksum.LF01_SP,
}
_IDP_ORDER = {
    "getSpTicket": checksum.TICKET_IDP,
    "requestAthOrSignPush": checksum.TICKET_IDP,
    "getAthOrSignResult": checksum.ATH02_IDP,
    "checkDeviceStatus": checksum.LF01_IDP,
}


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    return value if isinstance(value, str) else ""


def _hash_id(id_num: str) -> str:
    # NOTE: the real hash behind hashed_id_num is unconfirmed; the fake uses SHA-256 hex.
    return hashlib.sha256(id_num.encode("ascii")).hexdigest()


@dataclass
class FakeMoiDriver:
    """Plays the user against the fake for ``tests.push.conformance``."""

    fake: FakeMoi
    api_url: str
    bound_id: str = "A123456789"
    unbound_id: str = "B142857136"

    def __post_init__(self) -> None:
        self.fake.script(self.bound_id, outcome="manual")
        self.fake.script(self.unbound_id, device_bound=False)

    @property
    def sp_service_id(self) -> str:
        return self.fake.sp_service_id

    @property
    def aes_key(self) -> bytes:
        return self.fake.aes_key

    async def approve(self, answer: Any) -> None:
        self.fake.approve(answer.ticket.sp_ticket_id)

    async def deny(self, answer: Any) -> None:
        self.fake.deny(answer.ticket.sp_ticket_id)


async def start_fake_moi(
    fake: FakeMoi | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> tuple[str, FakeMoi, web.AppRunner]:
    """Start the fake on ``host`` and return (base URL, controller, runner to clean up)."""
    fake = fake or FakeMoi()
    runner = web.AppRunner(fake.make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    return f"http://{host}:{bound_port}", fake, runner


async def _serve(port: int, aes_key: str | None) -> None:
    fake = FakeMoi(aes_key=checksum.decode_key(aes_key)) if aes_key else FakeMoi()
    url, fake, runner = await start_fake_moi(fake, port=port)
    print(f"fake MOI SP API at {url}")
    print(f"sp_service_id={fake.sp_service_id}")
    print(f"aes_key={base64.b64encode(fake.aes_key).decode()}")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake MOI SP API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8765, help="TCP port to listen on")
    parser.add_argument("--aes-key", help="base64 AES-256 key to use (default: a random one)")
    args = parser.parse_args()
    try:
        asyncio.run(_serve(args.port, args.aes_key))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
