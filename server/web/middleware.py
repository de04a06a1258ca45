"""Middlewares: LoginError → JSON (or a zh-TW page), security headers on every response."""

from __future__ import annotations

import html
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from server.errors import LoginError

log = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: with no-referrer Chromium sends "Origin: null" on form posts,
    # which the Origin check of /ebas/complete must reject.
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin-allow-popups",
}


# aiohttp's HTTP errors (unknown path, wrong method, body over client_max_size) → key, zh-TW.
HTTP_ERRORS = {
    404: ("not_found", "找不到此資源。"),
    405: ("method_not_allowed", "不支援此請求方法。"),
    413: ("payload_too_large", "請求內容過大。"),
}
HTTP_ERROR_DEFAULT = ("http_error", "請求無法處理。")


def _wants_json(request: web.Request) -> bool:
    # A JSON request (e.g. the card registration under /ebas) gets its error as JSON too.
    return request.path.startswith(("/api/", "/twfido/", "/.well-known/")) or (
        request.content_type == "application/json"
    )


def error_page(title: str, message: str, status: int) -> web.Response:
    body = f"""<!doctype html>
<html lang="zh-Hant-TW"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} - 全國主計網 eBAS</title>
<link rel="stylesheet" href="/static/ebas.css"></head>
<body><main class="card"><h1>{html.escape(title)}</h1><p role="alert">{html.escape(message)}</p>
<p><a class="button" href="/">回到登入頁</a></p></main></body></html>"""
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except LoginError as exc:
        if exc.status >= 500:
            log.error("%s %s failed: %s", request.method, request.path, exc.key)
        headers = {}
        retry_after = exc.details.get("retry_after")
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if _wants_json(request):
            return web.json_response(exc.to_json(), status=exc.status, headers=headers)
        return error_page("無法完成登入", exc.text, exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        key, message = HTTP_ERRORS.get(exc.status, HTTP_ERROR_DEFAULT)
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        if _wants_json(request):
            return web.json_response(
                {"error": key, "message": message}, status=exc.status, headers=headers
            )
        # aiohttp's own error responses are English plain text, so pages get the zh-TW page.
        response = error_page("無法處理此請求", message, exc.status)
        response.headers.update(headers)
        return response
    except Exception:
        log.exception("%s %s: unexpected error", request.method, request.path)
        if _wants_json(request):
            return web.json_response(LoginError().to_json(), status=500)
        return error_page("系統發生錯誤", LoginError.message, 500)


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if response.prepared:  # a WebSocket response is already on the wire
        return response
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith(("/api/", "/ebas/")):
        response.headers.setdefault("Cache-Control", "no-store")
    return response
