"""The browser API: /api/logins and its live events. Handlers parse, call the core, render."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import WSMsgType, web

from qr import render_svg
from server.errors import LoginNotFound, RateLimited, UnknownMethod, WrongState
from server.logins import Logins
from server.methods.base import LoginMethod, StartRequest
from server.methods.mobile import MobileMethod
from server.sessions.model import LoginSession, State, binding_hash, new_binding_secret
from server.web.keys import ASSERTIONS, LOGINS, METHODS, SETTINGS, STORE
from server.web.requests import (
    BINDING_COOKIE,
    check_origin,
    client_info,
    read_json,
    request_binding,
)

log = logging.getLogger(__name__)

BINDING_COOKIE_MAX_AGE = 12 * 3600  # one working day; each login checks it anyway
WS_HEARTBEAT = 20.0  # seconds; keeps proxies from closing an idle socket
WS_MAX_MESSAGE = 1024  # the browser sends nothing meaningful on the events socket
COMPLETE_URL = "/ebas/complete"


def render(request: web.Request, session: LoginSession, binding: str) -> dict[str, Any]:
    """Return the public view, with a fresh assertion once approved."""
    view = request.app[LOGINS].public_view(session)
    if session.state is State.APPROVED and session.identity is not None:
        view["assertion"] = request.app[ASSERTIONS].mint(
            session.identity, login_id=session.id, binding=binding
        )
        view["complete_url"] = COMPLETE_URL
    return view


async def start_login(request: web.Request) -> web.Response:
    check_origin(request, required=False)
    body = await read_json(request)
    method = request.app[METHODS].get(str(body.get("method", "")))
    if method is None:
        raise UnknownMethod()

    settings = request.app[SETTINGS].server
    client = client_info(request)
    count, resets_in = await request.app[STORE].hit(
        f"starts:{client.address}", settings.start_window
    )
    if count > settings.start_limit:
        raise RateLimited(max(1, int(resets_in + 0.999)))

    secret = request.cookies.get(BINDING_COOKIE) or new_binding_secret()
    binding = binding_hash(secret)
    session = await method.start(StartRequest(body=body, binding=binding, client=client))

    response = web.json_response(render(request, session, binding), status=201)
    response.set_cookie(
        BINDING_COOKIE,
        secret,
        max_age=BINDING_COOKIE_MAX_AGE,
        httponly=True,
        samesite="Strict",
        secure=request.app[SETTINGS].server.secure_cookies,
        path="/",
    )
    return response


async def bound_session(request: web.Request) -> tuple[LoginSession, str]:
    binding = request_binding(request)
    session = await request.app[LOGINS].get_bound(request.match_info["login_id"], binding)
    assert binding is not None
    return session, binding


async def get_login(request: web.Request) -> web.Response:
    session, binding = await bound_session(request)
    return web.json_response(render(request, session, binding))


async def cancel_login(request: web.Request) -> web.Response:
    check_origin(request, required=False)
    session, binding = await bound_session(request)
    if session.terminal:
        raise WrongState()
    ended = await request.app[LOGINS].end(session.id, State.CANCELLED, reason="cancelled")
    if ended is None:
        raise WrongState()
    await method_of(request, ended).cancelled(ended)
    return web.json_response(render(request, ended, binding))


async def start_qr(request: web.Request) -> web.Response:
    check_origin(request, required=False)
    session, binding = await bound_session(request)
    method = method_of(request, session)
    if not isinstance(method, MobileMethod):
        raise WrongState("此登入方式不提供 QR Code。")
    updated = await method.start_qr(session)
    return web.json_response(render(request, updated, binding))


async def qr_svg(request: web.Request) -> web.Response:
    session, _ = await bound_session(request)
    payload = session.data.get("qr_payload")
    if session.state is not State.PENDING or not payload:
        raise LoginNotFound("此登入作業沒有可用的 QR Code。")
    svg = await asyncio.to_thread(render_svg, payload)
    return web.Response(
        text=svg, content_type="image/svg+xml", headers={"Cache-Control": "no-store"}
    )


def method_of(request: web.Request, session: LoginSession) -> LoginMethod:
    return request.app[METHODS][session.method]


async def login_events(request: web.Request) -> web.StreamResponse:
    """Send the state now and every change after it; close after a terminal state."""
    check_origin(request, required=True)
    session, binding = await bound_session(request)
    logins: Logins = request.app[LOGINS]

    ws = web.WebSocketResponse(heartbeat=WS_HEARTBEAT, max_msg_size=WS_MAX_MESSAGE)
    await ws.prepare(request)
    reader = asyncio.create_task(_drain_client(ws))
    try:
        async with request.app[STORE].watch(session.id) as events:
            # Read again after subscribing, so no change falls between the read and the watch.
            session = await logins.expire_if_due(
                await request.app[STORE].get(session.id) or session
            )
            await ws.send_json({"type": "state", **render(request, session, binding)})
            sent = session.version
            while not session.terminal and not reader.done():
                timeout = max(0.0, session.expires_at - logins.clock()) + 0.05
                next_event = asyncio.ensure_future(events.get())
                done, _ = await asyncio.wait(
                    {next_event, reader}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if next_event in done:
                    session = next_event.result()
                else:
                    next_event.cancel()
                    if reader.done():
                        break
                    session = await logins.expire_if_due(session)
                    if session.terminal:
                        await method_of(request, session).cancelled(session)
                if session.version > sent:
                    await ws.send_json({"type": "state", **render(request, session, binding)})
                    sent = session.version
    except ConnectionResetError:
        # The browser went away between two events; its reconnect or polling takes over.
        log.info("login %s: events socket closed by the browser", session.id)
    finally:
        reader.cancel()
        if not ws.closed:
            await ws.close()
    return ws


async def _drain_client(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) client frames, so pings, pongs and the close handshake are handled."""
    async for message in ws:
        if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break


def setup_api_routes(app: web.Application) -> None:
    app.router.add_post("/api/logins", start_login)
    app.router.add_get("/api/logins/{login_id}", get_login)
    app.router.add_delete("/api/logins/{login_id}", cancel_login)
    app.router.add_get("/api/logins/{login_id}/events", login_events)
    app.router.add_post("/api/logins/{login_id}/qr", start_qr)
    app.router.add_get("/api/logins/{login_id}/qr.svg", qr_svg)
