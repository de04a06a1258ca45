"""The SessionStore contract: every backend must pass this same suite.

Time-dependent tests go through ``Backend.advance``: the memory store gets a hand-driven clock,
while Redis expires keys on its own clock, so for Redis the test really waits (short windows,
and a one-second retention instead of ten minutes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from server.sessions.memory import MemoryStore
from server.sessions.model import (
    RETENTION_SECONDS,
    LoginSession,
    State,
    VerifiedIdentity,
    new_login_id,
)
from server.sessions.redis import RedisStore
from server.sessions.store import SessionStore

REDIS_TEST_RETENTION = 1.0  # seconds; short so the purge test waits only that long
EVENT_TIMEOUT = 2.0  # seconds a watcher waits for a snapshot before the test fails
QUIET_WAIT = 0.05  # seconds a watcher waits where nothing must arrive


class ManualClock:
    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    store: SessionStore
    clock: Callable[[], float]
    retention: float
    advance: Callable[[float], Awaitable[None]]


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        clock = ManualClock()

        async def turn_clock(seconds: float) -> None:
            clock.now += seconds

        yield Backend(MemoryStore(clock), clock, RETENTION_SECONDS, turn_clock)
        return

    store = RedisStore(
        request.getfixturevalue("redis_url"),
        prefix=request.getfixturevalue("redis_prefix"),
        retention=REDIS_TEST_RETENTION,
    )
    await store.start()
    try:
        yield Backend(store, time.time, REDIS_TEST_RETENTION, asyncio.sleep)
    finally:
        await store.close()


@pytest.fixture
def store(backend: Backend) -> SessionStore:
    return backend.store


async def create_pending(backend: Backend, *, lifetime: float = 120.0) -> LoginSession:
    now = backend.clock()
    session = LoginSession(
        id=new_login_id(),
        method="mobile",
        state=State.PENDING,
        created_at=now,
        expires_at=now + lifetime,
        browser_binding="b" * 64,
        id_number="A123456789",
        data={"mode": "push"},
    )
    await backend.store.create(session)
    return session


IDENTITY = VerifiedIdentity(
    id_number="A123456789",
    method="mobile",
    auth_time=1_750_000_000,
    amr=("hwk", "face"),
    name="王小明",
)


# -- create / get --------------------------------------------------------------------------------


async def test_created_session_reads_back_equal(backend: Backend) -> None:
    session = await create_pending(backend)

    assert await backend.store.get(session.id) == session


async def test_unknown_login_id_reads_none_and_cannot_change(store: SessionStore) -> None:
    assert await store.get("no-such-login") is None
    assert await store.transition("no-such-login", State.APPROVED) is None
    assert await store.update_data("no-such-login", {"a": 1}) is None


# -- transitions: compare-and-set ------------------------------------------------------------------


async def test_approval_succeeds_once_and_carries_identity(backend: Backend) -> None:
    session = await create_pending(backend)

    approved = await backend.store.transition(
        session.id, State.APPROVED, identity=IDENTITY, data={"sp_ticket": "t-1"}
    )
    again = await backend.store.transition(session.id, State.APPROVED, identity=IDENTITY)

    assert approved is not None and approved.state is State.APPROVED
    assert approved.identity == IDENTITY
    assert approved.data == {"mode": "push", "sp_ticket": "t-1"}
    assert again is None
    assert await backend.store.get(session.id) == approved


@pytest.mark.parametrize("ending", [State.EXPIRED, State.CANCELLED])
async def test_late_approval_after_an_ending_is_rejected(backend: Backend, ending: State) -> None:
    session = await create_pending(backend)
    ended = await backend.store.transition(
        session.id, ending, reason="timed_out", message="登入作業已逾時，請重新登入。"
    )

    late = await backend.store.transition(session.id, State.APPROVED, identity=IDENTITY)

    assert late is None
    stored = await backend.store.get(session.id)
    assert stored == ended
    assert stored is not None and stored.state is ending
    assert stored.message == "登入作業已逾時，請重新登入。"
    assert stored.identity is None


async def test_transition_from_another_expected_state(backend: Backend) -> None:
    session = await create_pending(backend)
    await backend.store.transition(session.id, State.FAILED)

    wrong = await backend.store.transition(session.id, State.CANCELLED, expect=State.APPROVED)
    right = await backend.store.transition(session.id, State.CANCELLED, expect=State.FAILED)

    assert wrong is None
    assert right is not None and right.state is State.CANCELLED


async def test_concurrent_transitions_have_exactly_one_winner(backend: Backend) -> None:
    session = await create_pending(backend)
    endings = sorted(State(s) for s in State if s is not State.PENDING)

    results = await asyncio.gather(
        *(backend.store.transition(session.id, endings[i % len(endings)]) for i in range(20))
    )

    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert await backend.store.get(session.id) == winners[0]


async def test_every_change_increments_the_version(backend: Backend) -> None:
    session = await create_pending(backend)

    first = await backend.store.update_data(session.id, {"transaction_id": "tx-1"})
    second = await backend.store.transition(session.id, State.DENIED, reason="denied_in_app")

    assert session.version == 0
    assert first is not None and first.version == 1
    assert second is not None and second.version == 2


# -- update_data -----------------------------------------------------------------------------------


async def test_update_data_merges_into_method_data(backend: Backend) -> None:
    session = await create_pending(backend)

    await backend.store.update_data(session.id, {"transaction_id": "tx-1", "mode": "qr"})
    merged = await backend.store.update_data(session.id, {"verification_code": "42"})

    expected = {"mode": "qr", "transaction_id": "tx-1", "verification_code": "42"}
    assert merged is not None and merged.data == expected
    assert merged.state is State.PENDING
    stored = await backend.store.get(session.id)
    assert stored is not None and stored.data == expected


async def test_update_data_is_rejected_after_an_ending(backend: Backend) -> None:
    session = await create_pending(backend)
    ended = await backend.store.transition(session.id, State.CANCELLED)

    late = await backend.store.update_data(session.id, {"transaction_id": "tx-late"})

    assert late is None
    assert await backend.store.get(session.id) == ended


async def test_concurrent_data_updates_all_land(backend: Backend) -> None:
    session = await create_pending(backend)

    await asyncio.gather(*(backend.store.update_data(session.id, {f"k{i}": i}) for i in range(10)))

    stored = await backend.store.get(session.id)
    assert stored is not None
    assert stored.data == {"mode": "push", **{f"k{i}": i for i in range(10)}}
    assert stored.version == 10


# -- watch -----------------------------------------------------------------------------------------


async def next_snapshot(events: object) -> LoginSession:
    return await asyncio.wait_for(events.get(), EVENT_TIMEOUT)  # type: ignore[attr-defined]


async def test_watcher_receives_every_snapshot_in_order(backend: Backend) -> None:
    session = await create_pending(backend)

    async with backend.store.watch(session.id) as events:
        await backend.store.update_data(session.id, {"transaction_id": "tx-1"})
        await backend.store.update_data(session.id, {"verification_code": "42"})
        await backend.store.transition(session.id, State.APPROVED, identity=IDENTITY)

        received = [await next_snapshot(events) for _ in range(3)]

    assert [s.version for s in received] == [1, 2, 3]
    assert [s.state for s in received] == [State.PENDING, State.PENDING, State.APPROVED]
    assert received[2].identity == IDENTITY
    assert received[2] == await backend.store.get(session.id)


async def test_watcher_subscribed_before_a_change_sees_it(backend: Backend) -> None:
    session = await create_pending(backend)
    subscribed = asyncio.Event()

    async def watch_one() -> LoginSession:
        async with backend.store.watch(session.id) as events:
            subscribed.set()
            return await next_snapshot(events)

    watcher = asyncio.create_task(watch_one())
    await subscribed.wait()
    changed = await backend.store.transition(session.id, State.DENIED, reason="denied_in_app")

    assert await watcher == changed


async def test_two_watchers_both_receive(backend: Backend) -> None:
    session = await create_pending(backend)

    async with backend.store.watch(session.id) as first, backend.store.watch(session.id) as second:
        changed = await backend.store.transition(session.id, State.EXPIRED)

        assert await next_snapshot(first) == changed
        assert await next_snapshot(second) == changed


async def test_watcher_sees_only_its_own_session(backend: Backend) -> None:
    watched = await create_pending(backend)
    other = await create_pending(backend)

    async with backend.store.watch(watched.id) as events:
        await backend.store.transition(other.id, State.APPROVED)
        changed = await backend.store.transition(watched.id, State.CANCELLED)

        assert await next_snapshot(events) == changed


async def test_watch_wait_can_time_out_and_continue(backend: Backend) -> None:
    session = await create_pending(backend)

    async with backend.store.watch(session.id) as events:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(events.get(), QUIET_WAIT)
        changed = await backend.store.transition(session.id, State.APPROVED)

        assert await next_snapshot(events) == changed


async def test_watch_closed_leaves_other_watchers_working(backend: Backend) -> None:
    session = await create_pending(backend)

    async with backend.store.watch(session.id) as staying:
        async with backend.store.watch(session.id):
            pass
        changed = await backend.store.update_data(session.id, {"mode": "qr"})

        assert await next_snapshot(staying) == changed


# -- claim_once ------------------------------------------------------------------------------------


async def test_claim_once_succeeds_once_until_its_ttl_ends(backend: Backend) -> None:
    first = await backend.store.claim_once("jti:abc", 0.3)
    second = await backend.store.claim_once("jti:abc", 0.3)
    other = await backend.store.claim_once("jti:other", 0.3)
    await backend.advance(0.5)
    after_ttl = await backend.store.claim_once("jti:abc", 0.3)

    assert (first, second, other, after_ttl) == (True, False, True, True)


async def test_concurrent_claims_have_exactly_one_winner(store: SessionStore) -> None:
    results = await asyncio.gather(*(store.claim_once("complete:x", 30) for _ in range(20)))

    assert results.count(True) == 1


# -- hit: fixed-window counter ---------------------------------------------------------------------


async def test_hit_counts_within_the_window_then_resets(backend: Backend) -> None:
    first = await backend.store.hit("pushes:A123456789", 0.5)
    second = await backend.store.hit("pushes:A123456789", 0.5)
    await backend.advance(0.75)
    after_window = await backend.store.hit("pushes:A123456789", 0.5)

    assert first[0] == 1
    assert 0 < first[1] <= 0.5
    assert second[0] == 2
    assert 0 < second[1] <= first[1]
    assert after_window[0] == 1


async def test_reset_clears_a_counter(store: SessionStore) -> None:
    await store.hit("failures:u1", 60)
    await store.hit("failures:u1", 60)

    await store.reset("failures:u1")

    assert (await store.hit("failures:u1", 60))[0] == 1


# -- put / fetch / take / reset --------------------------------------------------------------------


async def test_put_value_is_fetched_until_its_ttl_ends(backend: Backend) -> None:
    await backend.store.put("active:A123456789", "login-1", 0.3)

    before = await backend.store.fetch("active:A123456789")
    await backend.advance(0.5)
    after = await backend.store.fetch("active:A123456789")

    assert (before, after) == ("login-1", None)


async def test_put_overwrites_a_value(store: SessionStore) -> None:
    await store.put("active:A123456789", "login-1", 60)
    await store.put("active:A123456789", "login-2", 60)

    assert await store.fetch("active:A123456789") == "login-2"


async def test_take_returns_a_value_once(store: SessionStore) -> None:
    await store.put("challenge:c1", "nonce-1", 60)

    assert await store.take("challenge:c1") == "nonce-1"
    assert await store.take("challenge:c1") is None
    assert await store.fetch("challenge:c1") is None


async def test_concurrent_takes_return_the_value_once(store: SessionStore) -> None:
    await store.put("challenge:c2", "nonce-2", 60)

    results = await asyncio.gather(*(store.take("challenge:c2") for _ in range(20)))

    assert results.count("nonce-2") == 1


async def test_reset_clears_a_value(store: SessionStore) -> None:
    await store.put("lock:u1", "1750000600", 60)

    await store.reset("lock:u1")

    assert await store.fetch("lock:u1") is None


async def test_missing_values_read_none(store: SessionStore) -> None:
    assert await store.fetch("never-put") is None
    assert await store.take("never-put") is None


# -- retention ---------------------------------------------------------------------------------


async def test_ended_session_purged_after_retention(backend: Backend) -> None:
    session = await create_pending(backend, lifetime=0.2)
    ended = await backend.store.transition(session.id, State.EXPIRED)

    await backend.advance(0.2 + backend.retention / 2)
    within_retention = await backend.store.get(session.id)
    await backend.advance(backend.retention)
    after_retention = await backend.store.get(session.id)

    assert within_retention == ended
    assert after_retention is None


async def test_swap_returns_the_value_it_replaced(store: SessionStore) -> None:
    assert await store.swap("active", "first", 60) is None
    assert await store.swap("active", "second", 60) == "first"
    assert await store.fetch("active") == "second"


async def test_concurrent_swaps_hand_each_value_on_once(store: SessionStore) -> None:
    values = [f"login-{n}" for n in range(12)]
    replaced = await asyncio.gather(*(store.swap("active", v, 60) for v in values))
    survivor = await store.fetch("active")
    # Every value but the survivor was replaced exactly once, and None was seen exactly once.
    assert replaced.count(None) == 1
    assert sorted(v for v in replaced if v is not None) == sorted(
        v for v in values if v != survivor
    )
