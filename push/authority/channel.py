"""The phone app channel: the frames one connected phone and the authority exchange.

Protocol (JSON text frames over the WebSocket ``GET /twfido/app/channel``):

1. server → phone ``{"type": "challenge", "nonce"}``; the nonce is base64 of random bytes.
2. phone → server ``{"type": "hello", "device_id", "signature"}``: ECDSA-SHA256 over the
   decoded nonce bytes with the enrolled device key, base64 of DER or of raw r || s (64 bytes,
   what WebCrypto produces). A channel that does not authenticate within ``HELLO_TIMEOUT``
   seconds, or sends anything else first, is closed. After a good hello the server sends
   ``{"type": "ready", "device_id"}`` and the prompts of pushes still pending for the ID number.
3. server → phone ``{"type": "push", "txn", "op_code", "hint", "sp_name", "expires_at",
   "expires_in", "choices", "challenge"}``: ``choices`` holds three two-digit codes (the one the
   login page shows, shuffled with two decoys) or is empty when the hint has no code; the
   ``challenge`` is base64 of the bytes to sign.
4. phone → server ``{"type": "approve", "txn", "choice", "signature"}`` (signature over the
   decoded challenge bytes, DER or raw as above) or ``{"type": "deny", "txn"}``.
5. phone → server ``{"type": "scan", "payload"}`` with the QR content (the sp_ticket); the
   server replies with the ``push`` prompt of that transaction, or an ``error`` frame when the
   ticket is unknown, expired, answered, or belongs to another ID number.
6. server → phone ``{"type": "result", "txn", "ok", "reason"}`` after each approve or deny.
   ``ok`` tells whether the answer was applied: reasons ``approved`` and ``denied`` (ok), and
   ``wrong_code``, ``bad_signature``, ``expired``, ``already_answered``, ``not_found`` (not ok).
   A wrong code counts as a denial and a bad signature fails the transaction. Answers after
   the expiry or after a final answer change nothing.
7. server → phone ``{"type": "error", "reason", "message"}`` for a bad frame; the channel
   stays open, except after a failed hello or past the rate limit.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.exceptions import InvalidSignature

from push.authority.devices import Device, verify_signature
from push.authority.service import PUSH_OP_MODE, Authority, error_frame
from server import idnumber

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 16 * 1024  # a scan frame with a ticket is about 1 KiB; bigger frames are abuse
HELLO_TIMEOUT = 15.0  # seconds a new channel has to authenticate
RATE_WINDOW = 10.0  # seconds over which incoming frames are counted
MAX_FRAMES_PER_WINDOW = 40  # a person taps a few times a second at most; a flood is closed
NONCE_BYTES = 32
MAX_DEVICE_ID_CHARS = 64

Sender = Callable[[dict[str, Any]], Awaitable[None]]


class PhoneChannel:
    """One phone's side of the protocol; the HTTP layer feeds it text frames.

    ``handle`` returns False when the connection must be closed.
    """

    def __init__(self, authority: Authority, send: Sender) -> None:
        self._authority = authority
        self._send = send
        self._nonce = secrets.token_bytes(NONCE_BYTES)
        self._frame_times: collections.deque[float] = collections.deque()
        self.device: Device | None = None

    @property
    def authenticated(self) -> bool:
        return self.device is not None

    def challenge(self) -> dict[str, Any]:
        return {"type": "challenge", "nonce": base64.b64encode(self._nonce).decode("ascii")}

    async def send(self, frame: dict[str, Any]) -> None:
        await self._send(frame)

    async def handle(self, text: str) -> bool:
        """Process one text frame; return False when the channel must be closed."""
        if not self._within_rate():
            await self._send(error_frame("rate_limited", "訊息過於頻繁，連線已關閉。"))
            return False
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):
            await self._send(error_frame("bad_json", "訊息不是有效的 JSON。"))
            return True
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self._send(error_frame("bad_frame", "訊息缺少 type 欄位。"))
            return True

        if self.device is None:
            return await self._hello(frame)
        return await self._dispatch(self.device, frame)

    async def close(self) -> None:
        """Detach from the hub (and the other nodes' routing); call once when it ends."""
        if self.device is not None:
            await self._authority.detach(self, self.device)

    async def _hello(self, frame: dict[str, Any]) -> bool:
        if frame["type"] != "hello":
            await self._send(error_frame("unauthenticated", "請先完成裝置驗證（hello）。"))
            return False
        device_id = frame.get("device_id")
        device = None
        if isinstance(device_id, str) and 0 < len(device_id) <= MAX_DEVICE_ID_CHARS:
            device = await self._authority.registry.get(device_id)
        if device is None:
            await self._send(error_frame("unknown_device", "找不到此裝置，請重新綁定。"))
            return False
        try:
            await _verify(device, frame.get("signature"), self._nonce)
        except InvalidSignature:
            log.warning("phone channel hello with a bad signature for device %s", device_id)
            await self._send(error_frame("bad_signature", "裝置簽章驗證失敗。"))
            return False

        self.device = device
        await self._authority.attach(self, device)
        log.info(
            "phone channel open for device %s (%s)", device_id, idnumber.mask(device.id_number)
        )
        await self._send({"type": "ready", "device_id": device.device_id})
        for transaction in await self._authority.transactions.pending_for(
            device.id_number, self._authority.clock()
        ):
            if transaction.op_mode == PUSH_OP_MODE:
                await self._send(self._authority.prompt(transaction))
        return True

    async def _dispatch(self, device: Device, frame: dict[str, Any]) -> bool:
        kind = frame["type"]
        if kind == "approve":
            await self._send(
                await self._authority.approve(
                    device, frame.get("txn"), frame.get("choice"), frame.get("signature")
                )
            )
        elif kind == "deny":
            await self._send(await self._authority.deny(device, frame.get("txn")))
        elif kind == "scan":
            await self._send(await self._authority.scan(device, frame.get("payload")))
        elif kind == "ping":
            await self._send({"type": "pong"})
        else:
            await self._send(error_frame("unknown_type", f"不支援的訊息類型：{kind[:32]}"))
        return True

    def _within_rate(self) -> bool:
        now = time.monotonic()
        while self._frame_times and now - self._frame_times[0] > RATE_WINDOW:
            self._frame_times.popleft()
        self._frame_times.append(now)
        return len(self._frame_times) <= MAX_FRAMES_PER_WINDOW


async def _verify(device: Device, signature: object, data: bytes) -> None:
    await asyncio.to_thread(verify_signature, device.public_key(), signature, data)
