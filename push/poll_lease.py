"""Poll leases in Redis: exactly one node polls each TW FidO transaction, and another takes over.

A watched transaction is registered under ``polls`` (sorted set of watch keys by wall-clock
deadline) and ``poll-tickets`` (watch key → encoded ticket). Its lease ``lease:{key}`` holds the
polling node's token and expires ``ttl`` after its last renewal; each poll renews it first. A
node that finds it held by another does not poll. When the holder dies, the lease expires, the
other nodes' sweeps find the registration without a lease and adopt it. When a watch ends, the
lease becomes ``done`` until the deadline, so no node adopts or polls it again.
"""

from __future__ import annotations

import enum
import secrets

import redis.asyncio as aioredis

NODE_TOKEN_BYTES = 12
DONE = "done"


class Lease(enum.Enum):
    HELD = 1  # this node has the lease, so it polls
    BUSY = 0  # another node has the lease, so this one waits
    DONE = 2  # the watch ended on some node, so every node stops


# KEYS[1] lease. ARGV: this node's token, TTL in ms. Take a free lease or renew our own.
_ACQUIRE_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if holder == 'done' then return 2 end
if not holder or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisPollLease:
    """The leases and the registry of watched transactions, under ``prefix``."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
        self.token = secrets.token_hex(NODE_TOKEN_BYTES)
        self._acquire = client.register_script(_ACQUIRE_SCRIPT)

    def _lease_key(self, key: str) -> str:
        return f"{self._prefix}lease:{key}"

    @property
    def _polls(self) -> str:
        return f"{self._prefix}polls"

    @property
    def _tickets(self) -> str:
        return f"{self._prefix}poll-tickets"

    async def register(self, key: str, ticket: str, deadline: float, ttl: float) -> None:
        """Record a watch (``deadline`` in wall-clock seconds) and take its lease if free."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self._polls, {key: deadline})
            pipe.hset(self._tickets, key, ticket)
            pipe.set(self._lease_key(key), self.token, nx=True, px=_milliseconds(ttl))
            await pipe.execute()

    async def acquire(self, key: str, ttl: float) -> Lease:
        """Take or renew the lease of ``key`` before a poll."""
        outcome = int(
            await self._acquire(keys=[self._lease_key(key)], args=[self.token, _milliseconds(ttl)])
        )
        return Lease(outcome)

    async def finish(self, key: str, remaining: float) -> None:
        """Mark the watch of ``key`` ended on every node for the ``remaining`` seconds."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._lease_key(key), DONE, px=_milliseconds(max(remaining, 1.0)))
            pipe.zrem(self._polls, key)
            pipe.hdel(self._tickets, key)
            await pipe.execute()

    async def orphans(self, now: float) -> list[tuple[str, str, float]]:
        """Return (key, ticket, deadline) of registered watches that no node holds a lease on."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrangebyscore(self._polls, "-inf", now)
            pipe.zrangebyscore(self._polls, now, "+inf", withscores=True)
            expired, live = await pipe.execute()
        if expired:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(self._polls, *expired)
                pipe.hdel(self._tickets, *expired)
                await pipe.execute()
        if not live:
            return []
        entries = [(_text(key), float(score)) for key, score in live]
        holders = await self._redis.mget([self._lease_key(key) for key, _ in entries])
        free = [
            (key, deadline)
            for (key, deadline), holder in zip(entries, holders, strict=True)
            if holder is None
        ]
        if not free:
            return []
        tickets = await self._redis.hmget(self._tickets, [key for key, _ in free])
        return [
            (key, _text(ticket), deadline)
            for (key, deadline), ticket in zip(free, tickets, strict=True)
            if ticket is not None
        ]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
