"""The NHI card method against the card simulator: registration, password, 3-strike suspension."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from server.audit import AuditLog
from server.config import NhiSettings
from server.demo_credentials import DEMO_CARDS
from server.errors import (
    CardNotRegistered,
    CardPasswordMismatch,
    CardSuspended,
    InvalidCardNumber,
    InvalidInput,
    NhiCardRejected,
)
from server.logins import ClientInfo, Logins
from server.methods.base import StartRequest
from server.methods.nhi import NhiMethod
from server.nhi_card import decode_basic_reply, reply_body
from server.nhi_simulator import NhiCardSimulator, demo_cards
from server.passwords import HashParameters
from server.sessions.memory import MemoryStore
from server.sessions.model import LoginSession, State

FAST = HashParameters(time_cost=1, memory_cost=1024, parallelism=1)
SETTINGS = NhiSettings(address_max_failures=50)
CARD = DEMO_CARDS[0]  # registered, ID with an eBAS account
UNREGISTERED = "000055556666"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    method: NhiMethod
    simulator: NhiCardSimulator
    clock: Clock
    http: aiohttp.ClientSession

    async def read_card(self, card_number: str) -> dict[str, str]:
        """Play the page: GetBasic, GetRandom and H_Sign over the simulator's WebSocket."""
        self.simulator.insert(card_number)
        async with self.http.ws_connect(self.simulator.url) as ws:
            await ws.send_str("GetBasic")
            basic = decode_basic_reply(await ws.receive_str())
            await ws.send_str("GetRandom")
            random = "0001" + reply_body(await ws.receive_str(), "GetRandom")
            await ws.send_str(f"H_Sign?Random={random}")
            h_sign = reply_body(await ws.receive_str(), "H_Sign")
        return {
            "card_number": basic.card_number,
            "id_number": basic.id_number,
            "random": random,
            "h_sign": h_sign,
        }

    async def login(self, fields: dict[str, str], password: str) -> LoginSession:
        body = {"method": "nhi", **fields, "password": password}
        request = StartRequest(
            body=body, binding="binding-hash", client=ClientInfo("192.0.2.1", "pytest")
        )
        return await self.method.start(request)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    clock = Clock()
    audit = AuditLog(tmp_path / "audit.log")
    method = NhiMethod(
        Logins(MemoryStore(clock), audit, clock),
        settings=SETTINGS,
        hash_parameters=FAST,
        credentials_path=tmp_path / "credentials.sqlite3",
        seed_demo=True,
    )
    await method.open()
    async with NhiCardSimulator(demo_cards()) as simulator, aiohttp.ClientSession() as http:
        yield Harness(method, simulator, clock, http)
    await method.close()
    audit.close()


async def test_registered_card_and_password_approve(harness: Harness) -> None:
    fields = await harness.read_card(CARD.card_number)

    session = await harness.login(fields, CARD.password)

    assert session.state is State.APPROVED
    assert session.identity is not None
    assert session.identity.id_number == CARD.id_number
    assert session.identity.name == "王小明"
    assert session.identity.method == "nhi"


async def test_wrong_password_says_attempts_left(harness: Harness) -> None:
    fields = await harness.read_card(CARD.card_number)

    with pytest.raises(CardPasswordMismatch) as caught:
        await harness.login(fields, "wrong99")

    assert caught.value.status == 401
    assert caught.value.details["attempts_left"] == SETTINGS.max_failures - 1
    assert "健保卡與註冊密碼不符" in caught.value.text


async def test_three_wrong_passwords_suspend_card(harness: Harness) -> None:
    for _ in range(SETTINGS.max_failures - 1):
        with pytest.raises(CardPasswordMismatch):
            await harness.login(await harness.read_card(CARD.card_number), "wrong99")
    with pytest.raises(CardSuspended) as suspended:
        await harness.login(await harness.read_card(CARD.card_number), "wrong99")

    assert suspended.value.status == 423
    assert suspended.value.key == "card_suspended"
    assert suspended.value.details["retry_after"] == SETTINGS.suspend_seconds
    # Even the right password waits until the suspension ends.
    with pytest.raises(CardSuspended):
        await harness.login(await harness.read_card(CARD.card_number), CARD.password)

    harness.clock.now += SETTINGS.suspend_seconds + 1
    session = await harness.login(await harness.read_card(CARD.card_number), CARD.password)
    assert session.state is State.APPROVED


async def test_success_resets_wrong_password_count(harness: Harness) -> None:
    for _ in range(SETTINGS.max_failures - 1):
        with pytest.raises(CardPasswordMismatch):
            await harness.login(await harness.read_card(CARD.card_number), "wrong99")
    await harness.login(await harness.read_card(CARD.card_number), CARD.password)

    with pytest.raises(CardPasswordMismatch) as caught:
        await harness.login(await harness.read_card(CARD.card_number), "wrong99")
    assert caught.value.details["attempts_left"] == SETTINGS.max_failures - 1


async def test_unregistered_card_has_own_answer(harness: Harness) -> None:
    fields = await harness.read_card(UNREGISTERED)

    with pytest.raises(CardNotRegistered) as caught:
        await harness.login(fields, "whatever1")

    assert caught.value.key == "card_not_registered"


async def test_card_with_other_id_rejected(harness: Harness) -> None:
    fields = await harness.read_card(CARD.card_number)
    fields["id_number"] = DEMO_CARDS[1].id_number

    with pytest.raises(NhiCardRejected):
        await harness.login(fields, CARD.password)


async def test_replayed_h_sign_rejected(harness: Harness) -> None:
    fields = await harness.read_card(CARD.card_number)
    await harness.login(fields, CARD.password)

    with pytest.raises(NhiCardRejected):
        await harness.login(fields, CARD.password)


async def test_malformed_h_sign_rejected(harness: Harness) -> None:
    fields = await harness.read_card(CARD.card_number)
    fields["h_sign"] = fields["h_sign"][:-1]

    with pytest.raises(NhiCardRejected):
        await harness.login(fields, CARD.password)


async def test_missing_fields_rejected(harness: Harness) -> None:
    fields = await harness.read_card(CARD.card_number)

    with pytest.raises(InvalidCardNumber):
        await harness.login({**fields, "card_number": "12"}, CARD.password)
    with pytest.raises(InvalidInput):
        await harness.login({**fields, "h_sign": ""}, CARD.password)
    with pytest.raises(InvalidInput):
        await harness.login(fields, "")


async def test_simulator_without_card_answers_error_code(harness: Harness) -> None:
    harness.simulator.insert(None)
    async with harness.http.ws_connect(harness.simulator.url) as ws:
        await ws.send_str("GetBasic")
        assert await ws.receive_str() == "8013"
        await ws.send_str("GetVersion")
        assert await ws.receive_str() == "GetVersion:0001"


async def test_simulator_control_route_swaps_cards(harness: Harness) -> None:
    async with harness.http.post(
        harness.simulator.control_url, json={"card_number": UNREGISTERED}
    ) as answer:
        assert answer.status == 200
    assert harness.simulator.inserted == UNREGISTERED
    async with harness.http.post(
        harness.simulator.control_url, json={"card_number": "999999999999"}
    ) as answer:
        assert answer.status == 400
