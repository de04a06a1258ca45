"""The embedded authority's core: devices, transactions and the approvals and denials of phones.

``Authority`` is shared by the SP API (``spapi.py``) and the phone channel (``channel.py``) and
imports no aiohttp. It is a demo and test stand-in for MOI's TW FidO service: device enrollment
needs no identity proof at all, so it must never face users who could enroll someone else's ID.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from redis.exceptions import RedisError

from push import ticket as ticket_codec
from push.authority import ca as test_ca
from push.authority.cluster import PhoneRelay, RedisDeviceRegistry
from push.authority.devices import (
    Device,
    DeviceRegistry,
    InvalidPublicKey,
    load_public_key,
    verify_signature,
)
from push.authority.transactions import (
    RedisTransactionTable,
    State,
    Transaction,
    TransactionTable,
)
from server import idnumber
from server.errors import InvalidInput

log = logging.getLogger(__name__)

TICKET_VERSION = "1.0"  # NOTE: the version string MOI puts in its tickets is unconfirmed
MAX_DEVICE_NAME_CHARS = 64  # the app's device label; longer names are cut
SEND_TIMEOUT = 5.0  # seconds one push frame may take to reach a phone before it is skipped
CODE_PATTERN = re.compile(r"驗證碼\s*(\d{2})")  # how the verifier writes the code into the hint
HIDDEN_CODE = "驗證碼（請對照登入頁面）"  # replaces the code in the hint the phone shows
DECOY_COUNT = 2  # wrong codes shown next to the right one for number matching
# NOTE: the op_mode MOI writes into tickets of pushed requests is unconfirmed.
PUSH_OP_MODE = "PUSH"

_random = secrets.SystemRandom()


class PhoneConnection(Protocol):
    """An authenticated phone channel, as the hub uses it."""

    async def send(self, frame: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class SharedState:
    """The Redis-backed parts that several nodes share (``store.backend = redis``)."""

    registry: RedisDeviceRegistry
    transactions: RedisTransactionTable
    relay: PhoneRelay


@dataclass(frozen=True)
class TransactionRequest:
    """The checked fields of a getSpTicket or requestAthOrSignPush request."""

    transaction_id: str
    id_number: str
    op_code: str
    op_mode: str
    hint: str
    time_limit: int
    sign_bytes: bytes | None  # decoded sign_data for SIGN, None for ATH


class ChannelHub:
    """Connected phone channels by ID number, with the device each one authenticated as."""

    def __init__(self) -> None:
        self._by_id: dict[str, dict[PhoneConnection, Device]] = {}

    def add(self, connection: PhoneConnection, device: Device) -> None:
        self._by_id.setdefault(device.id_number, {})[connection] = device

    def remove(self, connection: PhoneConnection, device: Device) -> None:
        connections = self._by_id.get(device.id_number)
        if connections is not None:
            connections.pop(connection, None)
            if not connections:
                del self._by_id[device.id_number]

    def connected(self, id_number: str, device_name: str = "") -> list[PhoneConnection]:
        """Return the channels of ``id_number``, only those of ``device_name`` when given."""
        connections = self._by_id.get(id_number, {})
        return [
            connection
            for connection, device in connections.items()
            if not device_name or device.device_name == device_name
        ]


class Authority:
    def __init__(
        self,
        *,
        data_dir: Path,
        sp_service_id: str,
        sp_name: str,
        on_result: Callable[[str], None] | None,
        clock: Callable[[], float],
        shared: SharedState | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.sp_service_id = sp_service_id
        self.sp_name = sp_name
        self.clock = clock
        self.registry: DeviceRegistry | RedisDeviceRegistry = DeviceRegistry(data_dir)
        self.transactions: TransactionTable | RedisTransactionTable = TransactionTable()
        self.relay: PhoneRelay | None = None
        if shared is not None:  # several nodes: state in Redis, pushes and results relayed
            self.registry = shared.registry
            self.transactions = shared.transactions
            self.relay = shared.relay
        self.hub = ChannelHub()
        self._on_result = on_result
        self._ca: test_ca.TestCa | None = None

    async def start(self) -> None:
        """Load or create the test CA and the device database (file work in worker threads)."""
        await asyncio.to_thread(self.data_dir.mkdir, parents=True, exist_ok=True)
        self._ca = await asyncio.to_thread(test_ca.load_or_create, self.data_dir)
        await self.registry.open()
        if self.relay is not None:
            await self.relay.start(self._deliver_relayed, self._announce)

    async def close(self) -> None:
        if self.relay is not None:
            await self.relay.close()

    # -- phone channels ---------------------------------------------------------------------

    async def attach(self, connection: PhoneConnection, device: Device) -> None:
        """Register an authenticated phone channel, on this node and for the other nodes."""
        self.hub.add(connection, device)
        if self.relay is not None:
            await self.relay.join(device.id_number)

    async def detach(self, connection: PhoneConnection, device: Device) -> None:
        self.hub.remove(connection, device)
        if self.relay is not None:
            await self.relay.leave(device.id_number)

    async def reachable(self, id_number: str, device_name: str = "") -> bool:
        """Return whether a phone channel of ``id_number`` is open on this node or another one."""
        if self.hub.connected(id_number, device_name):
            return True
        return self.relay is not None and await self.relay.reachable_elsewhere(id_number)

    async def deliver_push(self, transaction: Transaction, device_name: str = "") -> int:
        """Prompt every phone of the transaction's ID number, wherever its channel is.

        Return how many local channels and other nodes it reached.
        """
        local = self.hub.connected(transaction.id_number, device_name)
        sent = await self.deliver(local, transaction) if local else 0
        if self.relay is not None:
            sent += await self.relay.publish_push(
                transaction.id_number, device_name, self.prompt(transaction)
            )
        return sent

    async def _deliver_relayed(
        self, id_number: str, device_name: str, frame: dict[str, Any]
    ) -> None:
        """Send a prompt published by another node to this node's phones of ``id_number``."""
        connections = self.hub.connected(id_number, device_name)
        results = await asyncio.gather(
            *(asyncio.wait_for(c.send(frame), SEND_TIMEOUT) for c in connections),
            return_exceptions=True,
        )
        for failure in (r for r in results if isinstance(r, BaseException)):
            log.warning("relayed push %s not sent to a phone: %r", frame.get("txn"), failure)

    # -- enrollment -------------------------------------------------------------------------

    async def enroll(self, id_number: str, public_key_pem: str, device_name: str) -> Device:
        """Bind a new device key to an ID number and issue its test mobile certificate."""
        id_number = idnumber.validate(id_number)
        try:
            public_key = load_public_key(public_key_pem)
        except InvalidPublicKey as exc:
            raise InvalidInput(f"公鑰格式不正確：{exc}。") from None
        if self._ca is None:
            raise RuntimeError("Authority.start() was not awaited")

        device_id = "dev_" + secrets.token_urlsafe(16)
        certificate = await asyncio.to_thread(
            self._ca.issue_device_certificate, public_key, id_number, device_id
        )
        device = Device(
            device_id=device_id,
            id_number=id_number,
            device_name=(device_name or "phone")[:MAX_DEVICE_NAME_CHARS],
            public_key_pem=public_key_pem,
            certificate_der=certificate.public_bytes(serialization.Encoding.DER),
        )
        await self.registry.add(device)
        log.info("enrolled device %s for %s", device_id, idnumber.mask(id_number))
        return device

    # -- transactions -----------------------------------------------------------------------

    async def create_transaction(self, request: TransactionRequest) -> Transaction:
        """Create a pending transaction and its ticket; raise ``TableFull`` when full."""
        now = self.clock()
        expires_at = now + request.time_limit
        sp_ticket_id = str(uuid.uuid4())
        hashed_id_num = hash_id_number(request.id_number)
        sp_ticket = ticket_codec.encode(
            ticket_codec.Ticket(
                transaction_id=request.transaction_id,
                op_code=request.op_code,
                op_mode=request.op_mode,
                sp_service_id=self.sp_service_id,
                sp_ticket_id=sp_ticket_id,
                sp_name=self.sp_name,
                hint=request.hint,
                # NOTE: MOI's expiration_time format is unconfirmed; this is Unix time in seconds.
                expiration_time=str(int(expires_at)),
                hashed_id_num=hashed_id_num,
                version=TICKET_VERSION,
            )
        )

        code, choices = number_matching(request.hint)
        # ATH signs the ticket itself, so a verifier holding the ticket can check the signature.
        challenge = request.sign_bytes if request.sign_bytes is not None else sp_ticket.encode()
        transaction = Transaction(
            transaction_id=request.transaction_id,
            sp_ticket_id=sp_ticket_id,
            sp_ticket=sp_ticket,
            op_code=request.op_code,
            op_mode=request.op_mode,
            id_number=request.id_number,
            hashed_id_num=hashed_id_num,
            hint=request.hint,
            created_at=now,
            expires_at=expires_at,
            challenge=challenge,
            code=code,
            choices=choices,
        )
        await self.transactions.add(transaction, now)
        return transaction

    def prompt(self, transaction: Transaction) -> dict[str, Any]:
        """Build the ``push`` frame that prompts a phone to approve ``transaction``."""
        return {
            "type": "push",
            "txn": transaction.sp_ticket_id,
            "op_code": transaction.op_code,
            # The code is cut from the hint: the person must find it on the login page.
            "hint": CODE_PATTERN.sub(HIDDEN_CODE, transaction.hint),
            "sp_name": self.sp_name,
            "expires_at": transaction.expires_at,
            "expires_in": max(0, int(transaction.expires_at - self.clock())),
            "choices": list(transaction.choices),
            "challenge": base64.b64encode(transaction.challenge).decode("ascii"),
        }

    async def deliver(self, connections: list[PhoneConnection], transaction: Transaction) -> int:
        """Send the prompt to each channel; return how many sends succeeded."""
        frame = self.prompt(transaction)
        results = await asyncio.gather(
            *(asyncio.wait_for(c.send(frame), SEND_TIMEOUT) for c in connections),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            log.warning("push %s not sent to a phone: %r", transaction.sp_ticket_id, failure)
        return len(results) - len(failures)

    # -- answers from phones ----------------------------------------------------------------

    async def approve(
        self, device: Device, txn_id: object, choice: object, signature: object
    ) -> dict[str, Any]:
        """Apply an approval from ``device`` and return the ``result`` frame for it."""
        transaction, refusal = await self._answerable(device, txn_id)
        if transaction is None:
            return refusal

        if transaction.code and not _same_code(choice, transaction.code):
            await self._finish(transaction, State.DENIED, "wrong_code")
            return _result(transaction, ok=False, reason="wrong_code")

        try:
            der = await asyncio.to_thread(
                verify_signature, device.public_key(), signature, transaction.challenge
            )
        except InvalidSignature:
            await self._finish(transaction, State.FAILED, "bad_signature")
            return _result(transaction, ok=False, reason="bad_signature")

        # The transaction may have ended while the signature was checked in the worker thread.
        approved = await self._finish(
            transaction, State.APPROVED, "approved", device=device, signature=der
        )
        if not approved:
            return _late_result(transaction, self.clock())
        return _result(transaction, ok=True, reason="approved")

    async def deny(self, device: Device, txn_id: object) -> dict[str, Any]:
        """Apply a refusal from ``device`` and return the ``result`` frame for it."""
        transaction, refusal = await self._answerable(device, txn_id)
        if transaction is None:
            return refusal
        if not await self._finish(transaction, State.DENIED, "denied"):
            return _late_result(transaction, self.clock())
        return _result(transaction, ok=True, reason="denied")

    async def scan(self, device: Device, payload: object) -> dict[str, Any]:
        """Return the prompt for a scanned QR payload (an sp_ticket), or an ``error`` frame."""
        try:
            scanned = ticket_codec.decode(payload)
        except ticket_codec.TicketError:
            return error_frame("invalid_qr", "無法辨識此 QR Code，請確認是登入頁面上的 QR Code。")
        transaction = await self.transactions.get(scanned.sp_ticket_id)
        if transaction is None or not hmac.compare_digest(
            transaction.sp_ticket.encode(), str(payload).encode()
        ):
            return error_frame("unknown_qr", "找不到此 QR Code 的登入請求，可能已失效。")
        if transaction.id_number != device.id_number:
            log.warning(
                "device %s scanned a ticket of another ID number (%s)",
                device.device_id,
                idnumber.mask(transaction.id_number),
            )
            return error_frame("wrong_identity", "此 QR Code 不屬於本裝置綁定的身分，無法登入。")
        if transaction.expired(self.clock()):
            return error_frame("expired", "此 QR Code 已逾時，請在登入頁面重新產生。")
        if transaction.state is not State.PENDING:
            return error_frame("already_answered", "此登入請求已完成，無法再次使用。")
        return self.prompt(transaction)

    async def _answerable(
        self, device: Device, txn_id: object
    ) -> tuple[Transaction, dict[str, Any]] | tuple[None, dict[str, Any]]:
        transaction = await self.transactions.get(txn_id) if isinstance(txn_id, str) else None
        # A transaction of another ID number is reported as not found, to reveal nothing.
        if transaction is None or transaction.id_number != device.id_number:
            return None, {"type": "result", "txn": txn_id, "ok": False, "reason": "not_found"}
        late = _late_result(transaction, self.clock())
        if late["reason"]:
            return None, late
        return transaction, {}

    async def _finish(
        self,
        transaction: Transaction,
        state: State,
        reason: str,
        *,
        device: Device | None = None,
        signature: bytes = b"",
    ) -> bool:
        signed_response = certificate = ""
        if device is not None:
            signed_response = base64.b64encode(signature).decode("ascii")
            certificate = base64.b64encode(device.certificate_der).decode("ascii")
        finished = await self.transactions.finish(
            transaction,
            state,
            reason,
            self.clock(),
            signed_response=signed_response,
            certificate=certificate,
        )
        if not finished:
            return False
        log.info(
            "transaction %s for %s finished: %s (%s)",
            transaction.transaction_id,
            idnumber.mask(transaction.id_number),
            state,
            reason,
        )
        self._announce(transaction.sp_ticket_id)
        if self.relay is not None:
            try:
                await self.relay.publish_result(transaction.sp_ticket_id)
            except RedisError as exc:  # the poll finds the result anyway, only later
                log.error("result of %s not announced: %s", transaction.sp_ticket_id, exc)
        return True

    def _announce(self, sp_ticket_id: str) -> None:
        """Tell this node's verifier that a transaction finished (here or on another node)."""
        if self._on_result is not None:
            try:
                self._on_result(sp_ticket_id)
            except Exception:
                log.exception("on_result failed for transaction %s", sp_ticket_id)


def hash_id_number(id_number: str) -> str:
    """Return ``hashed_id_num``: SHA-256 hex of the ID number."""
    # NOTE: the hash MOI uses for hashed_id_num is unconfirmed.
    return hashlib.sha256(id_number.encode("ascii")).hexdigest()


def number_matching(hint: str) -> tuple[str, list[str]]:
    """Return the verification code in ``hint`` and the shuffled choices ("" and [] if none)."""
    match = CODE_PATTERN.search(hint)
    if match is None:
        return "", []
    code = match.group(1)
    decoys: set[str] = set()
    while len(decoys) < DECOY_COUNT:
        decoy = f"{_random.randrange(100):02d}"
        if decoy != code:
            decoys.add(decoy)
    choices = [code, *decoys]
    _random.shuffle(choices)
    return code, choices


def _same_code(choice: object, code: str) -> bool:
    return isinstance(choice, str) and hmac.compare_digest(choice.encode(), code.encode())


def error_frame(reason: str, message: str) -> dict[str, Any]:
    return {"type": "error", "reason": reason, "message": message}


def _result(transaction: Transaction, *, ok: bool, reason: str) -> dict[str, Any]:
    return {"type": "result", "txn": transaction.sp_ticket_id, "ok": ok, "reason": reason}


def _late_result(transaction: Transaction, now: float) -> dict[str, Any]:
    """Return the refusal for an answer that comes too late, with an empty reason if in time."""
    if transaction.state is not State.PENDING:
        return _result(transaction, ok=False, reason="already_answered")
    if transaction.expired(now):
        return _result(transaction, ok=False, reason="expired")
    return _result(transaction, ok=False, reason="")
