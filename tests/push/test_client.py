"""SpApiClient against the strict fake MOI server over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest

from push import checksum
from push.client import (
    SIGN_TYPE,
    AthResult,
    SpApiClient,
    SpApiError,
    SpApiUnavailable,
    SpApiUntrusted,
)
from push.codes import Outcome
from push.verify import verify_signed_result
from tests.fakes import make_test_pki
from tests.fakes.fake_moi import FakeMoi, FakeMoiDriver, start_fake_moi
from tests.push.conformance import CHECKS, run_conformance

ID = "A123456789"
OTHER_ID = "B142857136"


@pytest.fixture
async def fake() -> AsyncIterator[tuple[str, FakeMoi]]:
    url, controller, runner = await start_fake_moi()
    yield url, controller
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def make_client(http: aiohttp.ClientSession, url: str, fake: FakeMoi, **options) -> SpApiClient:
    options.setdefault("retries", 2)
    return SpApiClient(
        http, api_url=url, sp_service_id=fake.sp_service_id, aes_key=fake.aes_key, **options
    )


async def test_request_push_returns_decoded_ticket(fake, http):
    url, moi = fake
    client = make_client(http, url, moi)

    answer = await client.request_push(ID, op_code="ATH", hint="登入 eBAS", time_limit=120)

    assert answer.ticket.transaction_id == answer.transaction_id
    assert answer.ticket.hint == "登入 eBAS"
    assert answer.ticket.sp_ticket_id in moi.transactions
    call = moi.calls_to("requestAthOrSignPush")[0]
    assert call.error_code == "0"
    assert call.body["time_limit"] == 120
    assert "sign_info" not in call.body


async def test_each_request_gets_new_transaction_id(fake, http):
    url, moi = fake
    client = make_client(http, url, moi)

    first = await client.request_push(ID, op_code="ATH", hint="h", time_limit=60)
    second = await client.request_push(ID, op_code="ATH", hint="h", time_limit=60)

    assert first.transaction_id != second.transaction_id


async def test_get_sp_ticket_for_qr(fake, http):
    url, moi = fake
    client = make_client(http, url, moi, random_iv=True)

    answer = await client.get_sp_ticket(ID, op_code="ATH", hint="掃描登入", time_limit=60)

    assert answer.ticket.op_mode == "I-SCAN"
    sent = moi.calls_to("getSpTicket")[0].body
    assert sent["op_mode"] == "I-SCAN"
    assert sent["sp_checksum"][:24] != "0" * 24  # random IV in use


async def test_get_result_pending_then_approved(fake, http):
    url, moi = fake
    moi.script(ID, pending_polls=2)
    client = make_client(http, url, moi)
    answer = await client.request_push(ID, op_code="ATH", hint="h", time_limit=60)

    assert await client.get_result(answer.ticket) is None
    assert await client.get_result(answer.ticket) is None
    result = await client.get_result(answer.ticket)

    assert isinstance(result, AthResult)
    assert result.transaction_id == answer.transaction_id
    assert result.hashed_id_num == answer.ticket.hashed_id_num
    poll = moi.calls_to("getAthOrSignResult")[0].body
    assert poll["transaction_id"] == answer.ticket.transaction_id
    assert poll["sp_ticket_id"] == answer.ticket.sp_ticket_id


async def test_get_result_after_redeem_is_already_used(fake, http):
    url, moi = fake
    client = make_client(http, url, moi)
    answer = await client.request_push(ID, op_code="ATH", hint="h", time_limit=60)
    await client.get_result(answer.ticket)

    with pytest.raises(SpApiError) as caught:
        await client.get_result(answer.ticket)

    assert caught.value.info.outcome is Outcome.ALREADY_USED


@pytest.mark.parametrize(
    ("script", "outcome"),
    [
        ({"outcome": "deny"}, Outcome.DENIED),
        ({"outcome": "expire"}, Outcome.EXPIRED),
        ({"outcome": "sign_fail"}, Outcome.FAILED),
    ],
)
async def test_get_result_final_errors(fake, http, script, outcome):
    url, moi = fake
    moi.script(ID, **script)
    client = make_client(http, url, moi)
    answer = await client.request_push(ID, op_code="ATH", hint="h", time_limit=60)

    with pytest.raises(SpApiError) as caught:
        await client.get_result(answer.ticket)

    assert caught.value.info.outcome is outcome
    assert caught.value.verified


@pytest.mark.parametrize(
    ("script", "outcome", "suffix"),
    [
        ({"bound": False}, Outcome.NOT_BOUND, "IDNUM_USERPROF_NF"),
        ({"device_bound": False}, Outcome.NOT_BOUND, "IDNUM_DEVPROF_NF"),
        ({"push_fails": True}, Outcome.PUSH_FAILED, "PS_FCM_NOT_FOUND"),
    ],
)
async def test_request_push_errors_classified(fake, http, script, outcome, suffix):
    url, moi = fake
    moi.script(ID, **script)
    client = make_client(http, url, moi)

    with pytest.raises(SpApiError) as caught:
        await client.request_push(ID, op_code="ATH", hint="h", time_limit=60)

    assert caught.value.code == "SP-API-ATH-03-" + suffix
    assert caught.value.info.outcome is outcome


async def test_qr_ticket_works_when_push_fails(fake, http):
    url, moi = fake
    moi.script(ID, push_fails=True)
    client = make_client(http, url, moi)

    answer = await client.get_sp_ticket(ID, op_code="ATH", hint="h", time_limit=60)

    assert answer.ticket.sp_ticket_id in moi.transactions


async def test_wrong_key_is_rejected_as_config_error(fake, http):
    url, moi = fake
    wrong = SpApiClient(
        http, api_url=url, sp_service_id=moi.sp_service_id, aes_key=bytes(32), retries=0
    )

    # The fake signs its INV_SP_CHECKSUM error with its own key. The client cannot verify that
    # idp_checksum with the wrong key, so it rejects the response instead of trusting it.
    with pytest.raises(SpApiUntrusted):
        await wrong.request_push(ID, op_code="ATH", hint="h", time_limit=60)
    assert moi.calls_to("requestAthOrSignPush")[0].error_code.endswith("INV_SP_CHECKSUM")


async def test_unknown_service_id_is_unverified_config_error(fake, http):
    url, moi = fake
    client = SpApiClient(http, api_url=url, sp_service_id="nobody", aes_key=moi.aes_key)

    with pytest.raises(SpApiError) as caught:
        await client.check_device_status(ID)

    assert caught.value.info.outcome is Outcome.CONFIG_ERROR
    assert not caught.value.verified


async def test_bad_id_format_is_rejected_by_server(fake, http):
    url, moi = fake
    client = make_client(http, url, moi)

    with pytest.raises(SpApiError) as caught:
        await client.request_push("A123456788", op_code="ATH", hint="h", time_limit=60)

    assert caught.value.info.reason == "invalid_id_number"


async def test_time_limit_out_of_range_rejected_locally(fake, http):
    url, moi = fake
    client = make_client(http, url, moi)

    with pytest.raises(ValueError, match="time_limit"):
        await client.request_push(ID, op_code="ATH", hint="h", time_limit=601)
    assert moi.calls == []


async def test_tampered_idp_checksum_rejected(fake, http):
    url, moi = fake
    moi.script(ID, tamper_idp_checksum=True)
    client = make_client(http, url, moi)

    with pytest.raises(SpApiUntrusted, match="idp_checksum"):
        await client.request_push(ID, op_code="ATH", hint="h", time_limit=60)


async def test_tampered_idp_checksum_on_error_rejected(fake, http):
    url, moi = fake
    moi.script(ID, outcome="deny")
    client = make_client(http, url, moi)
    answer = await client.request_push(ID, op_code="ATH", hint="h", time_limit=60)
    moi.scripts[ID].tamper_idp_checksum = True

    with pytest.raises(SpApiUntrusted):
        await client.get_result(answer.ticket)


async def test_tampered_ticket_digest_rejected(fake, http):
    url, moi = fake
    moi.script(ID, tamper_ticket_digest=True)
    client = make_client(http, url, moi)

    with pytest.raises(SpApiUntrusted, match="sp_ticket"):
        await client.get_sp_ticket(ID, op_code="ATH", hint="h", time_limit=60)


async def test_server_errors_retried_then_succeed(fake, http):
    url, moi = fake
    moi.fail_next(2)
    client = make_client(http, url, moi, retries=2)

    answer = await client.request_push(ID, op_code="ATH", hint="h", time_limit=60)

    pushes = moi.calls_to("requestAthOrSignPush")
    assert [c.status for c in pushes] == [500, 500, 200]
    assert answer.ticket.transaction_id == pushes[-1].body["transaction_id"]


async def test_server_errors_exhaust_retries(fake, http):
    url, moi = fake
    moi.fail_next(3, status=503)
    client = make_client(http, url, moi, retries=2)

    with pytest.raises(SpApiUnavailable):
        await client.check_device_status(ID)
    assert len(moi.calls) == 3


async def test_unreachable_server_is_unavailable(http):
    client = SpApiClient(
        http, api_url="http://127.0.0.1:9", sp_service_id="x", aes_key=bytes(32), retries=1
    )

    with pytest.raises(SpApiUnavailable):
        await client.check_device_status(ID)


async def test_check_device_status(fake, http):
    url, moi = fake
    moi.script(OTHER_ID, device_bound=False)
    client = make_client(http, url, moi)

    bound = await client.check_device_status(ID)
    unbound = await client.check_device_status(OTHER_ID)

    assert bound.is_fido and bound.is_mcert_sign
    assert not unbound.is_fido


async def test_sign_request_carries_sign_info_and_signature(fake, http):
    url, moi = fake
    pki = make_test_pki()
    credential = pki.issue(ID)
    moi.script(ID, credential=credential)
    client = make_client(http, url, moi)
    sign_data = base64.b64encode(b"challenge-123").decode()

    answer = await client.request_push(
        ID, op_code="SIGN", hint="h", time_limit=60, sign_data=sign_data
    )
    result = await client.get_result(answer.ticket)

    sent = moi.calls_to("requestAthOrSignPush")[0].body
    assert sent["sign_info"]["sign_type"] == SIGN_TYPE
    assert sent["sign_info"]["sign_data"] == sign_data
    assert result is not None
    assert result.cert == credential.cert_b64
    verify_signed_result(
        result,
        sign_data=sign_data,
        id_number=ID,
        anchors=[pki.root],
        intermediates=[pki.ca],
        now=datetime.now(UTC),
    )


async def test_sign_data_covered_by_checksum(fake, http):
    url, moi = fake
    client = make_client(http, url, moi)
    await client.request_push(ID, op_code="SIGN", hint="h", time_limit=60, sign_data="QUJD")

    sent = moi.calls_to("requestAthOrSignPush")[0].body
    without = {**sent, "sign_data": ""}

    with pytest.raises(checksum.ChecksumError):
        checksum.verify(moi.aes_key, sent["sp_checksum"], without, checksum.ATH03_SP)


async def test_logs_hide_key_checksum_and_id(fake, http, caplog):
    url, moi = fake
    moi.fail_next(1)
    client = make_client(http, url, moi)
    caplog.set_level(logging.DEBUG, logger="push.client")

    await client.request_push(ID, op_code="ATH", hint="h", time_limit=60)

    text = caplog.text
    sent = moi.calls_to("requestAthOrSignPush")[-1].body
    assert "A12****789" in text
    assert ID not in text
    assert sent["sp_checksum"] not in text
    assert moi.aes_key.hex() not in text
    assert base64.b64encode(moi.aes_key).decode() not in text


async def test_fake_moi_passes_conformance(fake, http):
    url, moi = fake
    driver = FakeMoiDriver(moi, url)

    def factory(**overrides) -> SpApiClient:
        options = {"sp_service_id": moi.sp_service_id, "aes_key": moi.aes_key, **overrides}
        return SpApiClient(http, api_url=url, retries=0, **options)

    results = await run_conformance(factory, driver)

    assert all(r.passed for r in results)
    assert len(results) == len(CHECKS)
