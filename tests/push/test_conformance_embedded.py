"""The SP API conformance checks against the embedded authority, as the product mounts it.

``tests/push/test_client.py`` runs the same checks against the fake MOI server, so a difference
between the embedded authority and the MOI behaviour the fake encodes fails one of the two runs.
The whole app runs on a loopback port; a phone simulator plays the user.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from push.authority.spapi import MESSAGES
from push.client import SpApiClient, TicketAnswer
from push.codes import CODES, EMBEDDED_ONLY_CODES, UNKNOWN, Outcome, classify
from push.phone import PhoneSimulator
from server.web.app import AUTHORITY_MOUNT
from tests.push.conformance import CHECKS, run_conformance
from tests.support.live import LiveApp, live_app

BOUND_ID = "A123456789"
UNBOUND_ID = "B142857136"
PUSH_WAIT = 10.0  # seconds the phone waits for the push of one transaction
SP_SERVICE_ID = "ebas-embedded-sp"  # the embedded default of twfido.sp_service_id


@dataclass
class EmbeddedDriver:
    """Plays the user on the embedded authority with a connected phone simulator."""

    api_url: str
    aes_key: bytes
    phone: PhoneSimulator
    sp_service_id: str = SP_SERVICE_ID
    bound_id: str = BOUND_ID
    unbound_id: str = UNBOUND_ID

    async def approve(self, answer: TicketAnswer) -> None:
        if answer.ticket.op_mode == "I-SCAN":
            push = await self.phone.scan(answer.sp_ticket)
        else:
            push = await self._push_for(answer)
        await self.phone.approve(push, _code_choice(push))

    async def deny(self, answer: TicketAnswer) -> None:
        await self.phone.deny(await self._push_for(answer))

    async def _push_for(self, answer: TicketAnswer) -> dict[str, Any]:
        """Take pushes off the phone until the one of ``answer`` (earlier checks leave some)."""
        while True:
            push = await self.phone.next_push(PUSH_WAIT)
            if push["txn"] == answer.ticket.sp_ticket_id:
                return push


def _code_choice(push: dict[str, Any]) -> str | None:
    # The conformance hints carry no verification code, so the phone shows no choices.
    assert not push.get("choices"), "a conformance push unexpectedly asks for a code"
    return None


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[tuple[LiveApp, bytes]]:
    aes_key = os.urandom(32)
    overrides = {"twfido": {"aes_key": base64.b64encode(aes_key).decode()}}
    async with live_app(tmp_path / "data", overrides) as running:
        yield running, aes_key


@pytest.fixture
async def phone(embedded: tuple[LiveApp, bytes], tmp_path: Path) -> AsyncIterator[PhoneSimulator]:
    live, _ = embedded
    simulator = PhoneSimulator(live.url, BOUND_ID, tmp_path / "phone")
    await simulator.enroll()
    await simulator.connect()
    yield simulator
    await simulator.close()


async def test_embedded_authority_passes_conformance(embedded, phone):
    live, aes_key = embedded
    driver = EmbeddedDriver(live.url + AUTHORITY_MOUNT, aes_key, phone)

    async with aiohttp.ClientSession() as http:

        def factory(**overrides: Any) -> SpApiClient:
            options = {"sp_service_id": SP_SERVICE_ID, "aes_key": aes_key, **overrides}
            return SpApiClient(http, api_url=driver.api_url, retries=0, **options)

        results = await run_conformance(factory, driver)

    assert [r.name for r in results if r.passed] == [check.__name__ for check in CHECKS]


@pytest.mark.parametrize("code", sorted(MESSAGES))
def test_every_embedded_code_is_classified(code):
    info = classify(f"SP-API-ATH-01-{code}")

    assert info is not UNKNOWN, f"{code} is sent by the embedded authority but unknown to codes"


def test_embedded_only_codes_are_configuration_errors():
    for code in EMBEDDED_ONLY_CODES:
        info = CODES[code]
        assert info.outcome is Outcome.CONFIG_ERROR
        assert code in info.message
        assert info.operator_hint.startswith("embedded authority")


def test_embedded_only_codes_are_the_ones_moi_does_not_document():
    assert EMBEDDED_ONLY_CODES <= set(MESSAGES)
