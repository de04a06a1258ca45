"""Routes of the password method: the policy text and the forced password change."""

from __future__ import annotations

from aiohttp import web

from server.errors import InvalidInput, UnknownMethod
from server.methods.password import PasswordMethod
from server.web.api import bound_session, check_origin, read_json, render
from server.web.keys import METHODS


def password_method(request: web.Request) -> PasswordMethod:
    method = request.app[METHODS].get("password")
    if not isinstance(method, PasswordMethod):
        raise UnknownMethod()
    return method


async def get_policy(request: web.Request) -> web.Response:
    """Return the password rules, so the page can show them before the user types."""
    method = password_method(request)
    policy, settings = method.policy, method.settings
    return web.json_response(
        {
            "rule": policy.describe(),
            "min_length": policy.min_length,
            "max_length": policy.max_length,
            "min_classes": policy.min_classes,
            "max_age_days": settings.max_age_days,
            "max_failures": settings.max_failures,
            "lockout_minutes": settings.lockout_seconds // 60,
        }
    )


async def change_password(request: web.Request) -> web.Response:
    """Set the new password of a login that must change it; return the approved login."""
    check_origin(request, required=False)
    body = await read_json(request)
    new_password = body.get("new_password")
    if not isinstance(new_password, str) or not new_password:
        raise InvalidInput("請輸入新密碼。")
    session, binding = await bound_session(request)
    ended = await password_method(request).change_password(session, new_password)
    return web.json_response(render(request, ended, binding))


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/password/policy", get_policy)
    app.router.add_post("/api/logins/{login_id}/password", change_password)
