"""Pending TW FidO transactions of the embedded authority.

Two tables implement the same async methods: ``TransactionTable`` keeps them in this process (one
node, the default) and ``RedisTransactionTable`` keeps them in Redis with TTLs, so a push started
on one node can be approved on another. ``finish`` and ``mark_fetched`` are atomic in both: a late
answer never overwrites a final state, and a result is handed out once.
"""

from __future__ import annotations

import base64
import enum
import json
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

MAX_TRANSACTIONS = 10_000  # bounds memory if an SP floods requests; far above real load
RETAIN_AFTER_EXPIRY = 600.0  # seconds an expired transaction still returns SPTKT_OVD, not NF
USED_ID_RETENTION = 24 * 3600.0  # seconds a transaction_id stays "used" (reuse → TXNLOG_INS_ERR)
MAX_USED_IDS = 100_000  # the oldest used transaction_ids are forgotten past this count
MAX_TIME_LIMIT = 600.0  # seconds; the SP API's longest time_limit, bounds the per-ID index TTL
WRITER_TOKEN_BYTES = 12


class State(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    FAILED = "failed"


@dataclass
class Transaction:
    """One push or QR transaction, from the ticket request to the fetched result."""

    transaction_id: str
    sp_ticket_id: str
    sp_ticket: str
    op_code: str
    op_mode: str
    id_number: str
    hashed_id_num: str
    hint: str
    created_at: float
    expires_at: float
    challenge: bytes  # what the phone signs on approval
    code: str = ""  # the two-digit verification code from the hint, "" when there is none
    choices: list[str] = field(default_factory=list)
    state: State = State.PENDING
    reason: str = ""
    signed_response: str = ""  # base64 DER signature of the approving device
    certificate: str = ""  # base64 DER certificate of the approving device
    result_fetched: bool = False

    def expired(self, now: float) -> bool:
        return self.state is State.PENDING and now >= self.expires_at


class TableFull(Exception):
    """Too many transactions are held; the request is rejected."""


class TransactionTable:
    """Transactions by ``sp_ticket_id`` in this process, plus the ``transaction_id``s used."""

    def __init__(self) -> None:
        self._by_ticket_id: dict[str, Transaction] = {}
        self._used_ids: OrderedDict[str, float] = OrderedDict()

    async def claim_transaction_id(self, transaction_id: str, now: float) -> bool:
        """Record ``transaction_id`` as used; return False if it was used before."""
        self._forget_old_ids(now)
        if transaction_id in self._used_ids:
            return False
        self._used_ids[transaction_id] = now
        if len(self._used_ids) > MAX_USED_IDS:
            self._used_ids.popitem(last=False)
        return True

    async def add(self, transaction: Transaction, now: float) -> None:
        self.prune(now)
        if len(self._by_ticket_id) >= MAX_TRANSACTIONS:
            raise TableFull()
        self._by_ticket_id[transaction.sp_ticket_id] = transaction

    async def get(self, sp_ticket_id: str) -> Transaction | None:
        return self._by_ticket_id.get(sp_ticket_id)

    async def pending_for(self, id_number: str, now: float) -> list[Transaction]:
        """Return the unanswered, unexpired transactions of one ID number, oldest first."""
        return [
            txn
            for txn in self._by_ticket_id.values()
            if txn.id_number == id_number and txn.state is State.PENDING and not txn.expired(now)
        ]

    async def finish(
        self,
        transaction: Transaction,
        state: State,
        reason: str,
        now: float,
        *,
        signed_response: str = "",
        certificate: str = "",
    ) -> bool:
        """Move a pending, unexpired transaction to a final state; return False otherwise."""
        if transaction.state is not State.PENDING or transaction.expired(now):
            return False
        transaction.state = state
        transaction.reason = reason
        transaction.signed_response = signed_response
        transaction.certificate = certificate
        return True

    async def mark_fetched(self, transaction: Transaction) -> bool:
        """Record that the result was handed out; return False if it already was."""
        if transaction.result_fetched:
            return False
        transaction.result_fetched = True
        return True

    def prune(self, now: float) -> None:
        """Drop transactions that expired more than ``RETAIN_AFTER_EXPIRY`` seconds ago."""
        stale = [
            key
            for key, txn in self._by_ticket_id.items()
            if now >= txn.expires_at + RETAIN_AFTER_EXPIRY
        ]
        for key in stale:
            del self._by_ticket_id[key]

    def _forget_old_ids(self, now: float) -> None:
        while self._used_ids:
            oldest, used_at = next(iter(self._used_ids.items()))
            if now - used_at < USED_ID_RETENTION:
                break
            del self._used_ids[oldest]


# KEYS[1] transaction hash. ARGV: now, new state, reason, signed_response, certificate, writer.
# A retried call finds its own writer token and reports success again.
_FINISH_SCRIPT = """
local current = redis.call('HMGET', KEYS[1], 'state', 'expires_at', 'writer')
if current[3] == ARGV[6] then return 1 end
if current[1] ~= 'pending' then return 0 end
if tonumber(ARGV[1]) >= tonumber(current[2]) then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'reason', ARGV[3], 'signed_response', ARGV[4],
           'certificate', ARGV[5], 'writer', ARGV[6])
return 1
"""

_STATIC_FIELDS = (
    "transaction_id", "sp_ticket_id", "sp_ticket", "op_code", "op_mode", "id_number",
    "hashed_id_num", "hint", "created_at", "expires_at", "code", "choices",
)  # fmt: skip


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisTransactionTable:
    """The same table in Redis, shared by every node.

    Keys under ``prefix``: ``txn:{sp_ticket_id}`` (hash: ``static`` JSON, ``state``, ``reason``,
    ``signed_response``, ``certificate``, ``expires_at``, ``fetched``; it expires
    ``RETAIN_AFTER_EXPIRY`` after the transaction), ``txnid:{transaction_id}`` (used ids) and
    ``pending:{id_number}`` (sorted set of ticket ids by expiry, for phones that connect late).
    Time comes from the calling node's clock, so nodes need synchronised clocks (NTP).
    No count limit applies here: every key has a TTL, and Redis must run with ``noeviction``.
    """

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
        self._finish = client.register_script(_FINISH_SCRIPT)

    def _txn_key(self, sp_ticket_id: str) -> str:
        return f"{self._prefix}txn:{sp_ticket_id}"

    def _pending_key(self, id_number: str) -> str:
        return f"{self._prefix}pending:{id_number}"

    async def claim_transaction_id(self, transaction_id: str, now: float) -> bool:
        key = f"{self._prefix}txnid:{transaction_id}"
        return bool(await self._redis.set(key, "1", nx=True, px=_milliseconds(USED_ID_RETENTION)))

    async def add(self, transaction: Transaction, now: float) -> None:
        static = {name: getattr(transaction, name) for name in _STATIC_FIELDS}
        static["challenge"] = base64.b64encode(transaction.challenge).decode("ascii")
        ttl = transaction.expires_at + RETAIN_AFTER_EXPIRY - now
        key = self._txn_key(transaction.sp_ticket_id)
        pending = self._pending_key(transaction.id_number)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "static": json.dumps(static, ensure_ascii=False),
                    "state": transaction.state.value,
                    "reason": transaction.reason,
                    "expires_at": repr(transaction.expires_at),
                },
            )
            pipe.pexpire(key, _milliseconds(ttl))
            pipe.zremrangebyscore(pending, "-inf", now)
            pipe.zadd(pending, {transaction.sp_ticket_id: transaction.expires_at})
            pipe.pexpire(pending, _milliseconds(MAX_TIME_LIMIT))
            await pipe.execute()

    async def get(self, sp_ticket_id: str) -> Transaction | None:
        fields = await self._redis.hgetall(self._txn_key(sp_ticket_id))
        return _decode(fields) if fields else None

    async def pending_for(self, id_number: str, now: float) -> list[Transaction]:
        ticket_ids = await self._redis.zrangebyscore(self._pending_key(id_number), now, "+inf")
        found = [await self.get(str(ticket_id)) for ticket_id in ticket_ids]
        return [
            txn
            for txn in found
            if txn is not None and txn.state is State.PENDING and not txn.expired(now)
        ]

    async def finish(
        self,
        transaction: Transaction,
        state: State,
        reason: str,
        now: float,
        *,
        signed_response: str = "",
        certificate: str = "",
    ) -> bool:
        args = [
            repr(now),
            state.value,
            reason,
            signed_response,
            certificate,
            secrets.token_hex(WRITER_TOKEN_BYTES),
        ]
        applied = int(await self._finish(keys=[self._txn_key(transaction.sp_ticket_id)], args=args))
        if not applied:
            return False
        transaction.state = state
        transaction.reason = reason
        transaction.signed_response = signed_response
        transaction.certificate = certificate
        return True

    async def mark_fetched(self, transaction: Transaction) -> bool:
        key = self._txn_key(transaction.sp_ticket_id)
        first = bool(await self._redis.hsetnx(key, "fetched", "1"))
        transaction.result_fetched = True
        return first


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(fields: dict[Any, Any]) -> Transaction:
    values = {_text(k): _text(v) for k, v in fields.items()}
    static = json.loads(values["static"])
    static["challenge"] = base64.b64decode(static["challenge"])
    return Transaction(
        **static,
        state=State(values["state"]),
        reason=values.get("reason", ""),
        signed_response=values.get("signed_response", ""),
        certificate=values.get("certificate", ""),
        result_fetched=values.get("fetched") == "1",
    )
