"""Redis store: the multi-node backend. Lua scripts make every change atomic across nodes.

Keys, all under the configured prefix:

- ``session:{id}``: a hash with ``state``, ``version``, ``snapshot`` (the session as JSON) and
  ``writer`` (a random token of the last write, so a retried script recognises its own write).
  It expires ``RETENTION_SECONDS`` after the session's deadline.
- ``events:{id}``: the pub/sub channel on which every change publishes the new snapshot.
- ``value:{key}`` and ``count:{key}``: the short-lived values and fixed-window counters.

Method data must be JSON-serialisable here, unlike in ``MemoryStore``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from server.errors import StoreUnavailable
from server.sessions.model import RETENTION_SECONDS, LoginSession, State, VerifiedIdentity
from server.sessions.store import SessionStore, Subscription

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0  # seconds; a reachable Redis accepts within milliseconds
COMMAND_TIMEOUT = 5.0  # seconds; slower than this, Redis is unhealthy and the request fails
READY_TIMEOUT = 1.0  # seconds; the readiness probe must return quickly either way
SUBSCRIBE_TIMEOUT = 5.0  # seconds for Redis to confirm a SUBSCRIBE before watch() gives up
# One quick retry rides out a dropped idle connection. More would keep a request waiting on
# a Redis that is down. A retry runs a command twice if only the reply was lost: the CAS script
# and claim_once recognise their own earlier write. A repeated hit counts one event twice and a
# repeated take returns None, which both fail safe.
COMMAND_RETRIES = 1
RETRY_BACKOFF_BASE = 0.05  # seconds
RETRY_BACKOFF_CAP = 0.5  # seconds
RESUBSCRIBE_DELAY = 1.0  # seconds between attempts to restore the pub/sub connection
# Each failed attempt means another writer changed the session, so the session makes progress.
# The bound only stops a runaway loop.
CAS_ATTEMPTS = 32
WATCH_QUEUE_SIZE = 64  # a watcher this far behind only needs the newest snapshot anyway
WRITER_TOKEN_BYTES = 12

# KEYS[1] session hash. ARGV: expected state, expected version, new state, new version,
# snapshot JSON, channel, writer token. Returns APPLIED, NOT_EXPECTED or CHANGED.
_CAS_SCRIPT = """
local current = redis.call('HMGET', KEYS[1], 'state', 'version', 'writer')
if current[3] == ARGV[7] then return 1 end
if not current[1] or current[1] ~= ARGV[1] then return 0 end
if current[2] ~= ARGV[2] then return 2 end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'version', ARGV[4], 'snapshot', ARGV[5],
           'writer', ARGV[7])
redis.call('PUBLISH', ARGV[6], ARGV[5])
return 1
"""
_NOT_EXPECTED, _APPLIED, _CHANGED = 0, 1, 2

# KEYS[1] counter. ARGV[1] window in milliseconds. Returns {count, milliseconds to reset}.
_HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if count == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _text(value: str | bytes | None) -> str | None:
    # The client decodes replies (decode_responses=True); this only narrows the type.
    return value.decode() if isinstance(value, bytes) else value


def _encode(session: LoginSession) -> str:
    return json.dumps(session.to_dict(), ensure_ascii=False, separators=(",", ":"))


class RedisStore(SessionStore):
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "ebas-login:",
        clock: Callable[[], float] = time.time,
        retention: float = RETENTION_SECONDS,
    ) -> None:
        self._url = url
        self._prefix = prefix
        self._clock = clock
        self._retention = retention
        self._client: aioredis.Redis | None = None
        self._events: _EventHub | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        # The client connects lazily, so a Redis that is down at start only fails readiness.
        self._client = aioredis.Redis.from_url(
            self._url,
            decode_responses=True,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
            socket_keepalive=True,
            retry=Retry(
                ExponentialBackoff(cap=RETRY_BACKOFF_CAP, base=RETRY_BACKOFF_BASE), COMMAND_RETRIES
            ),
        )
        self._cas = self._client.register_script(_CAS_SCRIPT)
        self._hit = self._client.register_script(_HIT_SCRIPT)
        self._events = _EventHub(self._client, self._prefix, self.get)
        if not await self.ready():
            log.warning(
                "redis store started but PING failed; the store is not ready until Redis responds"
            )

    async def close(self) -> None:
        if self._events is not None:
            await self._events.close()
            self._events = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def ready(self) -> bool:
        if self._client is None:
            return False
        try:
            return bool(await asyncio.wait_for(self._client.ping(), READY_TIMEOUT))
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("redis readiness check failed: %s", type(exc).__name__)
            return False

    @property
    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError("RedisStore.start() was not called")
        return self._client

    @contextmanager
    def _guard(self, operation: str, login_id: str = "-") -> Iterator[None]:
        """Turn any Redis failure into ``StoreUnavailable`` after one log line."""
        try:
            yield
        except RedisError as exc:
            log.error(
                "redis %s failed (login %s): %s: %s", operation, login_id, type(exc).__name__, exc
            )
            raise StoreUnavailable() from exc

    # -- login sessions --------------------------------------------------------------------

    def _session_key(self, login_id: str) -> str:
        return f"{self._prefix}session:{login_id}"

    async def create(self, session: LoginSession) -> None:
        key = self._session_key(session.id)
        ttl = session.expires_at - self._clock() + self._retention
        with self._guard("create", session.id):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                if ttl > 0:  # else it is already past retention: nothing to keep
                    pipe.hset(
                        key,
                        mapping={
                            "state": session.state.value,
                            "version": session.version,
                            "snapshot": _encode(session),
                        },
                    )
                    pipe.pexpire(key, _milliseconds(ttl))
                await pipe.execute()

    async def get(self, login_id: str) -> LoginSession | None:
        return await self._read(login_id, "get")

    async def _read(self, login_id: str, operation: str) -> LoginSession | None:
        with self._guard(operation, login_id):
            snapshot = await self._redis.hget(self._session_key(login_id), "snapshot")
        return None if snapshot is None else LoginSession.from_dict(json.loads(snapshot))

    async def transition(
        self,
        login_id: str,
        to: State,
        *,
        expect: State = State.PENDING,
        reason: str | None = None,
        message: str | None = None,
        identity: VerifiedIdentity | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> LoginSession | None:
        def change(current: LoginSession) -> LoginSession:
            merged = {**current.data, **(data or {})}
            return current.evolve(
                state=to, reason=reason, message=message, identity=identity, data=merged
            )

        return await self._compare_and_set("transition", login_id, expect, change)

    async def update_data(
        self, login_id: str, data: Mapping[str, Any], *, expect: State = State.PENDING
    ) -> LoginSession | None:
        def change(current: LoginSession) -> LoginSession:
            return current.evolve(data={**current.data, **data})

        return await self._compare_and_set("update_data", login_id, expect, change)

    async def _compare_and_set(
        self,
        operation: str,
        login_id: str,
        expect: State,
        change: Callable[[LoginSession], LoginSession],
    ) -> LoginSession | None:
        """Apply ``change`` to the current snapshot if it is in ``expect`` and unchanged since read.

        The script writes only when state and version still match what was read, so the merge
        always starts from the stored data, and it publishes the result in the same step.
        """
        key = self._session_key(login_id)
        channel = self._events_channel(login_id)
        for _ in range(CAS_ATTEMPTS):
            current = await self._read(login_id, operation)
            if current is None or current.state != expect:
                return None
            updated = change(current)
            args = [
                expect.value,
                current.version,
                updated.state.value,
                updated.version,
                _encode(updated),
                channel,
                secrets.token_hex(WRITER_TOKEN_BYTES),
            ]
            with self._guard(operation, login_id):
                outcome = int(await self._cas(keys=[key], args=args))
            if outcome == _APPLIED:
                return updated
            if outcome == _NOT_EXPECTED:
                return None
        log.error(
            "redis %s gave up after %d conflicting writes (login %s)",
            operation,
            CAS_ATTEMPTS,
            login_id,
        )
        raise StoreUnavailable()

    def _events_channel(self, login_id: str) -> str:
        return f"{self._prefix}events:{login_id}"

    @asynccontextmanager
    async def watch(self, login_id: str) -> AsyncIterator[Subscription]:
        if self._events is None:
            raise RuntimeError("RedisStore.start() was not called")
        async with self._events.subscribe(login_id) as queue:
            yield queue

    # -- small shared values ---------------------------------------------------------------

    def _value_key(self, key: str) -> str:
        return f"{self._prefix}value:{key}"

    def _count_key(self, key: str) -> str:
        return f"{self._prefix}count:{key}"

    async def claim_once(self, key: str, ttl: float) -> bool:
        token = secrets.token_hex(WRITER_TOKEN_BYTES)
        with self._guard("claim_once"):
            if await self._redis.set(self._value_key(key), token, nx=True, px=_milliseconds(ttl)):
                return True
            # A retried SET finds the value its first attempt wrote: that is still our claim.
            stored = await self._redis.get(self._value_key(key))
        return stored == token

    async def hit(self, key: str, window: float) -> tuple[int, float]:
        with self._guard("hit"):
            count, ttl = await self._hit(keys=[self._count_key(key)], args=[_milliseconds(window)])
        return int(count), int(ttl) / 1000

    async def reset(self, key: str) -> None:
        with self._guard("reset"):
            await self._redis.delete(self._count_key(key), self._value_key(key))

    async def put(self, key: str, value: str, ttl: float) -> None:
        with self._guard("put"):
            await self._redis.set(self._value_key(key), value, px=_milliseconds(ttl))

    async def swap(self, key: str, value: str, ttl: float) -> str | None:
        with self._guard("swap"):
            previous = await self._redis.set(
                self._value_key(key), value, px=_milliseconds(ttl), get=True
            )
        # SET with GET answers the old value (or None), never the bool of a plain SET.
        return None if isinstance(previous, bool) else _text(previous)

    async def fetch(self, key: str) -> str | None:
        with self._guard("fetch"):
            value = await self._redis.get(self._value_key(key))
        return _text(value)

    async def take(self, key: str) -> str | None:
        with self._guard("take"):
            value = await self._redis.getdel(self._value_key(key))
        return _text(value)


class _EventHub:
    """One pub/sub connection per store, fanned out to a queue per watcher.

    A channel is subscribed while at least one local watcher needs it. Redis confirms each
    SUBSCRIBE in order, so ``_confirmations`` pairs every confirmation with the request that
    caused it. A confirmation with no waiting request comes from redis-py re-subscribing after
    a reconnect. Messages published during the outage are lost, so the hub then re-reads the
    session and delivers the current snapshot (watchers drop stale ones by version).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        read: Callable[[str], Awaitable[LoginSession | None]],
    ) -> None:
        self._pubsub = client.pubsub()
        self._channel_prefix = f"{prefix}events:"
        self._read = read
        self._watchers: dict[str, set[asyncio.Queue[LoginSession]]] = {}
        self._subscribed: dict[str, asyncio.Future[None]] = {}
        self._confirmations: dict[str, deque[asyncio.Future[None]]] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def subscribe(self, login_id: str) -> AsyncIterator[asyncio.Queue[LoginSession]]:
        channel = self._channel_prefix + login_id
        queue: asyncio.Queue[LoginSession] = asyncio.Queue(WATCH_QUEUE_SIZE)
        try:
            await self._join(channel, queue)
        except BaseException:
            await self._leave(channel, queue)
            raise
        try:
            yield queue
        finally:
            await self._leave(channel, queue)

    async def _join(self, channel: str, queue: asyncio.Queue[LoginSession]) -> None:
        watchers = self._watchers.get(channel)
        if watchers is None:
            # Registered before the first await, so concurrent watchers share this SUBSCRIBE.
            watchers = self._watchers[channel] = set()
            confirmed = asyncio.get_running_loop().create_future()
            self._subscribed[channel] = confirmed
            self._confirmations.setdefault(channel, deque()).append(confirmed)
            try:
                await self._pubsub.subscribe(channel)
            except RedisError as exc:
                self._forget_confirmation(channel, confirmed)
                log.error("redis subscribe failed (%s): %s: %s", channel, type(exc).__name__, exc)
                raise StoreUnavailable() from exc
            self._start_dispatcher()
        watchers.add(queue)
        try:
            await asyncio.wait_for(asyncio.shield(self._subscribed[channel]), SUBSCRIBE_TIMEOUT)
        except TimeoutError:
            log.error(
                "redis did not confirm the subscription to %s in %.0f s", channel, SUBSCRIBE_TIMEOUT
            )
            raise StoreUnavailable() from None

    def _forget_confirmation(self, channel: str, confirmed: asyncio.Future[None]) -> None:
        pending = self._confirmations.get(channel)
        if pending is not None and confirmed in pending:
            pending.remove(confirmed)
            if not pending:
                del self._confirmations[channel]

    async def _leave(self, channel: str, queue: asyncio.Queue[LoginSession]) -> None:
        watchers = self._watchers.get(channel)
        if watchers is None:
            return
        watchers.discard(queue)
        if watchers:
            return
        del self._watchers[channel]
        del self._subscribed[channel]
        if channel not in self._pubsub.channels:
            return  # its SUBSCRIBE never went out
        try:
            await self._pubsub.unsubscribe(channel)
        except RedisError as exc:
            # The dispatcher unsubscribes it when a reconnect brings it back.
            log.warning("redis unsubscribe failed (%s): %s", channel, type(exc).__name__)

    def _start_dispatcher(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch(), name="redis-store-events")

    async def _dispatch(self) -> None:
        while True:
            try:
                # NOTE: this read has no timeout and the client sends no health-check PING
                # (a PING reply would race this read). Only TCP keepalive detects a silently
                # dead peer, so after a network partition watchers may wait minutes.
                message = await self._pubsub.get_message(timeout=None)
            except (RedisError, OSError) as exc:
                log.error(
                    "redis pub/sub connection lost: %s: %s; retrying in %.0f s",
                    type(exc).__name__,
                    exc,
                    RESUBSCRIBE_DELAY,
                )
                await asyncio.sleep(RESUBSCRIBE_DELAY)
                continue
            if message is None:
                continue
            kind, channel = message["type"], message["channel"]
            if kind == "message":
                self._deliver(channel, message["data"])
            elif kind == "subscribe":
                self._confirm(channel)

    def _confirm(self, channel: str) -> None:
        pending = self._confirmations.get(channel)
        if pending:
            confirmed = pending.popleft()
            if not pending:
                del self._confirmations[channel]
            if not confirmed.done():
                confirmed.set_result(None)
            return
        if channel in self._watchers:
            self._spawn(self._resync(channel))
        else:
            self._spawn(self._drop(channel))

    async def _resync(self, channel: str) -> None:
        login_id = channel.removeprefix(self._channel_prefix)
        try:
            session = await self._read(login_id)
        except StoreUnavailable:
            return  # already logged; the watchers keep waiting for the next change
        if session is not None:
            self._fan_out(channel, session)

    async def _drop(self, channel: str) -> None:
        try:
            await self._pubsub.unsubscribe(channel)
        except RedisError as exc:
            log.warning("redis unsubscribe failed (%s): %s", channel, type(exc).__name__)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _deliver(self, channel: str, payload: str) -> None:
        if channel not in self._watchers:
            return  # a message that crossed our UNSUBSCRIBE
        try:
            session = LoginSession.from_dict(json.loads(payload))
        except (ValueError, KeyError, TypeError) as exc:
            log.error("dropped an unreadable snapshot on %s: %s", channel, type(exc).__name__)
            return
        self._fan_out(channel, session)

    def _fan_out(self, channel: str, session: LoginSession) -> None:
        for queue in self._watchers.get(channel, ()):
            if queue.full():
                queue.get_nowait()  # drop the oldest; snapshots carry the whole state
            queue.put_nowait(session)

    async def close(self) -> None:
        tasks = [*self._background]
        if self._dispatcher is not None:
            tasks.append(self._dispatcher)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pending in self._confirmations.values():
            for confirmed in pending:
                confirmed.cancel()
        self._confirmations.clear()
        await self._pubsub.aclose()
