"""Pending TW FidO transactions of the embedded authority, kept in memory.

``TransactionTable`` is the only place that stores them, so a shared (Redis-backed) table for
several nodes can replace it behind the same methods.

NOTE: this table lives in one process. With several nodes, a push started on one node cannot be
approved on another until a Redis-backed variant exists.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass, field

MAX_TRANSACTIONS = 10_000  # bounds memory if an SP floods requests; far above real load
RETAIN_AFTER_EXPIRY = 600.0  # seconds an expired transaction still returns SPTKT_OVD, not NF
USED_ID_RETENTION = 24 * 3600.0  # seconds a transaction_id stays "used" (reuse → TXNLOG_INS_ERR)
MAX_USED_IDS = 100_000  # the oldest used transaction_ids are forgotten past this count


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
    """Transactions by ``sp_ticket_id``, plus the set of ``transaction_id`` values already used."""

    def __init__(self) -> None:
        self._by_ticket_id: dict[str, Transaction] = {}
        self._used_ids: OrderedDict[str, float] = OrderedDict()

    def claim_transaction_id(self, transaction_id: str, now: float) -> bool:
        """Record ``transaction_id`` as used; return False if it was used before."""
        self._forget_old_ids(now)
        if transaction_id in self._used_ids:
            return False
        self._used_ids[transaction_id] = now
        if len(self._used_ids) > MAX_USED_IDS:
            self._used_ids.popitem(last=False)
        return True

    def add(self, transaction: Transaction, now: float) -> None:
        self.prune(now)
        if len(self._by_ticket_id) >= MAX_TRANSACTIONS:
            raise TableFull()
        self._by_ticket_id[transaction.sp_ticket_id] = transaction

    def get(self, sp_ticket_id: str) -> Transaction | None:
        return self._by_ticket_id.get(sp_ticket_id)

    def pending_for(self, id_number: str, now: float) -> list[Transaction]:
        """Return the unanswered, unexpired transactions of one ID number, oldest first."""
        return [
            txn
            for txn in self._by_ticket_id.values()
            if txn.id_number == id_number and txn.state is State.PENDING and not txn.expired(now)
        ]

    def finish(self, transaction: Transaction, state: State, reason: str, now: float) -> bool:
        """Move a pending, unexpired transaction to a final state; return False otherwise."""
        if transaction.state is not State.PENDING or transaction.expired(now):
            return False
        transaction.state = state
        transaction.reason = reason
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
