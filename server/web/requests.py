"""Request helpers shared by every route: client address, binding cookie, Origin, JSON body."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from aiohttp import web

from server.audit import scrub
from server.errors import CsrfRejected, InvalidInput, OriginRejected
from server.logins import ClientInfo
from server.sessions.model import binding_hash
from server.web.keys import SETTINGS

log = logging.getLogger(__name__)

# Set when a login starts (HttpOnly); only its hash is stored with the login.
BINDING_COOKIE = "ebas_login_binding"
MAX_BODY_BYTES = 16 * 1024  # no login request needs more
USER_AGENT_MAX = 300  # audit lines keep the user agent short


def client_info(request: web.Request) -> ClientInfo:
    """Return the client address (X-Forwarded-For only from a trusted proxy) and user agent."""
    address = request.remote or "-"
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded and address in request.app[SETTINGS].server.trusted_proxies:
        address = forwarded.split(",")[-1].strip() or address
    return ClientInfo(address, request.headers.get("User-Agent", "")[:USER_AGENT_MAX])


def request_binding(request: web.Request) -> str | None:
    secret = request.cookies.get(BINDING_COOKIE)
    return binding_hash(secret) if secret else None


def check_origin(request: web.Request, *, required: bool) -> None:
    """Reject a request whose Origin is not this site (browsers send it on POST and WebSocket)."""
    origin = request.headers.get("Origin")
    expected = request.app[SETTINGS].server.origin
    if origin is None:
        if required:
            raise OriginRejected()
        return
    if not hmac.compare_digest(origin.encode(), expected.encode()):
        log.warning("%s %s: origin %r rejected", request.method, request.path, scrub(origin[:100]))
        raise OriginRejected()


async def read_json(request: web.Request) -> dict[str, Any]:
    """Return the JSON object body; requiring a JSON content type keeps plain forms out."""
    if request.content_type != "application/json":
        raise CsrfRejected("請以 JSON 格式送出請求。")
    # The error middleware answers 413 as {"error": "payload_too_large", "message": zh-TW}.
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(MAX_BODY_BYTES, request.content_length)
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(MAX_BODY_BYTES, len(raw))
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput("請求內容不是有效的 JSON。") from None
    except RecursionError:
        # Deeply nested arrays fit in MAX_BODY_BYTES and exhaust the parser's stack.
        raise InvalidInput("請求內容的巢狀層數過多。") from None
    if not isinstance(body, dict):
        raise InvalidInput("請求內容必須是 JSON 物件。")
    try:
        # A "\ud800" escape decodes to a lone surrogate. SQLite, argon2 and the logs cannot
        # encode it, so the request is rejected here instead of failing inside a login method.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("請求內容含有無效的字元。") from None
    return body
