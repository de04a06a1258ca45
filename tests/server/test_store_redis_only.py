"""RedisStore behaviour beyond the shared contract: several nodes, restarts and outages."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from server.errors import StoreUnavailable
from server.sessions.model import RETENTION_SECONDS, LoginSession, State, new_login_id
from server.sessions.redis import RedisStore
from tests.support.redis_server import RedisServer, free_port

EVENT_TIMEOUT = 5.0  # seconds; covers the store's one-second pub/sub reconnect delay


def pending_session(lifetime: float = 120.0) -> LoginSession:
    now = time.time()
    return LoginSession(
        id=new_login_id(),
        method="mobile",
        state=State.PENDING,
        created_at=now,
        expires_at=now + lifetime,
        browser_binding="b" * 64,
        id_number="A123456789",
        data={"mode": "push"},
    )


async def started(url: str, prefix: str) -> RedisStore:
    store = RedisStore(url, prefix=prefix)
    await store.start()
    return store


@pytest.fixture
async def two_nodes(
    redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    node_a = await started(redis_url, redis_prefix)
    node_b = await started(redis_url, redis_prefix)
    yield node_a, node_b
    await node_a.close()
    await node_b.close()


@pytest.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def wait_until(
    condition: Callable[[], Awaitable[bool]], within: float = EVENT_TIMEOUT
) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# -- two nodes on one Redis ------------------------------------------------------------------------


async def test_transition_reaches_watcher_on_other_node(
    two_nodes: tuple[RedisStore, RedisStore],
) -> None:
    node_a, node_b = two_nodes
    session = pending_session()
    await node_a.create(session)

    async with node_b.watch(session.id) as events:
        approved = await node_a.transition(session.id, State.APPROVED)

        assert await asyncio.wait_for(events.get(), EVENT_TIMEOUT) == approved


async def test_transition_race_across_nodes_has_exactly_one_winner(
    two_nodes: tuple[RedisStore, RedisStore],
) -> None:
    node_a, node_b = two_nodes
    session = pending_session()
    await node_a.create(session)
    endings = [State.APPROVED, State.DENIED, State.EXPIRED, State.CANCELLED]

    results = await asyncio.gather(
        *(
            (node_a if i % 2 else node_b).transition(session.id, endings[i % len(endings)])
            for i in range(20)
        )
    )

    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert await node_a.get(session.id) == winners[0]
    assert await node_b.get(session.id) == winners[0]


async def test_data_updates_from_both_nodes_all_land(
    two_nodes: tuple[RedisStore, RedisStore],
) -> None:
    node_a, node_b = two_nodes
    session = pending_session()
    await node_a.create(session)

    await asyncio.gather(
        *((node_a if i % 2 else node_b).update_data(session.id, {f"k{i}": i}) for i in range(20))
    )

    stored = await node_b.get(session.id)
    assert stored is not None
    assert stored.data == {"mode": "push", **{f"k{i}": i for i in range(20)}}
    assert stored.version == 20


# -- keys and subscriptions ------------------------------------------------------------------------


async def test_session_key_expires_retention_after_the_deadline(
    redis_url: str, redis_prefix: str, raw_redis: aioredis.Redis
) -> None:
    store = await started(redis_url, redis_prefix)
    session = pending_session(lifetime=120)
    try:
        await store.create(session)
        ttl = await raw_redis.pttl(f"{redis_prefix}session:{session.id}") / 1000
    finally:
        await store.close()

    expected = session.expires_at - time.time() + RETENTION_SECONDS
    assert expected - 2 < ttl <= expected + 0.01


async def test_watchers_of_one_node_share_one_subscription(
    redis_url: str, redis_prefix: str, raw_redis: aioredis.Redis
) -> None:
    store = await started(redis_url, redis_prefix)
    sessions = [pending_session() for _ in range(25)]
    channel = f"{redis_prefix}events:{sessions[0].id}"

    async def subscribers() -> int:
        counts = dict(await raw_redis.pubsub_numsub(channel))
        return int(counts[channel])

    async def unsubscribed() -> bool:
        return await subscribers() == 0

    try:
        for session in sessions:
            await store.create(session)
        async with asyncio.TaskGroup() as group:
            watching = asyncio.Barrier(4 * len(sessions) + 1)

            async def watch_one(login_id: str) -> LoginSession:
                async with store.watch(login_id) as events:
                    await watching.wait()
                    return await asyncio.wait_for(events.get(), EVENT_TIMEOUT)

            watchers = [group.create_task(watch_one(s.id)) for s in sessions for _ in range(4)]
            await watching.wait()
            assert await subscribers() == 1
            changed = [await store.transition(s.id, State.APPROVED) for s in sessions]

        assert [w.result() for w in watchers] == [c for c in changed for _ in range(4)]
        await wait_until(unsubscribed)
    finally:
        await store.close()


# -- restarts and outages --------------------------------------------------------------------------


@pytest.mark.parametrize("shutdown", ["stop", "crash"])
async def test_pending_session_survives_a_redis_restart_with_aof(
    start_redis: Callable[..., RedisServer], shutdown: str
) -> None:
    server = start_redis(appendonly=True)
    store = await started(server.url, "node:")
    session = pending_session()
    try:
        await store.create(session)
        getattr(server, shutdown)()
        server.start()

        assert await store.get(session.id) == session
        assert await store.transition(session.id, State.APPROVED) is not None
    finally:
        await store.close()


async def test_unreachable_redis_fails_requests_and_readiness(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = await started(f"redis://127.0.0.1:{free_port()}/0", "node:")
    try:
        assert await store.ready() is False
        caplog.clear()
        with pytest.raises(StoreUnavailable):
            await store.put("challenge:c1", "secret-nonce-value", 60)
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        with pytest.raises(StoreUnavailable):
            await store.get("some-login")
        with pytest.raises(StoreUnavailable):
            await store.transition("some-login", State.APPROVED)
        with pytest.raises(StoreUnavailable):
            async with store.watch("some-login"):
                pass
    finally:
        await store.close()

    assert len(errors) == 1
    assert "put" in errors[0]
    assert "secret-nonce-value" not in errors[0]


async def test_store_recovers_when_redis_comes_back(
    start_redis: Callable[..., RedisServer],
) -> None:
    server = start_redis(appendonly=True)
    store = await started(server.url, "node:")
    session = pending_session()
    try:
        await store.create(session)
        async with store.watch(session.id) as events:
            server.stop()
            assert await store.ready() is False
            with pytest.raises(StoreUnavailable):
                await store.get(session.id)

            server.start()
            assert await store.ready() is True
            # Likely published before the watch connection is back: the re-subscription
            # re-reads the session, so the watcher still ends up with this snapshot.
            approved = await store.transition(session.id, State.APPROVED)

            seen = await asyncio.wait_for(events.get(), EVENT_TIMEOUT)
            while seen.version < 1:  # a resync snapshot of the pending state may come first
                seen = await asyncio.wait_for(events.get(), EVENT_TIMEOUT)
            assert seen == approved
    finally:
        await store.close()
