"""SP API conformance checks for any server that speaks the TW FidO SP API.

Run them against the fake MOI server and against the embedded authority: both must treat
checksums, ID numbers, tickets and outcomes the same way, so that the client behaves the same
whichever backend it talks to. The server under test is driven through ``AuthorityDriver``,
which plays the user (approve or deny on command) and names a bound and an unbound ID number.

Usage::

    report = await run_conformance(client_factory, driver)   # raises ConformanceFailure
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from push import checksum
from push.client import (
    PATH_PREFIX,
    PATH_REQUEST_PUSH,
    AthResult,
    SpApiClient,
    SpApiError,
    SpApiUntrusted,
    TicketAnswer,
)
from push.codes import Outcome
from push.ticket import Ticket

RESULT_WAIT = 10.0  # seconds a check waits for an approval or denial to show up in ATH-02
RESULT_POLL_STEP = 0.05  # seconds between ATH-02 polls inside a check (fast on purpose)
BAD_CHECK_DIGIT_ID = "A123456788"  # right format, wrong check digit


class AuthorityDriver(Protocol):
    """The server under test, as the checks see it."""

    api_url: str
    sp_service_id: str
    aes_key: bytes
    bound_id: str  # an ID number with a bound device
    unbound_id: str  # a valid ID number with no mobile credential or no bound device

    async def approve(self, answer: TicketAnswer) -> None:
        """Make the user approve this transaction (scan the QR code first in I-SCAN mode)."""

    async def deny(self, answer: TicketAnswer) -> None:
        """Make the user decline this transaction."""


ClientFactory = Callable[..., SpApiClient]  # keyword overrides: aes_key, sp_service_id


class ConformanceFailure(AssertionError):
    """One or more checks failed; the message lists each with its error."""


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str = ""


async def run_conformance(
    client_factory: ClientFactory, driver: AuthorityDriver
) -> list[CheckResult]:
    """Run every check; return the results, or raise ``ConformanceFailure`` if any failed."""
    results: list[CheckResult] = []
    for check in CHECKS:
        try:
            await check(client_factory, driver)
        except Exception as exc:
            detail = "".join(traceback.format_exception_only(exc)).strip()
            results.append(CheckResult(check.__name__, False, detail))
        else:
            results.append(CheckResult(check.__name__, True))

    failed = [r for r in results if not r.passed]
    if failed:
        lines = "\n".join(f"- {r.name}: {r.detail}" for r in failed)
        raise ConformanceFailure(f"{len(failed)} of {len(results)} checks failed:\n{lines}")
    return results


# -- helpers ---------------------------------------------------------------------------------


async def wait_final(client: SpApiClient, ticket: Ticket) -> AthResult | SpApiError:
    """Poll ATH-02 until a final result. SpApiUntrusted and timeouts propagate."""
    deadline = time.monotonic() + RESULT_WAIT
    while time.monotonic() < deadline:
        try:
            result = await client.get_result(ticket)
        except SpApiError as exc:
            return exc
        if result is not None:
            return result
        await asyncio.sleep(RESULT_POLL_STEP)
    raise AssertionError(f"no final result within {RESULT_WAIT} s")


async def push(client: SpApiClient, id_num: str) -> TicketAnswer:
    return await client.request_push(id_num, op_code="ATH", hint="一致性測試", time_limit=60)


async def expect_error(call: Awaitable[Any]) -> SpApiError:
    try:
        value = await call
    except SpApiError as exc:
        return exc
    raise AssertionError(f"expected an SP API error, got {value!r}")


async def raw_post(driver: AuthorityDriver, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a hand-built request, for cases the client never produces."""
    async with aiohttp.ClientSession() as http:
        url = driver.api_url.rstrip("/") + PATH_PREFIX + name
        async with http.post(url, json=body) as response:
            answer = await response.json(content_type=None)
    assert isinstance(answer, dict), "response is not a JSON object"
    return answer


def push_body(driver: AuthorityDriver, transaction_id: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "transaction_id": transaction_id,
        "sp_service_id": driver.sp_service_id,
        "id_num": driver.bound_id,
        "op_code": "ATH",
        "hint": "一致性測試",
        "time_limit": 60,
        **extra,
    }
    body["sp_checksum"] = checksum.make(driver.aes_key, body, checksum.ATH03_SP, random_iv=False)
    return body


# -- checks ----------------------------------------------------------------------------------


async def push_pending_then_approved(factory: ClientFactory, driver: AuthorityDriver) -> None:
    client = factory()
    answer = await push(client, driver.bound_id)
    assert answer.ticket.transaction_id == answer.transaction_id
    assert await client.get_result(answer.ticket) is None, "fresh push is not pending"

    await driver.approve(answer)
    result = await wait_final(client, answer.ticket)

    assert isinstance(result, AthResult), f"expected approval, got {result!r}"
    assert result.transaction_id == answer.transaction_id


async def approval_is_single_use(factory: ClientFactory, driver: AuthorityDriver) -> None:
    client = factory()
    answer = await push(client, driver.bound_id)
    await driver.approve(answer)
    assert isinstance(await wait_final(client, answer.ticket), AthResult)

    again = await expect_error(client.get_result(answer.ticket))

    assert again.info.final, "a redeemed ticket reads as pending"


async def push_denied(factory: ClientFactory, driver: AuthorityDriver) -> None:
    client = factory()
    answer = await push(client, driver.bound_id)

    await driver.deny(answer)
    result = await wait_final(client, answer.ticket)

    assert isinstance(result, SpApiError), f"expected denial, got {result!r}"
    assert result.info.outcome is Outcome.DENIED
    assert result.verified, "denial came without a valid idp_checksum"


async def qr_ticket_approved(factory: ClientFactory, driver: AuthorityDriver) -> None:
    client = factory()
    answer = await client.get_sp_ticket(
        driver.bound_id, op_code="ATH", hint="掃碼測試", time_limit=60
    )
    assert answer.ticket.op_mode == "I-SCAN"

    await driver.approve(answer)
    result = await wait_final(client, answer.ticket)

    assert isinstance(result, AthResult), f"expected approval, got {result!r}"


async def wrong_key_rejected(factory: ClientFactory, driver: AuthorityDriver) -> None:
    client = factory(aes_key=os.urandom(32))
    try:
        answer = await push(client, driver.bound_id)
    except SpApiUntrusted:
        return  # error signed with the real key: the wrong key cannot verify it, as it must
    except SpApiError as exc:
        assert exc.info.outcome is Outcome.CONFIG_ERROR, exc.code
        return
    raise AssertionError(f"server accepted a wrong sp_checksum: {answer!r}")


async def unknown_service_rejected(factory: ClientFactory, driver: AuthorityDriver) -> None:
    client = factory(sp_service_id="no-such-service-" + uuid.uuid4().hex[:8])
    try:
        await push(client, driver.bound_id)
    except SpApiUntrusted:
        return
    except SpApiError as exc:
        assert exc.info.outcome is Outcome.CONFIG_ERROR, exc.code
        return
    raise AssertionError("server accepted an unknown sp_service_id")


async def bad_id_number_rejected(factory: ClientFactory, driver: AuthorityDriver) -> None:
    error = await expect_error(push(factory(), BAD_CHECK_DIGIT_ID))

    assert error.info.reason == "invalid_id_number", error.code


async def unbound_id_number_rejected(factory: ClientFactory, driver: AuthorityDriver) -> None:
    error = await expect_error(push(factory(), driver.unbound_id))

    assert error.info.outcome is Outcome.NOT_BOUND, error.code
    assert error.verified


async def unknown_ticket_fails(factory: ClientFactory, driver: AuthorityDriver) -> None:
    client = factory()
    answer = await push(client, driver.bound_id)
    forged = dataclasses.replace(answer.ticket, sp_ticket_id=uuid.uuid4().hex)

    error = await expect_error(client.get_result(forged))

    assert error.info.final, error.code


async def reused_transaction_id_rejected(factory: ClientFactory, driver: AuthorityDriver) -> None:
    transaction_id = str(uuid.uuid4())
    first = await raw_post(driver, PATH_REQUEST_PUSH, push_body(driver, transaction_id))
    assert first["error_code"] == "0", first["error_code"]

    second = await raw_post(driver, PATH_REQUEST_PUSH, push_body(driver, transaction_id))

    assert str(second["error_code"]).endswith("TXNLOG_INS_ERR"), second["error_code"]


async def time_limit_range_enforced(factory: ClientFactory, driver: AuthorityDriver) -> None:
    for limit in (29, 601):
        body = push_body(driver, str(uuid.uuid4()), time_limit=limit)
        answer = await raw_post(driver, PATH_REQUEST_PUSH, body)
        assert str(answer["error_code"]).endswith("SPTKT_TIME_ORV"), (limit, answer["error_code"])


async def device_status_reported(factory: ClientFactory, driver: AuthorityDriver) -> None:
    client = factory()
    bound = await client.check_device_status(driver.bound_id)
    assert bound.is_fido

    try:
        unbound = await client.check_device_status(driver.unbound_id)
    except SpApiError as exc:
        assert exc.info.outcome is Outcome.NOT_BOUND, exc.code
    else:
        assert not unbound.is_fido


CHECKS: list[Callable[[ClientFactory, AuthorityDriver], Awaitable[None]]] = [
    push_pending_then_approved,
    approval_is_single_use,
    push_denied,
    qr_ticket_approved,
    wrong_key_rejected,
    unknown_service_rejected,
    bad_id_number_rejected,
    unbound_id_number_rejected,
    unknown_ticket_fails,
    reused_transaction_id_rejected,
    time_limit_range_enforced,
    device_status_reported,
]
