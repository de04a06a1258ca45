"""The 行動自然人憑證 login in headless Chromium against the running app, with the phone simulator
playing the phone: push, QR code, endings, WebSocket fallback, and keyboard use."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from PIL import Image
from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    Request,
    Response,
    WebSocket,
    WebSocketRoute,
    expect,
)

from server.demo import DEMO_IDS
from server.web.keys import STORE
from tests.e2e.conftest import ACTION_TIMEOUT_MS, PhoneFactory
from tests.support.browser import CSP_VIOLATION, PageWatch
from tests.support.live import LiveApp

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

ACTIVE = DEMO_IDS["active"]
NO_ACCOUNT = DEMO_IDS["no_account"]
PUSH_TIMEOUT = 10.0  # seconds for the phone simulator to receive a push or a scan prompt
QR_LINK_TEXT = "沒收到推播通知？手動掃描QRCode進行驗證！"
EVENTS_PATH = re.compile(r"/api/logins/[^/]+/events$")
# Chromium logs a failed or refused WebSocket as a console error, which the fallback tests provoke.
WEBSOCKET_CONSOLE_ERROR = r"WebSocket"


# -- helpers -----------------------------------------------------------------------------------


def is_login_start(response: Response) -> bool:
    return response.request.method == "POST" and response.url.endswith("/api/logins")


async def open_login_page(page: Page, live: LiveApp) -> None:
    await page.goto(live.url + "/")
    await expect(page.locator("#id-number")).to_be_visible()


async def start_login(page: Page, id_number: str) -> dict[str, Any]:
    """Type ``id_number``, press 登入 and return the server's response to the start request."""
    await page.locator("#id-number").fill(id_number)
    async with page.expect_response(is_login_start) as started:
        await page.locator("#mobile-submit").click()
    response = await started.value
    assert response.status == 201, await response.text()
    login: dict[str, Any] = await response.json()
    return login


async def shown_code(page: Page) -> str:
    """Return the two-digit verification code the waiting view shows."""
    code = page.locator("#verification-code")
    await expect(code).to_be_visible()
    await expect(code).to_have_text(re.compile(r"^\d{2}$"))
    return (await code.text_content() or "").strip()


async def decode_shown_qr(page: Page) -> str:
    """Screenshot the QR code the page shows and return the text zxing-cpp decodes from it."""
    image = page.locator("#qr-image")
    await expect(image).to_be_visible()
    await page.wait_for_function(
        "() => { const img = document.querySelector('#qr-image');"
        " return img.complete && img.naturalWidth > 0; }"
    )
    png = await image.screenshot(type="png")
    barcodes = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(barcodes) == 1, f"expected one QR code in the screenshot, found {len(barcodes)}"
    return str(barcodes[0].text)


async def expect_portal(page: Page) -> None:
    await page.wait_for_url("**/ebas/portal", timeout=ACTION_TIMEOUT_MS)
    await expect(page.locator("body")).to_contain_text("王小明")
    await expect(page.locator("body")).to_contain_text("行政院主計總處")


# -- push --------------------------------------------------------------------------------------


async def test_push_approved_reaches_portal(
    page: Page, live: LiveApp, phone_for: PhoneFactory
) -> None:
    phone = await phone_for(ACTIVE)
    socket_states: list[str] = []

    def on_websocket(socket: WebSocket) -> None:
        socket.on("framereceived", lambda payload: socket_states.append(str(payload)))

    page.on("websocket", on_websocket)
    await open_login_page(page, live)
    status = page.locator("#status-message")
    await expect(status).to_have_attribute("aria-live", "polite")

    login = await start_login(page, " a123456789 ")
    assert login["push_status"] == "sent"
    code = await shown_code(page)
    assert code == login["verification_code"]
    await expect(page.locator("#countdown")).to_be_visible()
    await expect(page.locator("#countdown")).to_have_text(re.compile(r"^0[23]:\d{2}$"))
    await expect(page.locator("#cancel-login")).to_be_visible()
    await expect(page.get_by_role("button", name=QR_LINK_TEXT)).to_be_visible()
    await expect(status).to_contain_text("推播")

    push = await phone.next_push(PUSH_TIMEOUT)
    assert "全國主計網(eBAS)" in push["hint"]
    assert code in push["choices"]
    await phone.approve(push, code)

    await expect_portal(page)
    approved = [json.loads(frame) for frame in socket_states if '"approved"' in frame]
    assert approved, "the approval did not arrive over the WebSocket"
    assert approved[0]["login_id"] == login["login_id"]

    await page.get_by_role("button", name="登出").click()
    await page.wait_for_url(live.url + "/", timeout=ACTION_TIMEOUT_MS)
    await expect(page.locator("#id-number")).to_be_visible()


async def test_push_denied_offers_retry(page: Page, live: LiveApp, phone_for: PhoneFactory) -> None:
    phone = await phone_for(ACTIVE)
    await open_login_page(page, live)
    await start_login(page, ACTIVE)
    await shown_code(page)

    await phone.deny(await phone.next_push(PUSH_TIMEOUT))

    await expect(page.locator("#status-message")).to_have_text(
        "您已在「行動自然人憑證」App 中拒絕此次登入。"
    )
    retry = page.get_by_role("button", name="重新登入")
    await expect(retry).to_be_visible()
    await expect(retry).to_be_focused()
    await expect(page.locator("#verification-code")).to_be_hidden()
    with pytest.raises(TimeoutError):
        await phone.next_push(1.0)  # a deny never sends a new push by itself

    await retry.click()
    await expect(page.locator("#id-number")).to_be_visible()
    await expect(page.locator("#id-number")).to_be_focused()
    await expect(page.locator("#mobile-submit")).to_be_enabled()
    await expect(page.locator("#status-message")).to_have_text("")


async def test_no_account_goes_to_default_site(
    page: Page, live: LiveApp, phone_for: PhoneFactory
) -> None:
    phone = await phone_for(NO_ACCOUNT)
    await open_login_page(page, live)
    await start_login(page, NO_ACCOUNT)
    code = await shown_code(page)

    await phone.approve(await phone.next_push(PUSH_TIMEOUT), code)

    await page.wait_for_url("**/ebas/default", timeout=ACTION_TIMEOUT_MS)
    await expect(page.locator("body")).to_contain_text("eBAS無此人員帳號")
    await expect(page.locator("body")).not_to_contain_text("王小明")


async def test_keyboard_alone_completes_push_login(
    page: Page, live: LiveApp, phone_for: PhoneFactory
) -> None:
    phone = await phone_for(ACTIVE)
    await open_login_page(page, live)
    field = page.locator("#id-number")
    # With a mouse-like pointer the page focuses the field on load; Tab order reaches it otherwise.
    for _ in range(10):
        if await field.evaluate("element => element === document.activeElement"):
            break
        await page.keyboard.press("Tab")
    await expect(field).to_be_focused()

    await page.keyboard.type(ACTIVE)
    async with page.expect_response(is_login_start):
        await page.keyboard.press("Enter")
    code = await shown_code(page)
    await expect(page.locator("#waiting-title")).to_be_focused()

    await phone.approve(await phone.next_push(PUSH_TIMEOUT), code)
    await expect_portal(page)


# -- QR code -----------------------------------------------------------------------------------


async def test_qr_approved_with_decoded_image(
    page: Page, live: LiveApp, phone_for: PhoneFactory
) -> None:
    phone = await phone_for(ACTIVE)
    await open_login_page(page, live)
    login = await start_login(page, ACTIVE)
    await phone.next_push(PUSH_TIMEOUT)  # ignored: the person scans instead

    await page.get_by_role("button", name=QR_LINK_TEXT).click()
    payload = await decode_shown_qr(page)
    await expect(page.get_by_role("button", name=QR_LINK_TEXT)).to_be_hidden()

    session = await live.app[STORE].get(login["login_id"])
    assert session is not None
    assert payload
    assert payload == session.data["qr_payload"]

    code = await shown_code(page)
    prompt = await phone.scan(payload)
    await phone.approve(prompt, code)
    await expect_portal(page)


async def test_undelivered_push_offers_qr(
    page: Page, live: LiveApp, phone_for: PhoneFactory
) -> None:
    phone = await phone_for(ACTIVE, connect=False)  # bound to the ID, but the app is not open
    await open_login_page(page, live)
    login = await start_login(page, ACTIVE)
    assert login["push_status"] == "not_delivered"

    await expect(page.locator("#status-message")).to_contain_text("無法將通知推播到您的手機")
    await expect(page.locator("#status-message")).to_contain_text("QR Code")
    payload = await decode_shown_qr(page)

    # The QR code the page offers finishes the login once the app is open.
    await phone.connect()
    prompt = await phone.scan(payload)
    await phone.approve(prompt, await shown_code(page))
    await expect_portal(page)


# -- endings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "id_number, message",
    [
        ("A123456788", "身分證統一編號檢查碼不正確，請確認是否輸入錯誤。"),
        ("A12345678", "身分證統一編號格式不正確：應為 1 個英文字母加 9 位數字（例：A123456789）。"),
        ("   ", "請輸入身分證統一編號。"),
    ],
    ids=["check_digit", "too_short", "blank"],
)
async def test_invalid_id_rejected_before_request(
    page: Page, live: LiveApp, id_number: str, message: str
) -> None:
    api_requests: list[str] = []

    def on_request(request: Request) -> None:
        if "/api/logins" in request.url:
            api_requests.append(f"{request.method} {request.url}")

    page.on("request", on_request)
    await open_login_page(page, live)
    await page.locator("#id-number").fill(id_number)
    await page.locator("#mobile-submit").click()

    await expect(page.locator("#form-error")).to_have_text(message)
    await expect(page.locator("#id-number")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#id-number")).to_be_focused()
    await expect(page.locator("#verification-code")).to_be_hidden()
    assert api_requests == []


@pytest.mark.parametrize("how", ["button", "escape"])
async def test_cancel_ends_login_and_ignores_late_approval(
    page: Page, live: LiveApp, phone_for: PhoneFactory, how: str
) -> None:
    phone = await phone_for(ACTIVE)
    completions: list[str] = []
    page.on("request", lambda r: completions.append(r.url) if "/ebas/" in r.url else None)
    await open_login_page(page, live)
    login = await start_login(page, ACTIVE)
    code = await shown_code(page)
    push = await phone.next_push(PUSH_TIMEOUT)

    if how == "button":
        await page.get_by_role("button", name="取消").click()
    else:
        await page.keyboard.press("Escape")
    await expect(page.locator("#status-message")).to_have_text("登入已取消。")
    await expect(page.get_by_role("button", name="重新登入")).to_be_visible()

    await phone.approve(push, code)  # the authority accepts it, but the cancelled login must not
    await asyncio.sleep(1.0)
    state = await (await page.request.get(live.url + login["status_url"])).json()
    assert state["state"] == "cancelled"
    assert "assertion" not in state
    assert page.url.rstrip("/") == live.url
    assert completions == []


# -- live status without a working WebSocket ---------------------------------------------------


async def _silent_proxy(route: WebSocketRoute) -> None:
    pass  # accepts the upgrade, never reaches the server, passes nothing


async def _closing_proxy(route: WebSocketRoute) -> None:
    await route.close(code=1011, reason="blocked")


# How each case keeps the events WebSocket from working: a script run before the page's own
# scripts, or a route that replaces the server's end of the socket.
WEBSOCKET_BLOCKS: dict[str, str | Callable[[WebSocketRoute], Awaitable[None]]] = {
    "no_websocket_api": "window.WebSocket = undefined;",
    "constructor_throws": (
        "window.WebSocket = function () { throw new DOMException('blocked', 'SecurityError'); };"
    ),
    "silent_socket": _silent_proxy,
    "socket_closed": _closing_proxy,
}


@pytest.mark.parametrize("block", list(WEBSOCKET_BLOCKS))
async def test_polling_completes_without_websocket(
    page: Page, live: LiveApp, phone_for: PhoneFactory, watch: PageWatch, block: str
) -> None:
    watch.allow(WEBSOCKET_CONSOLE_ERROR)
    blocker = WEBSOCKET_BLOCKS[block]
    if isinstance(blocker, str):
        await page.add_init_script(blocker)
    else:
        await page.route_web_socket(EVENTS_PATH, blocker)
    polls: list[str] = []
    page.on(
        "request",
        lambda r: polls.append(r.url) if r.method == "GET" and "/api/logins/" in r.url else None,
    )

    phone = await phone_for(ACTIVE)
    await open_login_page(page, live)
    login = await start_login(page, ACTIVE)
    code = await shown_code(page)
    await phone.approve(await phone.next_push(PUSH_TIMEOUT), code)

    await expect_portal(page)
    assert live.url + login["status_url"] in polls


# -- phone-size layout -------------------------------------------------------------------------


async def test_phone_size_views_fit_screen(
    browser: Browser, live: LiveApp, phone_for: PhoneFactory, tmp_path: Path
) -> None:
    context = await browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="zh-TW",
    )
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    watch = PageWatch()
    try:
        page = await context.new_page()
        watch.attach(page)
        phone = await phone_for(ACTIVE)
        await open_login_page(page, live)
        await start_login(page, ACTIVE)
        code = await shown_code(page)
        await page.screenshot(path=tmp_path / "waiting-390.png", full_page=True)
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390

        await phone.approve(await phone.next_push(PUSH_TIMEOUT), code)
        await expect_portal(page)
        await page.screenshot(path=tmp_path / "portal-390.png", full_page=True)
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        await context.close()
    assert watch.problems() == []


# -- the watch itself --------------------------------------------------------------------------


async def test_watch_reports_csp_violation(context: BrowserContext, live: LiveApp) -> None:
    watch = PageWatch()
    page = await context.new_page()
    watch.attach(page)
    await open_login_page(page, live)

    # An inline event handler is what the CSP (script-src 'self') must block.
    async with page.expect_console_message(
        lambda message: bool(CSP_VIOLATION.search(message.text))
    ):
        await page.evaluate(
            "() => { const b = document.querySelector('#mobile-submit');"
            " b.setAttribute('onfocus', 'window.inlineRan = true'); b.focus(); }"
        )

    assert await page.evaluate("window.inlineRan") is None
    assert watch.csp_violations
    assert any(problem.startswith("CSP violation") for problem in watch.problems())
