"""HTTP layer of the embedded authority: the SP API, device enrollment and the phone channel.

Routes inside the sub-application (the main app mounts it under ``/twfido``):

- ``POST /moise/sp/{getSpTicket,requestAthOrSignPush,getAthOrSignResult,checkDeviceStatus}``
- ``POST /app/enroll`` ``{"id_number", "public_key" (PEM), "device_name"}`` →
  ``{"device_id", "certificate" (PEM)}``
- ``GET /app/channel``: the phone WebSocket, protocol in ``push.authority.channel``.

Enrollment proves no identity, so by default only loopback clients may enroll
(``allow_enroll_from="loopback"``). The value ``"any"`` opens it to every client, for demos on a
closed network, and ``"none"`` closes it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from redis.exceptions import RedisError

from push import checksum
from push.authority.channel import HELLO_TIMEOUT, MAX_FRAME_BYTES, PhoneChannel
from push.authority.service import Authority, SharedState, error_frame
from push.authority.spapi import INTERFACES, SpApi
from server.errors import EnrollmentForbidden, InvalidInput, LoginError, StoreUnavailable

log = logging.getLogger(__name__)

MAX_SP_BODY_BYTES = 16 * 1024  # an SP API request with 1024 chars of sign_data is under 2 KiB
MAX_ENROLL_BODY_BYTES = 8 * 1024  # a PEM P-256 key and a name
HEARTBEAT = 30.0  # seconds between WebSocket pings, so dead phones drop out of the hub
ENROLL_POLICIES = ("loopback", "any", "none")

AUTHORITY = web.AppKey("authority", Authority)
SP_API = web.AppKey("sp_api", SpApi)
ENROLL_POLICY = web.AppKey("enroll_policy", str)


def create_authority_app(
    *,
    data_dir: Path,
    sp_service_id: str,
    aes_key: bytes,
    sp_name: str = "全國主計網(eBAS)",
    on_result: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.time,
    allow_enroll_from: str = "loopback",
    shared: SharedState | None = None,
) -> web.Application:
    """Build the embedded TW FidO authority as an aiohttp sub-application."""
    if len(aes_key) != checksum.KEY_BYTES:
        raise ValueError(f"aes_key must be {checksum.KEY_BYTES} bytes")
    if allow_enroll_from not in ENROLL_POLICIES:
        raise ValueError(f"allow_enroll_from must be one of {', '.join(ENROLL_POLICIES)}")

    authority = Authority(
        data_dir=data_dir,
        sp_service_id=sp_service_id,
        sp_name=sp_name,
        on_result=on_result,
        clock=clock,
        shared=shared,
    )
    app = web.Application(client_max_size=MAX_SP_BODY_BYTES)
    app[AUTHORITY] = authority
    app[SP_API] = SpApi(authority, aes_key)
    app[ENROLL_POLICY] = allow_enroll_from
    app.cleanup_ctx.append(_start_authority)

    for name in INTERFACES:
        app.router.add_post(f"/moise/sp/{name}", _sp_handler(name))
    app.router.add_post("/app/enroll", _enroll)
    app.router.add_get("/app/channel", _channel)
    return app


async def _start_authority(app: web.Application) -> AsyncIterator[None]:
    await app[AUTHORITY].start()
    yield
    await app[AUTHORITY].close()


def _sp_handler(name: str) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        if not _is_same_host(request):
            # The SP is this server itself; nobody else may call its authority.
            log.warning("SP API %s call from %s rejected", name, request.remote)
            return web.json_response(
                {"error": "forbidden", "message": "此介面僅供本機登入服務使用。"},
                status=403,
                dumps=_dumps,
            )
        try:
            body: object = json.loads(await request.read())
        except (ValueError, RecursionError):
            body = None
        try:
            status, answer = await request.app[SP_API].handle(name, body)
        except RedisError as exc:
            # The verifier sees an unreachable authority; nothing was half-written.
            log.error("SP API %s: Redis failed: %s: %s", name, type(exc).__name__, exc)
            return web.json_response({"error_code": "SYS_ERR"}, status=503, dumps=_dumps)
        return web.json_response(answer, status=status, dumps=_dumps)

    return handle


async def _enroll(request: web.Request) -> web.Response:
    try:
        _check_enroll_allowed(request)
        if request.content_length is not None and request.content_length > MAX_ENROLL_BODY_BYTES:
            raise InvalidInput("請求內容過大。")
        try:
            body = json.loads(await request.read())
        except (ValueError, RecursionError):
            raise InvalidInput("請求內容不是有效的 JSON。") from None
        if not isinstance(body, dict):
            raise InvalidInput("請求內容必須是 JSON 物件。")

        id_number = body.get("id_number")
        public_key = body.get("public_key")
        device_name = body.get("device_name")
        if not isinstance(id_number, str) or not isinstance(public_key, str):
            raise InvalidInput("缺少 id_number 或 public_key 欄位。")
        try:
            device = await request.app[AUTHORITY].enroll(
                id_number, public_key, device_name if isinstance(device_name, str) else ""
            )
        except RedisError as exc:
            log.error("enrollment: Redis failed: %s: %s", type(exc).__name__, exc)
            raise StoreUnavailable() from exc
    except LoginError as exc:
        return web.json_response(exc.to_json(), status=exc.status, dumps=_dumps)

    certificate = x509.load_der_x509_certificate(device.certificate_der)
    return web.json_response(
        {
            "device_id": device.device_id,
            "certificate": certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        },
        status=201,
        dumps=_dumps,
    )


def _check_enroll_allowed(request: web.Request) -> None:
    policy = request.app[ENROLL_POLICY]
    if policy == "any":
        return
    if policy == "loopback" and _is_same_host(request, loopback_only=True):
        return
    log.warning("enrollment from %s rejected by policy %s", request.remote, policy)
    raise EnrollmentForbidden()


FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def _is_same_host(request: web.Request, *, loopback_only: bool = False) -> bool:
    """Return whether the caller is on this machine and no proxy relayed the request.

    A proxy on the same host makes every client look local, so any forwarding header counts
    as a remote caller. Unless ``loopback_only``, the server's own address also counts (a node
    bound to a non-loopback address calls its own authority there).
    """
    if any(name in request.headers for name in FORWARDING_HEADERS):
        return False
    try:
        remote = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    if remote.is_loopback:
        return True
    if loopback_only or request.transport is None:
        return False
    local = request.transport.get_extra_info("sockname")
    return bool(local) and str(local[0]) == str(remote)


async def _channel(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, heartbeat=HEARTBEAT)
    await ws.prepare(request)

    async def send(frame: dict[str, Any]) -> None:
        await ws.send_str(_dumps(frame))

    channel = PhoneChannel(request.app[AUTHORITY], send)
    try:
        await send(channel.challenge())
        await _serve_channel(ws, channel)
    finally:
        await channel.close()
        if not ws.closed:
            await ws.close()
    return ws


async def _serve_channel(ws: web.WebSocketResponse, channel: PhoneChannel) -> None:
    while True:
        timeout = None if channel.authenticated else HELLO_TIMEOUT
        try:
            message = await ws.receive(timeout=timeout)
        except TimeoutError:
            await ws.send_str(_dumps(error_frame("hello_timeout", "裝置驗證逾時，連線已關閉。")))
            await ws.close(code=4001, message=b"unauthenticated")
            return

        if message.type == WSMsgType.TEXT:
            if not await channel.handle(message.data):
                await ws.close(code=4001 if not channel.authenticated else 4008, message=b"closed")
                return
        elif message.type == WSMsgType.BINARY:
            await ws.send_str(_dumps(error_frame("bad_frame", "只接受 JSON 文字訊息。")))
        else:  # CLOSE, CLOSING, CLOSED or ERROR (a frame over MAX_FRAME_BYTES ends here too)
            return


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
