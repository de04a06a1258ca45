"""Routes of the card method: component address, signing challenges, card registration page.

- ``GET /api/card/config``: the HiPKI component origin and signing parameters for the page.
- ``POST /api/card/challenge``: a fresh single-use challenge bound to the binding cookie.
- ``GET /ebas/card``: the registration page for a signed-in eBAS user (portal session).
- ``POST /ebas/card/registrations``: register the card that signed a registration challenge.

The registration routes sit under ``/ebas`` because the portal session cookie is scoped there.
"""

from __future__ import annotations

import logging

from aiohttp import web

from server.errors import LoginError, RateLimited, UnknownMethod
from server.idnumber import mask
from server.methods.card import CardMethod
from server.sessions.model import binding_hash, new_binding_secret
from server.web.api import (
    BINDING_COOKIE,
    BINDING_COOKIE_MAX_AGE,
    check_origin,
    client_info,
    read_json,
)
from server.web.ebas import check_same_site, portal_session, redirect
from server.web.keys import ACCOUNTS, METHODS, SETTINGS, STORE
from server.web.pages import LOGIN_PAGE, document, join, tag

log = logging.getLogger(__name__)

# Challenges one client address may request per window; a person needs one per attempt.
CHALLENGE_LIMIT = 30
CHALLENGE_WINDOW = 60
REGISTER_PAGE = "/ebas/card"
REGISTRATIONS_PATH = "/ebas/card/registrations"
HASH_ALGORITHM = "SHA256"


def card_method(app: web.Application) -> CardMethod:
    method = app.get(METHODS, {}).get("card")
    if not isinstance(method, CardMethod):
        raise UnknownMethod()
    return method


async def get_config(request: web.Request) -> web.Response:
    method = card_method(request.app)
    return web.json_response(
        {
            "component_url": method.component_url,
            "signature_type": method.settings.signature_type,
            "hash_algorithm": HASH_ALGORITHM,
            "simulator": method.services is not None,
        },
        headers={"Cache-Control": "no-store"},
    )


async def new_challenge(request: web.Request) -> web.Response:
    check_origin(request, required=False)
    method = card_method(request.app)
    body = await read_json(request)
    purpose = "register" if body.get("purpose") == "register" else "login"

    client = client_info(request)
    count, resets_in = await request.app[STORE].hit(
        f"card:challenges:{client.address}", CHALLENGE_WINDOW
    )
    if count > CHALLENGE_LIMIT:
        raise RateLimited(max(1, int(resets_in + 0.999)))

    secret = request.cookies.get(BINDING_COOKIE) or new_binding_secret()
    challenge = await method.issue_challenge(binding_hash(secret), purpose)
    response = web.json_response(
        {
            "challenge_id": challenge.id,
            "tbs": challenge.tbs,
            "tbs_encoding": "NONE",
            "hash_algorithm": HASH_ALGORITHM,
            "signature_type": method.settings.signature_type,
            "expires_in": challenge.expires_in,
        },
        status=201,
    )
    if BINDING_COOKIE not in request.cookies:
        response.set_cookie(
            BINDING_COOKIE, secret, max_age=BINDING_COOKIE_MAX_AGE, httponly=True,
            samesite="Strict", secure=request.app[SETTINGS].server.secure_cookies, path="/",
        )  # fmt: skip
    return response


async def register_page(request: web.Request) -> web.Response:
    session = await portal_session(request)
    if session is None:
        return redirect(LOGIN_PAGE)
    account = await request.app[ACCOUNTS].find_by_account(session["account"])
    if account is None or not account.active:
        return redirect(LOGIN_PAGE)

    body = join(
        tag("h1", "自然人憑證註冊"),
        tag(
            "p",
            f"{account.display_name}，您好。請插入要註冊的自然人憑證並輸入 PIN 碼；"
            f"以卡片簽章確認後，此卡將對應到您的身分證統一編號（{mask(account.id_number)}），"
            "之後即可用此卡登入。",
        ),
        tag("div", "", id="card-register", class_="card-method"),
        tag("p", tag("a", "回到 eBAS 首頁", href="/ebas/portal", class_="button")),
    )
    page = document("自然人憑證註冊", body).replace(
        "</head>",
        '<link rel="stylesheet" href="/static/css/card.css">\n'
        '<script type="module" src="/static/js/methods/card-register.js"></script>\n</head>',
        1,
    )
    return web.Response(
        text=page, content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-store"}
    )


async def register_card(request: web.Request) -> web.Response:
    try:
        check_same_site(request)
        check_origin(request, required=True)
        session = await portal_session(request)
        if session is None:
            return web.json_response(
                {"error": "not_signed_in", "message": "請先登入 eBAS 後再註冊自然人憑證。"},
                status=401,
            )
        account = await request.app[ACCOUNTS].find_by_account(session["account"])
        if account is None or not account.active:
            return web.json_response(
                {"error": "not_signed_in", "message": "您的 eBAS 帳號無法使用，請重新登入。"},
                status=401,
            )
        secret = request.cookies.get(BINDING_COOKIE)
        if not secret:
            return web.json_response(
                {"error": "binding_mismatch", "message": "請重新整理頁面後再試。"}, status=403
            )
        body = await read_json(request)
        registration = await card_method(request.app).register(
            body, binding=binding_hash(secret), id_number=account.id_number, account=account.account
        )
    except LoginError as exc:
        # Under /ebas the error middleware renders pages, but the page's fetch expects JSON.
        return web.json_response(exc.to_json(), status=exc.status)
    return web.json_response(
        {
            "registered": True,
            "holder_name": registration.holder_name,
            "message": "自然人憑證註冊完成，下次可直接以此卡登入。",
        },
        status=201,
    )


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/card/config", get_config)
    app.router.add_post("/api/card/challenge", new_challenge)
    app.router.add_get(REGISTER_PAGE, register_page)
    app.router.add_post(REGISTRATIONS_PATH, register_card)
