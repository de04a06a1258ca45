"""Phone simulator: plays the 行動自然人憑證 app against the embedded authority.

``PhoneSimulator`` enrolls a device key for an ID number, keeps the phone channel open
(protocol in ``push.authority.channel``), receives pushes, approves or denies them and scans
QR payloads. The CLI (``ebas-login phone`` or ``python -m push.phone``) wraps it for demos and
scripts: it prints one JSON line per event and prompts only with ``--interactive``.

Keys are kept per ID number in ``state_dir`` (file mode 0600), so a later run reuses the device.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from push import ticket as ticket_codec

DEFAULT_SERVER = "http://127.0.0.1:8080"
DEFAULT_STATE_DIR = Path("~/.ebas-login-phone")
AUTHORITY_PATH = "/twfido"  # where the main app mounts the embedded authority
REPLY_TIMEOUT = 10.0  # seconds to wait for the server's reply to one frame
HTTP_TIMEOUT = 10.0  # seconds for the enrollment request
MAX_FRAME_BYTES = 64 * 1024  # the server's frames are a few KiB at most


class PhoneError(Exception):
    """The server rejected a request, or sent an error frame (``reason`` is its key)."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message


class PhoneSimulator:
    def __init__(self, base_url: str, id_number: str, state_dir: Path) -> None:
        self.base_url = base_url.rstrip("/")
        self.id_number = id_number.strip().upper()
        self.state_dir = state_dir.expanduser()
        self.device_id = ""
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._frames: list[dict[str, Any]] = []
        self._arrived = asyncio.Condition()
        self._closed = False
        self._load_state()

    @property
    def state_file(self) -> Path:
        return self.state_dir / f"{self.id_number}.json"

    @property
    def enrolled(self) -> bool:
        return bool(self.device_id) and self._key is not None

    async def enroll(self, device_name: str = "phone-simulator") -> dict[str, Any]:
        """Create a new device key, bind it to the ID number and save it; return the answer."""
        key = ec.generate_private_key(ec.SECP256R1())
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        body = {
            "id_number": self.id_number,
            "public_key": public_pem.decode("ascii"),
            "device_name": device_name,
        }
        url = self.base_url + AUTHORITY_PATH + "/app/enroll"
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(url, json=body) as response,
        ):
            answer = await response.json(content_type=None)
        if response.status != 201 or not isinstance(answer, dict):
            error = answer if isinstance(answer, dict) else {}
            raise PhoneError(
                str(error.get("error", f"http_{response.status}")), str(error.get("message", ""))
            )

        self._key = key
        self.device_id = str(answer["device_id"])
        await asyncio.to_thread(self._save_state, answer.get("certificate", ""))
        return answer

    async def connect(self) -> None:
        """Open the phone channel and authenticate with the device key."""
        if not self.enrolled:
            raise PhoneError("not_enrolled", "run enroll first")
        url = _websocket_url(self.base_url) + AUTHORITY_PATH + "/app/channel"
        self._frames.clear()
        self._closed = False
        self._ws = await connect(url, proxy=None, max_size=MAX_FRAME_BYTES)
        challenge = json.loads(await asyncio.wait_for(self._ws.recv(), REPLY_TIMEOUT))
        if challenge.get("type") != "challenge":
            raise PhoneError("protocol", f"expected a challenge, got {challenge.get('type')}")
        await self.send(
            {
                "type": "hello",
                "device_id": self.device_id,
                "signature": self.sign(base64.b64decode(challenge["nonce"])),
            }
        )
        self._reader = asyncio.create_task(self._read())
        reply = await self._wait_for(lambda f: f["type"] in ("ready", "error"), REPLY_TIMEOUT)
        if reply["type"] == "error":
            raise PhoneError(reply.get("reason", "error"), reply.get("message", ""))

    async def next_push(self, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """Wait for the next push prompt; raise ``TimeoutError`` when none comes in time."""
        return await self._wait_for(lambda f: f["type"] == "push", timeout)

    async def approve(self, push: dict[str, Any], choice: str | None = None) -> dict[str, Any]:
        """Approve a prompt with the chosen code and return the server's ``result`` frame."""
        if push.get("choices") and choice is None:
            raise ValueError("this push needs the verification code shown on the login page")
        signature = self.sign(base64.b64decode(push["challenge"]))
        frame = {"type": "approve", "txn": push["txn"], "choice": choice, "signature": signature}
        await self.send(frame)
        return await self._result(push["txn"])

    async def deny(self, push: dict[str, Any]) -> dict[str, Any]:
        """Deny a prompt and return the server's ``result`` frame."""
        await self.send({"type": "deny", "txn": push["txn"]})
        return await self._result(push["txn"])

    async def scan(self, payload: str) -> dict[str, Any]:
        """Send a scanned QR payload and return the prompt it opens; raise ``PhoneError``."""
        try:
            txn = ticket_codec.decode(payload).sp_ticket_id
        except ticket_codec.TicketError:
            txn = ""
        await self.send({"type": "scan", "payload": payload})
        reply = await self._wait_for(
            lambda f: f["type"] == "error" or (f["type"] == "push" and f.get("txn") == txn),
            REPLY_TIMEOUT,
        )
        if reply["type"] == "error":
            raise PhoneError(reply.get("reason", "error"), reply.get("message", ""))
        return reply

    async def send(self, frame: dict[str, Any]) -> None:
        if self._ws is None:
            raise PhoneError("not_connected", "call connect() first")
        await self._ws.send(json.dumps(frame, ensure_ascii=False))

    async def send_raw(self, text: str) -> None:
        """Send a text frame as is (tests use it for malformed frames)."""
        if self._ws is None:
            raise PhoneError("not_connected", "call connect() first")
        await self._ws.send(text)

    async def next_frame(self, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """Return the next frame of any type that no other wait has taken."""
        return await self._wait_for(lambda f: True, timeout)

    def sign(self, data: bytes) -> str:
        """Sign ``data`` with ECDSA-SHA256 and return base64 of the DER signature."""
        if self._key is None:
            raise PhoneError("not_enrolled", "run enroll first")
        return base64.b64encode(self._key.sign(data, ec.ECDSA(hashes.SHA256()))).decode("ascii")

    async def close(self) -> None:
        self._closed = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _result(self, txn: str) -> dict[str, Any]:
        reply = await self._wait_for(
            lambda f: f["type"] == "error" or (f["type"] == "result" and f.get("txn") == txn),
            REPLY_TIMEOUT,
        )
        if reply["type"] == "error":
            raise PhoneError(reply.get("reason", "error"), reply.get("message", ""))
        return reply

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for message in self._ws:
                frame = json.loads(message)
                if isinstance(frame, dict) and isinstance(frame.get("type"), str):
                    async with self._arrived:
                        self._frames.append(frame)
                        self._arrived.notify_all()
        except ConnectionClosed:
            pass
        finally:
            async with self._arrived:
                self._closed = True
                self._arrived.notify_all()

    async def _wait_for(
        self,
        match: Callable[[dict[str, Any]], bool],
        timeout: float,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        async def take() -> dict[str, Any]:
            async with self._arrived:
                while True:
                    for index, frame in enumerate(self._frames):
                        if match(frame):
                            return self._frames.pop(index)
                    if self._closed:
                        raise PhoneError("closed", "the server closed the channel")
                    await self._arrived.wait()

        return await asyncio.wait_for(take(), timeout)

    def _load_state(self) -> None:
        if not self.state_file.exists():
            return
        state = json.loads(self.state_file.read_text(encoding="utf-8"))
        if state.get("server") != self.base_url:
            return  # enrolled with another server, whose registry does not know this device
        key = serialization.load_pem_private_key(state["private_key"].encode(), password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            self._key = key
            self.device_id = state["device_id"]

    def _save_state(self, certificate: str) -> None:
        assert self._key is not None
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        private_pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        state = {
            "server": self.base_url,
            "device_id": self.device_id,
            "private_key": private_pem,
            "certificate": certificate,
        }
        temporary = self.state_file.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(state, handle)
        os.replace(temporary, self.state_file)


def _websocket_url(base_url: str) -> str:
    if base_url.startswith("https://"):
        return "wss://" + base_url[len("https://") :]
    if base_url.startswith("http://"):
        return "ws://" + base_url[len("http://") :]
    raise ValueError("the server URL must start with http:// or https://")


# -- command line ---------------------------------------------------------------------------


def _print(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, ensure_ascii=False), flush=True)


def decode_qr_image(path: Path) -> str:
    """Return the text of the QR code in a PNG (needs the test-only zxing-cpp and Pillow)."""
    try:
        import zxingcpp
        from PIL import Image
    except ImportError:
        raise PhoneError(
            "missing_decoder", "decoding an image needs zxing-cpp and pillow (pip install)"
        ) from None
    with Image.open(path) as image:
        results = zxingcpp.read_barcodes(image)
    texts = [r.text for r in results if r.format == zxingcpp.BarcodeFormat.QRCode]
    if not texts:
        raise PhoneError("no_qr_code", f"no QR code found in {path}")
    return texts[0]


async def _answer(
    phone: PhoneSimulator, push: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Approve or deny one prompt as the options (or the person, with --interactive) decide."""
    approve, code = args.approve, args.code
    if args.interactive:
        question = f"{push['hint']} 選項 {push['choices']}：輸入驗證碼核准，或輸入 n 拒絕："
        reply = (await asyncio.to_thread(input, question)).strip()
        approve, code = reply.lower() != "n", reply or None
    if not approve:
        return await phone.deny(push)
    if push.get("choices") and code is None:
        raise PhoneError("code_required", "this push uses number matching: pass --code NN")
    return await phone.approve(push, code if push.get("choices") else None)


async def _ensure_connected(phone: PhoneSimulator) -> None:
    """Connect, enrolling first when this ID number has no device for this server."""
    if not phone.enrolled:
        answer = await phone.enroll()
        _print("enrolled", device_id=answer["device_id"])
    try:
        await phone.connect()
    except PhoneError as exc:
        if exc.reason != "unknown_device":
            raise
        await phone.close()  # the server forgot the device (new data directory): enroll again
        answer = await phone.enroll()
        _print("enrolled", device_id=answer["device_id"])
        await phone.connect()


async def _run(args: argparse.Namespace) -> int:
    phone = PhoneSimulator(args.server, args.id, Path(args.state_dir))
    try:
        if args.command == "enroll":
            answer = await phone.enroll(args.device_name)
            _print("enrolled", device_id=answer["device_id"])
            return 0

        await _ensure_connected(phone)
        if args.command == "scan":
            payload = args.payload
            if args.image:
                payload = await asyncio.to_thread(decode_qr_image, Path(args.image))
            push = await phone.scan(payload)
            _print("push", txn=push["txn"], hint=push["hint"], choices=push["choices"])
            result = await _answer(phone, push, args)
            _print("result", **{k: result[k] for k in ("txn", "ok", "reason")})
            return 0 if result["ok"] else 1

        _print("listening", device_id=phone.device_id)
        all_ok = True
        for _ in range(args.count):
            push = await phone.next_push(args.timeout)
            _print("push", txn=push["txn"], hint=push["hint"], choices=push["choices"])
            result = await _answer(phone, push, args)
            _print("result", **{k: result[k] for k in ("txn", "ok", "reason")})
            all_ok = all_ok and bool(result["ok"])
        return 0 if all_ok else 1
    except TimeoutError:
        _print("timeout", message="no push arrived in time")
        return 1
    except (PhoneError, aiohttp.ClientError, OSError) as exc:
        _print("error", message=str(exc))
        return 1
    finally:
        await phone.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ebas-login phone",
        description="行動自然人憑證 App simulator for the embedded authority",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--id", required=True, help="national ID number the device is bound to")
    common.add_argument("--server", default=DEFAULT_SERVER, help="ebas-login base URL")
    common.add_argument(
        "--state-dir", default=str(DEFAULT_STATE_DIR), help="folder for device keys (mode 0600)"
    )
    answer = argparse.ArgumentParser(add_help=False)
    decision = answer.add_mutually_exclusive_group()
    decision.add_argument("--approve", action="store_true", default=True, help="approve (default)")
    decision.add_argument("--deny", dest="approve", action="store_false", help="deny")
    decision.add_argument("--interactive", action="store_true", help="ask for each push")
    answer.add_argument("--code", help="two-digit verification code shown on the login page")

    commands = parser.add_subparsers(dest="command", required=True)
    enroll = commands.add_parser("enroll", parents=[common], help="bind a new device key")
    enroll.add_argument("--device-name", default="phone-simulator", help="device label")

    listen = commands.add_parser("listen", parents=[common, answer], help="answer pushes")
    listen.add_argument(
        "--count", type=int, default=1, help="number of pushes to approve or deny before exiting"
    )
    listen.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for each push"
    )

    scan = commands.add_parser("scan", parents=[common, answer], help="scan a QR code")
    source = scan.add_mutually_exclusive_group(required=True)
    source.add_argument("--payload", help="the QR code's text (the sp_ticket)")
    source.add_argument("--image", help="PNG file with the QR code (needs zxing-cpp)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
