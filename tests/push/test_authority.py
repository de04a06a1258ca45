"""Embedded TW FidO authority over real HTTP and WebSocket, with the phone simulator as the app."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

import qr
from push import checksum
from push import ticket as ticket_codec
from push.authority import create_authority_app
from push.phone import PhoneError, PhoneSimulator

KEY = bytes(range(32))
SERVICE_ID = "test-sp"
ID_NUMBER = "A123456789"
OTHER_ID = "B120863158"
HINT = "全國主計網(eBAS) 登入，驗證碼 42"
ORDERS = {
    "getSpTicket": (checksum.ATH01_SP, checksum.TICKET_IDP),
    "requestAthOrSignPush": (checksum.ATH03_SP, checksum.TICKET_IDP),
    "getAthOrSignResult": (checksum.ATH02_SP, checksum.ATH02_IDP),
    "checkDeviceStatus": (checksum.LF01_SP, checksum.LF01_IDP),
}
IDP_FIELDS = {
    "getSpTicket": ("sp_ticket",),
    "requestAthOrSignPush": ("sp_ticket",),
    "getAthOrSignResult": ("hashed_id_num", "signed_response"),
    "checkDeviceStatus": ("is_fido", "is_mcert_sign"),
}


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Authority:
    """A running authority: its URL, clock and the on_result calls it made."""

    def __init__(self, url: str, clock: Clock, results: list[str], state_dir: Path) -> None:
        self.url = url
        self.clock = clock
        self.results = results
        self.state_dir = state_dir

    async def call(self, name: str, key: bytes = KEY, **fields: Any) -> dict[str, Any]:
        """POST one SP API request with a correct sp_checksum (unless ``key`` is wrong)."""
        body: dict[str, Any] = {
            "transaction_id": str(uuid.uuid4()),
            "sp_service_id": SERVICE_ID,
            **fields,
        }
        sign_data = body.get("sign_info", {}).get("sign_data")
        body["sp_checksum"] = checksum.make(
            key, {**body, "sign_data": sign_data}, ORDERS[name][0], random_iv=False
        )
        return await self.post(name, body)

    async def post(self, name: str, body: Any) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.url}/twfido/moise/sp/{name}", json=body) as response,
        ):
            answer: dict[str, Any] = await response.json()
        transaction_id = body.get("transaction_id", "") if isinstance(body, dict) else ""
        verify_idp(name, transaction_id, answer)
        return answer

    async def push(self, id_number: str = ID_NUMBER, hint: str = HINT, **extra: Any) -> dict:
        return await self.call(
            "requestAthOrSignPush", id_num=id_number, op_code="ATH", hint=hint, time_limit=60,
            **extra,
        )  # fmt: skip

    async def result(self, sp_ticket: str) -> dict[str, Any]:
        ticket = ticket_codec.decode(sp_ticket)
        return await self.call(
            "getAthOrSignResult",
            transaction_id=ticket.transaction_id,
            sp_ticket_id=ticket.sp_ticket_id,
        )

    async def phone(self, id_number: str = ID_NUMBER, *, connect: bool = True) -> PhoneSimulator:
        phone = PhoneSimulator(self.url, id_number, self.state_dir)
        await phone.enroll()
        if connect:
            await phone.connect()
        return phone


def verify_idp(name: str, transaction_id: str, answer: dict[str, Any]) -> None:
    """Check the idp_checksum the authority put on an answer."""
    result = answer["result"]
    fields = {field: result.get(field, "") for field in IDP_FIELDS[name]}
    fields.update(transaction_id=transaction_id, error_code=answer["error_code"])
    checksum.verify(KEY, result["idp_checksum"], fields, ORDERS[name][1])


async def start(tmp_path: Path, **options: Any) -> tuple[TestServer, Authority]:
    clock = Clock()
    results: list[str] = []
    root = web.Application()
    root.add_subapp(
        "/twfido",
        create_authority_app(
            data_dir=tmp_path / "data",
            sp_service_id=SERVICE_ID,
            aes_key=KEY,
            on_result=results.append,
            clock=clock,
            **options,
        ),
    )
    server = TestServer(root, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    return server, Authority(url, clock, results, tmp_path / "phones")


@pytest.fixture
async def authority(tmp_path: Path) -> AsyncIterator[Authority]:
    server, running = await start(tmp_path)
    yield running
    await server.close()


@pytest.fixture
async def phone(authority: Authority) -> AsyncIterator[PhoneSimulator]:
    simulator = await authority.phone()
    yield simulator
    await simulator.close()


# -- SP API request checks --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "prefix", "fields"),
    [
        (
            "getSpTicket",
            "SP-API-ATH-01",
            {"id_num": ID_NUMBER, "op_code": "ATH", "op_mode": "I-SCAN"},
        ),
        ("requestAthOrSignPush", "SP-API-ATH-03", {"id_num": ID_NUMBER, "op_code": "ATH"}),
        ("getAthOrSignResult", "SP-API-ATH-02", {"sp_ticket_id": "x"}),
        ("checkDeviceStatus", "SP-API-LF-01", {"id_num": ID_NUMBER}),
    ],
)
async def test_wrong_checksum_rejected(
    authority: Authority, name: str, prefix: str, fields: dict[str, Any]
) -> None:
    answer = await authority.call(name, key=bytes(32), **fields)

    assert answer["error_code"] == f"{prefix}-INV_SP_CHECKSUM"


async def test_unknown_service_id_rejected(authority: Authority) -> None:
    body = {"transaction_id": "t1", "sp_service_id": "other", "id_num": ID_NUMBER}
    body["sp_checksum"] = checksum.make(KEY, body, checksum.LF01_SP, random_iv=False)

    answer = await authority.post("checkDeviceStatus", body)

    assert answer["error_code"] == "SP-API-LF-01-SPSVCID_NF"


async def test_non_json_body_rejected(authority: Authority) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{authority.url}/twfido/moise/sp/getSpTicket", data=b"{nope") as response,
    ):
        answer = await response.json()

    assert response.status == 400
    assert answer["error_code"] == "SP-API-ATH-01-REQ_FT_ERR"


async def test_reused_transaction_id_rejected(authority: Authority) -> None:
    first = await authority.call("checkDeviceStatus", transaction_id="same", id_num=ID_NUMBER)
    second = await authority.call("checkDeviceStatus", transaction_id="same", id_num=ID_NUMBER)

    assert first["error_code"] == "0"
    assert second["error_code"] == "SP-API-LF-01-TXNLOG_INS_ERR"


@pytest.mark.parametrize(("time_limit", "code"), [(29, "SPTKT_TIME_ORV"), (601, "SPTKT_TIME_ORV"),
                                                  ("soon", "SPTKT_TIME_FT_ERR")])  # fmt: skip
async def test_time_limit_outside_range_rejected(
    authority: Authority, phone: PhoneSimulator, time_limit: object, code: str
) -> None:
    answer = await authority.call(
        "getSpTicket", id_num=ID_NUMBER, op_code="ATH", op_mode="I-SCAN", hint="h",
        time_limit=time_limit,
    )  # fmt: skip

    assert answer["error_code"] == f"SP-API-ATH-01-{code}"


async def test_invalid_id_number_rejected(authority: Authority) -> None:
    answer = await authority.push(id_number="A123456788")

    assert answer["error_code"] == "SP-API-ATH-03-PM_IDN_FT_ERR"


async def test_unbound_id_number_rejected(authority: Authority) -> None:
    answer = await authority.push()

    assert answer["error_code"] == "SP-API-ATH-03-IDNUM_DEVPROF_NF"


async def test_device_status_reports_binding(authority: Authority) -> None:
    before = await authority.call("checkDeviceStatus", id_num=ID_NUMBER)
    phone = await authority.phone(connect=False)
    after = await authority.call("checkDeviceStatus", id_num=ID_NUMBER)
    await phone.close()

    assert before["result"]["is_fido"] == "N"
    assert after["result"]["is_fido"] == "Y"
    assert after["result"]["is_mcert_sign"] == "Y"


async def test_push_without_connected_phone(authority: Authority) -> None:
    phone = await authority.phone(connect=False)

    answer = await authority.push()
    await phone.close()

    assert answer["error_code"] == "SP-API-ATH-03-PS_FCM_NOT_FOUND"
    assert answer["result"]["sp_ticket"] == ""


# -- push flow -----------------------------------------------------------------------------------


async def test_push_reaches_phone_with_hidden_code(
    authority: Authority, phone: PhoneSimulator
) -> None:
    answer = await authority.push()
    push = await phone.next_push(5)
    ticket = ticket_codec.decode(answer["result"]["sp_ticket"])

    assert answer["error_code"] == "0"
    assert push["txn"] == ticket.sp_ticket_id
    assert push["sp_name"] == "全國主計網(eBAS)"
    assert "42" not in push["hint"]
    assert "全國主計網(eBAS)" in push["hint"]
    assert "42" in push["choices"]
    assert len(set(push["choices"])) == 3
    assert push["expires_in"] == 60
    assert ticket.hint == HINT
    assert ticket.sp_service_id == SERVICE_ID


async def test_approve_with_right_code_succeeds(
    authority: Authority, phone: PhoneSimulator
) -> None:
    sp_ticket = (await authority.push())["result"]["sp_ticket"]
    push = await phone.next_push(5)
    pending = await authority.result(sp_ticket)

    outcome = await phone.approve(push, "42")
    answer = await authority.result(sp_ticket)

    assert pending["error_code"] == "SP-API-ATH-02-SPTKTID_TXNLOG_NF"
    assert outcome == {"type": "result", "txn": push["txn"], "ok": True, "reason": "approved"}
    assert answer["error_code"] == "0"
    result = answer["result"]
    assert result["hashed_id_num"] == hashlib.sha256(ID_NUMBER.encode()).hexdigest()
    certificate = x509.load_der_x509_certificate(base64.b64decode(result["cert"]))
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    # The device signed the ticket itself (ATH); raises InvalidSignature otherwise.
    public_key.verify(
        base64.b64decode(result["signed_response"]), sp_ticket.encode(), ec.ECDSA(hashes.SHA256())
    )
    assert authority.results == [push["txn"]]


async def test_result_fetched_twice_is_redeemed(
    authority: Authority, phone: PhoneSimulator
) -> None:
    sp_ticket = (await authority.push())["result"]["sp_ticket"]
    await phone.approve(await phone.next_push(5), "42")

    first = await authority.result(sp_ticket)
    second = await authority.result(sp_ticket)

    assert first["error_code"] == "0"
    assert second["error_code"] == "SP-API-ATH-02-SPTKTID_SPTKT_RDM"
    assert second["result"]["signed_response"] == ""


async def test_wrong_code_counts_as_denied(authority: Authority, phone: PhoneSimulator) -> None:
    sp_ticket = (await authority.push())["result"]["sp_ticket"]
    push = await phone.next_push(5)
    wrong = next(choice for choice in push["choices"] if choice != "42")

    outcome = await phone.approve(push, wrong)
    answer = await authority.result(sp_ticket)

    assert outcome["ok"] is False
    assert outcome["reason"] == "wrong_code"
    assert answer["error_code"] == "SP-API-ATH-02-APP_USER_CANCEL"
    assert authority.results == [push["txn"]]


async def test_deny_is_user_cancel(authority: Authority, phone: PhoneSimulator) -> None:
    sp_ticket = (await authority.push())["result"]["sp_ticket"]
    push = await phone.next_push(5)

    outcome = await phone.deny(push)
    answer = await authority.result(sp_ticket)

    assert outcome["reason"] == "denied"
    assert answer["error_code"] == "SP-API-ATH-02-APP_USER_CANCEL"
    assert authority.results == [push["txn"]]


async def test_bad_signature_fails_transaction(authority: Authority, phone: PhoneSimulator) -> None:
    sp_ticket = (await authority.push())["result"]["sp_ticket"]
    push = await phone.next_push(5)
    forged = phone.sign(b"something else")

    await phone.send({"type": "approve", "txn": push["txn"], "choice": "42", "signature": forged})
    outcome = await phone.next_frame(5)
    answer = await authority.result(sp_ticket)

    assert outcome["reason"] == "bad_signature"
    assert answer["error_code"] == "SP-API-ATH-02-APP_SIGN_FAILURE"
    assert authority.results == [push["txn"]]


async def test_raw_webcrypto_signature_accepted(
    authority: Authority, phone: PhoneSimulator
) -> None:
    sp_ticket = (await authority.push())["result"]["sp_ticket"]
    push = await phone.next_push(5)
    r, s = decode_dss_signature(base64.b64decode(phone.sign(base64.b64decode(push["challenge"]))))
    raw = base64.b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big")).decode()

    await phone.send({"type": "approve", "txn": push["txn"], "choice": "42", "signature": raw})
    outcome = await phone.next_frame(5)
    answer = await authority.result(sp_ticket)

    assert outcome["reason"] == "approved"
    assert answer["error_code"] == "0"


async def test_late_approve_after_expiry_changes_nothing(
    authority: Authority, phone: PhoneSimulator
) -> None:
    sp_ticket = (await authority.push())["result"]["sp_ticket"]
    push = await phone.next_push(5)
    authority.clock.now += 61

    outcome = await phone.approve(push, "42")
    answer = await authority.result(sp_ticket)

    assert outcome["ok"] is False
    assert outcome["reason"] == "expired"
    assert answer["error_code"] == "SP-API-ATH-02-SPTKT_OVD"
    assert authority.results == []


async def test_second_answer_changes_nothing(authority: Authority, phone: PhoneSimulator) -> None:
    sp_ticket = (await authority.push())["result"]["sp_ticket"]
    push = await phone.next_push(5)
    await phone.deny(push)

    outcome = await phone.approve(push, "42")
    answer = await authority.result(sp_ticket)

    assert outcome["reason"] == "already_answered"
    assert answer["error_code"] == "SP-API-ATH-02-APP_USER_CANCEL"
    assert authority.results == [push["txn"]]


async def test_push_without_code_has_no_choices(
    authority: Authority, phone: PhoneSimulator
) -> None:
    sp_ticket = (await authority.push(hint="全國主計網(eBAS) 登入"))["result"]["sp_ticket"]
    push = await phone.next_push(5)

    outcome = await phone.approve(push)
    answer = await authority.result(sp_ticket)

    assert push["choices"] == []
    assert outcome["reason"] == "approved"
    assert answer["error_code"] == "0"


async def test_sign_request_signs_sign_data(authority: Authority, phone: PhoneSimulator) -> None:
    data = b"login challenge from eBAS"
    sign_info = {"sign_type": "PKCS#1", "sign_data": base64.b64encode(data).decode(),
                 "tbs_encoding": "base64", "hash_algorithm": "SHA256"}  # fmt: skip
    answer = await authority.call(
        "requestAthOrSignPush", id_num=ID_NUMBER, op_code="SIGN", hint="簽章", sign_info=sign_info
    )
    push = await phone.next_push(5)
    await phone.approve(push)

    result = (await authority.result(answer["result"]["sp_ticket"]))["result"]

    certificate = x509.load_der_x509_certificate(base64.b64decode(result["cert"]))
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(base64.b64decode(result["signed_response"]), data, ec.ECDSA(hashes.SHA256()))


async def test_pending_push_sent_on_connect(authority: Authority, phone: PhoneSimulator) -> None:
    second = await authority.phone(connect=False)
    await authority.push()
    await second.connect()

    push = await second.next_push(5)
    await second.close()

    assert push["type"] == "push"


# -- QR (I-SCAN) flow ----------------------------------------------------------------------------


async def test_qr_scan_flow_approves(authority: Authority, phone: PhoneSimulator) -> None:
    answer = await authority.call(
        "getSpTicket", id_num=ID_NUMBER, op_code="ATH", op_mode="I-SCAN", hint=HINT, time_limit=90
    )
    sp_ticket = answer["result"]["sp_ticket"]

    prompt = await phone.scan(qr.qr_payload(sp_ticket))
    outcome = await phone.approve(prompt, "42")
    result = await authority.result(sp_ticket)

    assert answer["error_code"] == "0"
    assert ticket_codec.decode(sp_ticket).op_mode == "I-SCAN"
    assert prompt["txn"] == ticket_codec.decode(sp_ticket).sp_ticket_id
    assert prompt["expires_in"] == 90
    assert outcome["reason"] == "approved"
    assert result["error_code"] == "0"


async def test_qr_scan_by_other_identity_rejected(
    authority: Authority, phone: PhoneSimulator
) -> None:
    other = await authority.phone(OTHER_ID)
    answer = await authority.call(
        "getSpTicket", id_num=ID_NUMBER, op_code="ATH", op_mode="I-SCAN", hint=HINT
    )

    with pytest.raises(PhoneError) as error:
        await other.scan(answer["result"]["sp_ticket"])
    await other.close()

    assert error.value.reason == "wrong_identity"


async def test_qr_scan_of_garbage_rejected(phone: PhoneSimulator) -> None:
    with pytest.raises(PhoneError) as error:
        await phone.scan("not a ticket")

    assert error.value.reason == "invalid_qr"


async def test_qr_scan_after_expiry_rejected(authority: Authority, phone: PhoneSimulator) -> None:
    answer = await authority.call(
        "getSpTicket", id_num=ID_NUMBER, op_code="ATH", op_mode="I-SCAN", hint=HINT, time_limit=30
    )
    authority.clock.now += 31

    with pytest.raises(PhoneError) as error:
        await phone.scan(answer["result"]["sp_ticket"])

    assert error.value.reason == "expired"


# -- enrollment and channel ----------------------------------------------------------------------


async def test_enroll_rejected_when_not_allowed(tmp_path: Path) -> None:
    server, running = await start(tmp_path, allow_enroll_from="none")
    phone = PhoneSimulator(running.url, ID_NUMBER, running.state_dir)

    with pytest.raises(PhoneError) as error:
        await phone.enroll()
    await server.close()

    assert error.value.reason == "enroll_forbidden"


async def test_enroll_returns_ca_certificate(authority: Authority, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    body = {"id_number": ID_NUMBER.lower(), "public_key": pem.decode(), "device_name": "pixel"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{authority.url}/twfido/app/enroll", json=body) as response,
    ):
        answer = await response.json()

    certificate = x509.load_pem_x509_certificate(answer["certificate"].encode())
    intermediate = x509.load_pem_x509_certificate(
        (tmp_path / "data" / "twfido-ca" / "intermediate.pem").read_bytes()
    )
    assert response.status == 201
    assert answer["device_id"].startswith("dev_")
    certificate.verify_directly_issued_by(intermediate)
    assert certificate.public_key() == key.public_key()
    assert (tmp_path / "data" / "twfido-ca" / "root.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"id_number": "A123456788", "public_key": "x"}, "invalid_id_number"),
        ({"id_number": ID_NUMBER, "public_key": "not a key"}, "invalid_input"),
        ({"id_number": ID_NUMBER}, "invalid_input"),
    ],
)
async def test_enroll_rejects_bad_input(
    authority: Authority, body: dict[str, str], error: str
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{authority.url}/twfido/app/enroll", json=body) as response,
    ):
        answer = await response.json()

    assert response.status == 400
    assert answer["error"] == error


async def test_malformed_frames_get_error_frames(phone: PhoneSimulator) -> None:
    replies = []
    for text in ("{nope", "[1, 2]", '{"type": "launch"}', "[" * 5000):
        await phone.send_raw(text)
        replies.append(await phone.next_frame(5))
    await phone.send({"type": "ping"})
    still_open = await phone.next_frame(5)

    assert [reply["reason"] for reply in replies] == [
        "bad_json", "bad_frame", "unknown_type", "bad_json",
    ]  # fmt: skip
    assert all(reply["type"] == "error" for reply in replies)
    assert still_open == {"type": "pong"}


async def test_answer_for_unknown_txn_not_found(phone: PhoneSimulator) -> None:
    await phone.send({"type": "deny", "txn": "no-such-ticket"})

    reply = await phone.next_frame(5)

    assert reply == {"type": "result", "txn": "no-such-ticket", "ok": False, "reason": "not_found"}


async def test_hello_with_bad_signature_closes(authority: Authority) -> None:
    phone = await authority.phone(connect=False)
    phone.sign = lambda data: base64.b64encode(b"\x00" * 64).decode()  # type: ignore[method-assign]

    with pytest.raises(PhoneError) as error:
        await phone.connect()
    await phone.close()

    assert error.value.reason == "bad_signature"


async def test_frame_before_hello_closes(authority: Authority) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{authority.url}/twfido/app/channel") as ws,
    ):
        challenge = await ws.receive_json()
        await ws.send_json({"type": "scan", "payload": "x"})
        reply = await ws.receive_json()
        closing = await ws.receive()

    assert challenge["type"] == "challenge"
    assert reply["reason"] == "unauthenticated"
    assert closing.type == aiohttp.WSMsgType.CLOSE
    assert closing.data == 4001


# -- the production SP client against the authority -----------------------------------------------


async def test_sp_client_interoperates(authority: Authority, phone: PhoneSimulator) -> None:
    client_module = pytest.importorskip("push.client")
    async with aiohttp.ClientSession() as http:
        client = client_module.SpApiClient(
            http, api_url=authority.url + "/twfido", sp_service_id=SERVICE_ID, aes_key=KEY
        )
        status = await client.check_device_status(ID_NUMBER)
        started = await client.request_push(ID_NUMBER, op_code="ATH", hint=HINT, time_limit=60)
        pending = await client.get_result(started.ticket)
        await phone.approve(await phone.next_push(5), "42")
        result = await client.get_result(started.ticket)

    assert status.is_fido
    assert pending is None
    assert result is not None
    assert result.hashed_id_num == hashlib.sha256(ID_NUMBER.encode()).hexdigest()
    assert x509.load_der_x509_certificate(base64.b64decode(result.cert))


async def test_frame_flood_closes_channel(phone: PhoneSimulator) -> None:
    from push.authority.channel import MAX_FRAMES_PER_WINDOW

    # The hello counts as the first frame of the window.
    for _ in range(MAX_FRAMES_PER_WINDOW):
        await phone.send({"type": "ping"})
    replies = [await phone.next_frame(5) for _ in range(MAX_FRAMES_PER_WINDOW)]

    assert replies[:-1] == [{"type": "pong"}] * (MAX_FRAMES_PER_WINDOW - 1)
    assert replies[-1]["reason"] == "rate_limited"
    with pytest.raises(PhoneError):
        await phone.next_frame(5)


async def test_oversized_frame_closes_channel(phone: PhoneSimulator) -> None:
    from push.authority.channel import MAX_FRAME_BYTES

    await phone.send({"type": "scan", "payload": "x" * MAX_FRAME_BYTES})

    with pytest.raises(PhoneError) as error:
        await phone.next_frame(5)

    assert error.value.reason == "closed"


async def test_sp_api_rejects_forwarded_callers(authority: Authority) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{authority.url}/twfido/moise/sp/getSpTicket",
            json={},
            headers={"X-Forwarded-For": "203.0.113.9"},
        ) as response,
    ):
        assert response.status == 403
        assert (await response.json())["error"] == "forbidden"


async def test_answers_never_reuse_the_zero_iv(authority: Authority) -> None:
    answers = [await authority.post("getSpTicket", {"transaction_id": "x"}) for _ in range(2)]
    ivs = [answer["result"]["idp_checksum"][:24] for answer in answers]
    assert ivs[0] != "0" * 24
    assert ivs[0] != ivs[1]


async def test_enroll_through_a_proxy_rejected(authority: Authority) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{authority.url}/twfido/app/enroll",
            json={"id_number": ID_NUMBER, "public_key": "x"},
            headers={"X-Forwarded-For": "203.0.113.9"},
        ) as response,
    ):
        assert response.status == 403
        assert (await response.json())["error"] == "enroll_forbidden"
