"""eBAS side of a login: complete it with the assertion, then the portal or the default site.

``POST /ebas/complete`` verifies the login assertion, matches the national ID number to an eBAS
account and either opens an eBAS portal session or sends the person to the default site with
「eBAS無此人員帳號」. Every outcome, including a rejected assertion, goes to the audit log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from server.accounts import TAIWAN_TIME, Account, parse_time
from server.audit import scrub
from server.errors import (
    BindingMismatch,
    CsrfRejected,
    InvalidAssertion,
    InvalidInput,
    LoginError,
)
from server.sessions.model import binding_hash
from server.web.keys import ACCOUNTS, ASSERTIONS, AUDIT, METHODS, SETTINGS, STORE
from server.web.pages import LOGIN_PAGE, Html, error_response, html_response, join, tag
from server.web.requests import BINDING_COOKIE, client_info

log = logging.getLogger(__name__)

COMPLETE_PATH = "/ebas/complete"
PORTAL_PATH = "/ebas/portal"
DEFAULT_SITE_PATH = "/ebas/default"
LOGOUT_PATH = "/ebas/logout"
# The card method registers this page (server/web/methods/card.py) when it is enabled.
CARD_REGISTER_PATH = "/ebas/card"

SESSION_COOKIE = "ebas_session"
FLASH_COOKIE = "ebas_flash"
COOKIE_PATH = "/ebas"
SESSION_ID_BYTES = 32  # 256-bit random portal session id
SESSION_KEY_PREFIX = "ebas_session:"
# The redirect to the default site follows at once; a minute also covers a slow reload.
FLASH_MAX_AGE = 60
FLASH_OUTCOMES = ("no_account", "inactive")
# A login may be completed once. The claim outlives any assertion minted for it: the longest
# login (a 600 s push window) plus the 600 s a finished login stays readable in the store.
COMPLETION_CLAIM_SECONDS = 1800
# An ES256 assertion is well under 1 KB; a longer field is not one of ours.
MAX_ASSERTION_LENGTH = 4096

# The portal's 登入方式 row uses the names of the login page's tabs.
METHOD_LABELS = {
    "mobile": "行動自然人憑證",
    "card": "自然人憑證",
    "nhi": "健保卡",
    "password": "帳號密碼",
}
BASIC_SERVICES = (
    ("主計法規查詢", "查詢主計相關法規、函釋與作業規定。"),
    ("公告事項", "主計總處與各機關主計單位的最新公告。"),
    ("線上說明", "系統操作手冊與常見問題。"),
    ("帳號申請說明", "如何向所屬機關主計人員申請 eBAS 人員帳號。"),
)
NO_ACCOUNT_MESSAGE = "eBAS無此人員帳號"
PASSWORD_NOTICE = "您的密碼已超過3個月未變更，請儘速變更密碼"  # noqa: S105 - a message


def setup_ebas_routes(app: web.Application) -> None:
    app.router.add_post(COMPLETE_PATH, complete)
    app.router.add_get(PORTAL_PATH, portal)
    app.router.add_get(DEFAULT_SITE_PATH, default_site)
    app.router.add_post(LOGOUT_PATH, logout)


# -- POST /ebas/complete ---------------------------------------------------------------------


async def complete(request: web.Request) -> web.Response:
    try:
        check_same_site(request)
        return await _complete(request)
    except LoginError as exc:
        _audit(request, "ebas_complete", outcome="rejected", reason=exc.key)
        return error_response("無法完成登入", exc.text, status=exc.status)
    except web.HTTPRequestEntityTooLarge:
        # A form over the app's client_max_size; an assertion is under 1 KB.
        _audit(request, "ebas_complete", outcome="rejected", reason="payload_too_large")
        return error_response("無法完成登入", "請求內容過大。", status=413)


async def _complete(request: web.Request) -> web.Response:
    try:
        form = await request.post()
    except (ValueError, LookupError):
        # A multipart body without its boundary, or a charset Python does not know.
        raise InvalidInput("表單內容格式不正確，請重新登入。") from None
    token = form.get("assertion")
    if not isinstance(token, str) or not token or len(token) > MAX_ASSERTION_LENGTH:
        raise InvalidAssertion()
    secret = request.cookies.get(BINDING_COOKIE)
    if not secret:
        raise BindingMismatch()

    claims = await request.app[ASSERTIONS].verify(token, binding=binding_hash(secret))
    store = request.app[STORE]
    if not await store.claim_once(f"complete:{claims.login_id}", COMPLETION_CLAIM_SECONDS):
        log.warning("login %s: completed a second time; rejected", claims.login_id)
        raise InvalidAssertion()

    account = await request.app[ACCOUNTS].find_by_id_number(claims.id_number)
    if account is None:
        outcome = "no_account"
    elif not account.active:
        outcome = "inactive"
    else:
        outcome = "matched"
    _audit(
        request,
        "ebas_match",
        outcome=outcome,
        login_id=claims.login_id,
        method=claims.method,
        id_number=claims.id_number,
        account=account.account if account else None,
    )
    secure = request.app[SETTINGS].server.secure_cookies

    if account is None or not account.active:
        response = redirect(DEFAULT_SITE_PATH)
        response.set_cookie(
            FLASH_COOKIE,
            outcome,
            max_age=FLASH_MAX_AGE,
            path=COOKIE_PATH,
            httponly=True,
            samesite="Lax",
            secure=secure,
        )
        return response

    session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
    data = {
        "account": account.account,
        "login_id": claims.login_id,
        "method": claims.method,
        "auth_time": claims.auth_time,
    }
    lifetime = request.app[SETTINGS].accounts.ebas_session_lifetime
    await store.put(_session_key(session_id), json.dumps(data), lifetime)

    response = redirect(PORTAL_PATH)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=lifetime,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Lax",
        secure=secure,
    )
    return response


def check_same_site(request: web.Request) -> None:
    """Reject a form post that another site made the browser send (CSRF)."""
    origin = request.headers.get("Origin")
    expected = request.app[SETTINGS].server.origin
    if origin is not None and origin != expected:
        log.warning("%s %s: origin %r rejected", request.method, request.path, scrub(origin[:100]))
        raise CsrfRejected()
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        log.warning("%s %s: cross-site request rejected", request.method, request.path)
        raise CsrfRejected()


# -- GET /ebas/portal and POST /ebas/logout --------------------------------------------------


async def portal(request: web.Request) -> web.Response:
    session = await portal_session(request)
    if session is None:
        return redirect(LOGIN_PAGE)
    account = await request.app[ACCOUNTS].find_by_account(session["account"])
    if account is None or not account.active:
        # Deactivated or removed by a sync since the login: the session ends here.
        await _end_session(request)
        return _clear_session_cookie(redirect(LOGIN_PAGE))

    notice_days = request.app[SETTINGS].accounts.password_notice_days
    body = join(
        tag("h1", "eBAS 首頁"),
        tag("p", f"{account.display_name}，您好。", class_="greeting"),
        _password_notice(account, notice_days),
        _account_details(account, session),
        _card_registration_link(request, str(session.get("method", ""))),
        tag(
            "form",
            tag("button", "登出", type="submit", class_="button"),
            method="post",
            action=LOGOUT_PATH,
        ),
    )
    return html_response("eBAS 首頁", body)


async def logout(request: web.Request) -> web.Response:
    try:
        check_same_site(request)
    except CsrfRejected as exc:
        return error_response("無法登出", exc.text, status=exc.status)
    session = await _end_session(request)
    if session is not None:
        _audit(
            request,
            "ebas_logout",
            outcome="ok",
            login_id=session.get("login_id"),
            method=session.get("method"),
            account=session.get("account"),
        )
    return _clear_session_cookie(redirect(LOGIN_PAGE))


def _card_registration_link(request: web.Request, signed_in_with: str) -> Html:
    """Return the link to the 自然人憑證 registration page, unless it cannot help.

    Nothing without the card method, and nothing after a card login: that card is registered.
    """
    if "card" not in request.app.get(METHODS, {}) or signed_in_with == "card":
        return Html("")
    return tag(
        "p",
        join(
            tag("a", "註冊自然人憑證", href=CARD_REGISTER_PATH, class_="button"),
            tag("span", "註冊後，下次即可用自然人憑證登入。", class_="action-note"),
        ),
        class_="action-row",
    )


def _password_notice(account: Account, notice_days: int) -> Html:
    if account.password_changed_at is None:
        return tag(
            "p", f"查無密碼變更紀錄。{PASSWORD_NOTICE}。", role="alert", class_="notice warning"
        )
    changed_at = parse_time(account.password_changed_at)
    if datetime.now(UTC) - changed_at > timedelta(days=notice_days):
        return tag(
            "p",
            f"{PASSWORD_NOTICE}。（上次變更：{format_date(changed_at)}）",
            role="alert",
            class_="notice warning",
        )
    return tag(
        "p", f"您的密碼上次變更於 {format_date(changed_at)}，請定期變更密碼。", class_="notice"
    )


def _account_details(account: Account, session: dict[str, Any]) -> Html:
    method = str(session.get("method", ""))
    rows = [
        ("姓名", account.display_name),
        ("帳號", account.account),
        ("機關", account.agency),
        ("單位", account.unit or "—"),
        ("同步時間", format_time(account.synced_at)),
        ("登入方式", METHOD_LABELS.get(method, method)),
    ]
    auth_time = session.get("auth_time")
    if isinstance(auth_time, int):
        rows.append(("登入時間", format_time(datetime.fromtimestamp(auth_time, UTC).isoformat())))
    return tag(
        "dl",
        join(*(join(tag("dt", name), tag("dd", value)) for name, value in rows)),
        class_="details",
    )


# -- GET /ebas/default -----------------------------------------------------------------------


async def default_site(request: web.Request) -> web.Response:
    flash = request.cookies.get(FLASH_COOKIE)
    parts: list[Html] = [tag("h1", "預設站台")]
    if flash in FLASH_OUTCOMES:
        detail = (
            "您的 eBAS 人員帳號已停用，目前僅能使用下列基本服務。如需恢復，請洽所屬機關主計人員。"
            if flash == "inactive"
            else "您已完成身分驗證，但 eBAS 沒有您的人員帳號，目前僅能使用下列基本服務。"
            "如需帳號，請洽所屬機關主計人員。"
        )
        parts.append(
            tag(
                "div",
                join(tag("p", NO_ACCOUNT_MESSAGE, class_="alert-title"), tag("p", detail)),
                role="alert",
                class_="alert",
            )
        )
    else:
        parts.append(tag("p", "以下為不需 eBAS 人員帳號即可使用的基本服務。"))

    # NOTE: the services are listed without links until eBAS gives their addresses.
    services = (join(tag("h2", name), tag("p", about)) for name, about in BASIC_SERVICES)
    parts.append(tag("ul", join(*(tag("li", item) for item in services)), class_="services"))
    parts.append(tag("p", tag("a", "回到登入頁", href=LOGIN_PAGE, class_="button")))

    response = html_response("預設站台", join(*parts))
    if flash is not None:
        response.del_cookie(FLASH_COOKIE, path=COOKIE_PATH)
    return response


# -- helpers ---------------------------------------------------------------------------------


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def format_time(iso: str) -> str:
    """Format an ISO time as Taiwan time, e.g. ``2025-01-02 14:03``; an unparsable value as is."""
    try:
        return parse_time(iso).astimezone(TAIWAN_TIME).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def format_date(moment: datetime) -> str:
    return moment.astimezone(TAIWAN_TIME).strftime("%Y-%m-%d")


def _session_key(session_id: str) -> str:
    # Stored under a hash, so reading the store does not yield usable session cookies.
    return SESSION_KEY_PREFIX + hashlib.sha256(session_id.encode()).hexdigest()


async def portal_session(request: web.Request) -> dict[str, Any] | None:
    """Return the eBAS portal session of the request's cookie, or None when there is none.

    The session contains ``account``, ``login_id``, ``method`` and ``auth_time``. The caller must
    still check that the account exists and is active, because a sync may have changed it.
    """
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    raw = await request.app[STORE].fetch(_session_key(session_id))
    if raw is None:
        return None
    data: dict[str, Any] = json.loads(raw)
    return data


async def _end_session(request: web.Request) -> dict[str, Any] | None:
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    raw = await request.app[STORE].take(_session_key(session_id))
    return json.loads(raw) if raw else None


def _clear_session_cookie(response: web.Response) -> web.Response:
    response.del_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


def _audit(
    request: web.Request,
    event: str,
    *,
    outcome: str,
    login_id: str | None = None,
    method: str | None = None,
    id_number: str | None = None,
    **extra: Any,
) -> None:
    request.app[AUDIT].record(
        event,
        login_id=login_id,
        method=method,
        outcome=outcome,
        id_number=id_number,
        client=client_info(request).address,
        user_agent=request.headers.get("User-Agent"),
        **extra,
    )
