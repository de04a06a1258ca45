"""In-process store: the single-node default. Atomic because the event loop is single-threaded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from server.sessions.model import RETENTION_SECONDS, LoginSession, State, VerifiedIdentity
from server.sessions.store import SessionStore, Subscription

PURGE_EVERY = 256  # writes between purges of stale entries
WATCH_QUEUE_SIZE = 64  # a watcher this far behind only needs the newest snapshot anyway


@dataclass(slots=True)
class _Value:
    value: str
    expires_at: float


class MemoryStore(SessionStore):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._sessions: dict[str, LoginSession] = {}
        self._values: dict[str, _Value] = {}
        self._counters: dict[str, tuple[int, float]] = {}
        self._watchers: dict[str, set[asyncio.Queue[LoginSession]]] = {}
        self._writes = 0

    async def create(self, session: LoginSession) -> None:
        self._sessions[session.id] = session
        self._wrote()

    async def get(self, login_id: str) -> LoginSession | None:
        session = self._sessions.get(login_id)
        if session is not None and self._clock() > session.expires_at + RETENTION_SECONDS:
            del self._sessions[login_id]
            return None
        return session

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
        current = await self.get(login_id)
        if current is None or current.state != expect:
            return None
        merged = {**current.data, **(data or {})}
        updated = current.evolve(
            state=to, reason=reason, message=message, identity=identity, data=merged
        )
        self._sessions[login_id] = updated
        self._publish(updated)
        return updated

    async def update_data(
        self, login_id: str, data: Mapping[str, Any], *, expect: State = State.PENDING
    ) -> LoginSession | None:
        current = await self.get(login_id)
        if current is None or current.state != expect:
            return None
        updated = current.evolve(data={**current.data, **data})
        self._sessions[login_id] = updated
        self._publish(updated)
        return updated

    @asynccontextmanager
    async def watch(self, login_id: str) -> AsyncIterator[Subscription]:
        queue: asyncio.Queue[LoginSession] = asyncio.Queue(WATCH_QUEUE_SIZE)
        self._watchers.setdefault(login_id, set()).add(queue)
        try:
            yield queue
        finally:
            watchers = self._watchers.get(login_id)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._watchers[login_id]

    def _publish(self, session: LoginSession) -> None:
        for queue in self._watchers.get(session.id, ()):
            if queue.full():
                queue.get_nowait()  # drop the oldest; snapshots carry the whole state
            queue.put_nowait(session)

    async def claim_once(self, key: str, ttl: float) -> bool:
        now = self._clock()
        held = self._values.get(key)
        if held is not None and held.expires_at > now:
            return False
        self._values[key] = _Value("1", now + ttl)
        self._wrote()
        return True

    async def hit(self, key: str, window: float) -> tuple[int, float]:
        now = self._clock()
        count, resets_at = self._counters.get(key, (0, 0.0))
        if resets_at <= now:
            count, resets_at = 0, now + window
        count += 1
        self._counters[key] = (count, resets_at)
        self._wrote()
        return count, resets_at - now

    async def reset(self, key: str) -> None:
        self._counters.pop(key, None)
        self._values.pop(key, None)

    async def put(self, key: str, value: str, ttl: float) -> None:
        self._values[key] = _Value(value, self._clock() + ttl)
        self._wrote()

    async def swap(self, key: str, value: str, ttl: float) -> str | None:
        previous = await self.fetch(key)
        await self.put(key, value, ttl)
        return previous

    async def fetch(self, key: str) -> str | None:
        held = self._values.get(key)
        if held is None or held.expires_at <= self._clock():
            return None
        return held.value

    async def take(self, key: str) -> str | None:
        value = await self.fetch(key)
        self._values.pop(key, None)
        return value

    def _wrote(self) -> None:
        self._writes += 1
        if self._writes % PURGE_EVERY == 0:
            self._purge()

    def _purge(self) -> None:
        now = self._clock()
        stale = [k for k, s in self._sessions.items() if now > s.expires_at + RETENTION_SECONDS]
        for login_id in stale:
            del self._sessions[login_id]
        for key in [k for k, v in self._values.items() if v.expires_at <= now]:
            del self._values[key]
        for key in [k for k, (_, resets_at) in self._counters.items() if resets_at <= now]:
            del self._counters[key]
