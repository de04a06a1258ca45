"""What the embedded authority shares between nodes through Redis: devices and phone routing.

- ``RedisDeviceRegistry``: device bindings in Redis, the same methods as the SQLite
  ``DeviceRegistry``, so a phone enrolled through one node can connect to any node.
- ``PhoneRelay``: one pub/sub connection per node. A node subscribes ``push:{id_number}`` while
  it holds a phone channel of that ID number; a push created on another node is published there
  and the holding node sends it to its phones. Every node subscribes ``results``: a transaction
  finished on one node is announced to all, so the node that polls it learns at once.

Keys and channels sit under the prefix ``{store.key_prefix}twfido:``. Device keys have no TTL
(bindings are permanent), which is one reason Redis must run with persistence and
``noeviction``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from push.authority.devices import MAX_DEVICES_PER_ID, Device

log = logging.getLogger(__name__)

RESUBSCRIBE_DELAY = 1.0  # seconds between attempts to restore a lost pub/sub connection
NODE_ID_BYTES = 8

# KEYS[1] device record, KEYS[2] the ID number's sorted set.
# ARGV: device id, JSON, now, limit, prefix of device record keys.
# Adds the device and drops the oldest ones of that ID number past the limit, atomically.
_ADD_DEVICE_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if extra > 0 then
  local old = redis.call('ZRANGE', KEYS[2], 0, extra - 1)
  for _, id in ipairs(old) do
    redis.call('DEL', ARGV[5] .. id)
    redis.call('ZREM', KEYS[2], id)
  end
end
return 1
"""


class RedisDeviceRegistry:
    """Device bindings in Redis: ``device:{device_id}`` (JSON) and ``devices:{id_number}``."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
        self._add = client.register_script(_ADD_DEVICE_SCRIPT)

    async def open(self) -> None:
        """Nothing to create; the keys appear with the first enrollment."""

    async def add(self, device: Device) -> None:
        record = {
            "device_id": device.device_id,
            "id_number": device.id_number,
            "device_name": device.device_name,
            "public_key_pem": device.public_key_pem,
            "certificate_der": device.certificate_der.hex(),
        }
        await self._add(
            keys=[self._device_key(device.device_id), self._index_key(device.id_number)],
            args=[
                device.device_id,
                json.dumps(record),
                repr(time.time()),
                MAX_DEVICES_PER_ID,
                f"{self._prefix}device:",
            ],
        )

    async def get(self, device_id: str) -> Device | None:
        raw = await self._redis.get(self._device_key(device_id))
        if raw is None:
            return None
        record = json.loads(raw)
        record["certificate_der"] = bytes.fromhex(record["certificate_der"])
        return Device(**record)

    async def for_id_number(self, id_number: str) -> list[Device]:
        device_ids = await self._redis.zrange(self._index_key(id_number), 0, -1)
        found = [await self.get(str(device_id)) for device_id in device_ids]
        return [device for device in found if device is not None]

    def _device_key(self, device_id: str) -> str:
        return f"{self._prefix}device:{device_id}"

    def _index_key(self, id_number: str) -> str:
        return f"{self._prefix}devices:{id_number}"


OnPush = Callable[
    [str, str, dict[str, Any]], Coroutine[Any, Any, None]
]  # id_number, device name, frame
OnResult = Callable[[str], None]  # sp_ticket_id


class PhoneRelay:
    """Routes pushes to the node holding the phone, and results to every node."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
        self.node_id = secrets.token_hex(NODE_ID_BYTES)
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._counts: dict[str, int] = {}  # id_number -> local phone channels
        self._lock = asyncio.Lock()  # orders SUBSCRIBE/UNSUBSCRIBE of one channel
        self._reader: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._on_push: OnPush | None = None
        self._on_result: OnResult | None = None

    @property
    def _results_channel(self) -> str:
        return f"{self._prefix}results"

    def _push_channel(self, id_number: str) -> str:
        return f"{self._prefix}push:{id_number}"

    async def start(self, on_push: OnPush, on_result: OnResult) -> None:
        self._on_push = on_push
        self._on_result = on_result
        try:
            await self._pubsub.subscribe(self._results_channel)
        except RedisError as exc:
            # redis-py subscribes again when the connection comes back.
            log.error("phone relay could not subscribe yet: %s: %s", type(exc).__name__, exc)
        self._reader = asyncio.create_task(self._read(), name="twfido-phone-relay")

    async def close(self) -> None:
        tasks = [t for t in (self._reader, *self._deliveries) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._pubsub.aclose()

    async def join(self, id_number: str) -> None:
        """Count a local phone channel of ``id_number``; the first one subscribes its pushes."""
        async with self._lock:
            self._counts[id_number] = self._counts.get(id_number, 0) + 1
            if self._counts[id_number] == 1:
                await self._pubsub.subscribe(self._push_channel(id_number))

    async def leave(self, id_number: str) -> None:
        """Uncount a closed phone channel of ``id_number``; the last one unsubscribes."""
        async with self._lock:
            count = self._counts.get(id_number, 0) - 1
            if count > 0:
                self._counts[id_number] = count
                return
            self._counts.pop(id_number, None)
            try:
                await self._pubsub.unsubscribe(self._push_channel(id_number))
            except RedisError as exc:
                log.warning("phone relay unsubscribe failed: %s", type(exc).__name__)

    async def reachable_elsewhere(self, id_number: str) -> bool:
        """Return whether another node has a phone channel of ``id_number`` open."""
        counts = await self._redis.pubsub_numsub(self._push_channel(id_number))
        subscribers = int(counts[0][1]) if counts else 0
        return subscribers - (1 if id_number in self._counts else 0) > 0

    async def publish_push(self, id_number: str, device_name: str, frame: dict[str, Any]) -> int:
        """Send a prompt to the other nodes' phones of ``id_number``; return how many nodes got it.

        NOTE: a node counts as reached when it holds any channel of the ID number, even if a
        ``device_name`` filter then matches none of its phones or its send times out.
        """
        message = json.dumps(
            {"node": self.node_id, "device_name": device_name, "frame": frame}, ensure_ascii=False
        )
        receivers = int(await self._redis.publish(self._push_channel(id_number), message))
        return receivers - (1 if id_number in self._counts else 0)

    async def publish_result(self, sp_ticket_id: str) -> None:
        message = json.dumps({"node": self.node_id, "txn": sp_ticket_id})
        await self._redis.publish(self._results_channel, message)

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except (RedisError, OSError) as exc:
                log.error(
                    "phone relay lost Redis: %s: %s; retrying in %.0f s",
                    type(exc).__name__,
                    exc,
                    RESUBSCRIBE_DELAY,
                )
                await asyncio.sleep(RESUBSCRIBE_DELAY)
                continue
            except RuntimeError:
                # No channel subscribed yet (the first SUBSCRIBE failed): wait and try again.
                await asyncio.sleep(RESUBSCRIBE_DELAY)
                await self._resubscribe_results()
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                self._dispatch(_text(message["channel"]), json.loads(message["data"]))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("phone relay dropped an unreadable message: %s", type(exc).__name__)

    async def _resubscribe_results(self) -> None:
        try:
            await self._pubsub.subscribe(self._results_channel)
        except RedisError as exc:
            log.error("phone relay could not subscribe: %s", type(exc).__name__)

    def _dispatch(self, channel: str, payload: dict[str, Any]) -> None:
        if payload["node"] == self.node_id:
            return  # this node already acted on its own message
        if channel == self._results_channel:
            if self._on_result is not None:
                self._on_result(str(payload["txn"]))
            return
        if self._on_push is None:
            return
        id_number = channel.removeprefix(f"{self._prefix}push:")
        task = asyncio.create_task(
            self._on_push(id_number, str(payload["device_name"]), payload["frame"])
        )
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
