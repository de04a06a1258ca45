"""PollScheduler against the fake MOI server: spacing, poke, deadline, unwatch, failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from push.client import AthResult, SpApiClient, SpApiError, TicketAnswer
from push.codes import Outcome
from push.poller import PollScheduler, PollTimeout
from tests.fakes.fake_moi import FakeMoi, start_fake_moi

ID = "A123456789"
INTERVAL = 0.2  # seconds; short so the tests run fast, long enough to measure spacing


@pytest.fixture
async def moi() -> AsyncIterator[tuple[SpApiClient, FakeMoi]]:
    url, fake, runner = await start_fake_moi()
    async with aiohttp.ClientSession() as http:
        client = SpApiClient(
            http, api_url=url, sp_service_id=fake.sp_service_id, aes_key=fake.aes_key, retries=0
        )
        yield client, fake
    await runner.cleanup()


@pytest.fixture
async def scheduler(moi) -> AsyncIterator[PollScheduler]:
    client, _ = moi
    poller = PollScheduler(client, interval=INTERVAL, jitter=0.2)
    await poller.start()
    yield poller
    await poller.close()


class Outcomes:
    """Collects on_done calls per key and lets a test wait for them."""

    def __init__(self) -> None:
        self.done: dict[str, AthResult | Exception] = {}
        self.event = asyncio.Event()

    def callback(self, key: str):
        async def on_done(outcome: AthResult | Exception) -> None:
            self.done[key] = outcome
            self.event.set()

        return on_done

    async def wait_for(self, *keys: str, limit: float = 5.0) -> None:
        async with asyncio.timeout(limit):
            while not all(k in self.done for k in keys):
                self.event.clear()
                await self.event.wait()


async def push(client: SpApiClient, id_num: str = ID) -> TicketAnswer:
    return await client.request_push(id_num, op_code="ATH", hint="h", time_limit=60)


async def test_polls_spaced_by_interval(moi, scheduler):
    client, fake = moi
    fake.script(ID, pending_polls=3)
    answer = await push(client)
    outcomes = Outcomes()
    watched_at = time.monotonic()

    scheduler.watch("login-1", answer.ticket, time.monotonic() + 10, outcomes.callback("login-1"))
    await outcomes.wait_for("login-1")

    assert isinstance(outcomes.done["login-1"], AthResult)
    times = [c.at for c in fake.calls_to("getAthOrSignResult")]
    assert len(times) == 4
    assert times[0] - watched_at >= INTERVAL
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= INTERVAL


async def test_transactions_polled_concurrently(moi, scheduler):
    client, fake = moi
    ids = ["A123456789", "B142857136", "F222222222"]
    for id_num in ids:
        fake.script(id_num, pending_polls=2)
    outcomes = Outcomes()
    started = time.monotonic()

    for id_num in ids:
        answer = await push(client, id_num)
        scheduler.watch(id_num, answer.ticket, time.monotonic() + 10, outcomes.callback(id_num))
    await outcomes.wait_for(*ids)

    # Three polls each at 0.2-0.24 s spacing: about 0.7 s together, over 2 s if serialised.
    assert time.monotonic() - started < 1.5
    assert all(isinstance(outcomes.done[i], AthResult) for i in ids)


async def test_watch_creates_no_task(moi, scheduler):
    client, fake = moi
    fake.script(ID, outcome="manual")
    answers = [await push(client) for _ in range(5)]
    before = len(asyncio.all_tasks())

    for n, answer in enumerate(answers):
        scheduler.watch(f"k{n}", answer.ticket, time.monotonic() + 10, Outcomes().callback("x"))

    assert len(asyncio.all_tasks()) == before
    assert scheduler.pending == 5


async def test_poke_polls_at_once(moi):
    client, fake = moi
    fake.script(ID, outcome="manual")
    slow = PollScheduler(client, interval=30.0)
    await slow.start()
    answer = await push(client)
    outcomes = Outcomes()
    slow.watch("login-1", answer.ticket, time.monotonic() + 60, outcomes.callback("login-1"))

    fake.approve(answer.ticket.sp_ticket_id)
    slow.poke(answer.ticket.sp_ticket_id)
    await outcomes.wait_for("login-1", limit=2.0)
    await slow.close()

    assert isinstance(outcomes.done["login-1"], AthResult)
    assert len(fake.calls_to("getAthOrSignResult")) == 1


async def test_poke_unknown_ticket_ignored(scheduler):
    scheduler.poke("no-such-ticket")

    assert scheduler.pending == 0


async def test_deadline_gives_poll_timeout(moi, scheduler):
    client, fake = moi
    fake.script(ID, outcome="manual")
    answer = await push(client)
    outcomes = Outcomes()

    scheduler.watch("login-1", answer.ticket, time.monotonic() + 0.5, outcomes.callback("login-1"))
    await outcomes.wait_for("login-1")

    assert isinstance(outcomes.done["login-1"], PollTimeout)
    assert scheduler.pending == 0


async def test_unwatch_stops_polling(moi, scheduler):
    client, fake = moi
    fake.script(ID, outcome="manual")
    answer = await push(client)
    outcomes = Outcomes()
    scheduler.watch("login-1", answer.ticket, time.monotonic() + 10, outcomes.callback("login-1"))
    await asyncio.sleep(INTERVAL * 2.5)

    scheduler.unwatch("login-1")
    polls = len(fake.calls_to("getAthOrSignResult"))
    await asyncio.sleep(INTERVAL * 3)

    assert polls >= 1
    assert len(fake.calls_to("getAthOrSignResult")) == polls
    assert outcomes.done == {}


async def test_denial_delivered_as_error(moi, scheduler):
    client, fake = moi
    fake.script(ID, outcome="deny", pending_polls=1)
    answer = await push(client)
    outcomes = Outcomes()

    scheduler.watch("login-1", answer.ticket, time.monotonic() + 10, outcomes.callback("login-1"))
    await outcomes.wait_for("login-1")

    error = outcomes.done["login-1"]
    assert isinstance(error, SpApiError)
    assert error.info.outcome is Outcome.DENIED


async def test_unavailable_retried_until_result(moi, scheduler):
    client, fake = moi
    answer = await push(client)
    fake.fail_next(2, status=502)
    outcomes = Outcomes()

    scheduler.watch("login-1", answer.ticket, time.monotonic() + 10, outcomes.callback("login-1"))
    await outcomes.wait_for("login-1")

    assert isinstance(outcomes.done["login-1"], AthResult)
    statuses = [c.status for c in fake.calls_to("getAthOrSignResult")]
    assert statuses == [502, 502, 200]


async def test_unavailable_until_deadline_times_out(moi, scheduler):
    client, fake = moi
    answer = await push(client)
    fake.fail_next(100)
    outcomes = Outcomes()

    scheduler.watch("login-1", answer.ticket, time.monotonic() + 0.8, outcomes.callback("login-1"))
    await outcomes.wait_for("login-1")

    assert isinstance(outcomes.done["login-1"], PollTimeout)


async def test_failing_callback_does_not_stop_scheduler(moi, scheduler):
    client, fake = moi
    first, second = await push(client), await push(client)
    outcomes = Outcomes()

    async def broken(outcome: AthResult | Exception) -> None:
        raise RuntimeError("callback bug")

    scheduler.watch("broken", first.ticket, time.monotonic() + 10, broken)
    scheduler.watch("ok", second.ticket, time.monotonic() + 10, outcomes.callback("ok"))
    await outcomes.wait_for("ok")

    assert isinstance(outcomes.done["ok"], AthResult)
