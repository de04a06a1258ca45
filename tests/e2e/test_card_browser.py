"""自然人憑證 logins in headless Chromium, through the HiPKI simulator's popup.

The page opens the simulator's /popupForm on the click, replies to its getTbs, has it sign the
server's challenge with the software token, and posts signature and certificate. The server
then checks signature, chain and OCSP status at the local responder. Nothing here is mocked.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page, Request, expect

from server.card.verifier import MESSAGES
from server.hipki_sim.app import LocalServices
from server.methods.card import CardMethod
from server.web.keys import METHODS
from tests.support.browser import PageWatch
from tests.support.live import LiveApp

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

# From static/js/methods/card.js.
WRONG_PIN = "PIN 碼錯誤，請重新輸入。連續輸入錯誤多次將鎖卡，請小心輸入。"
NO_CARD = "讀不到自然人憑證。請確認讀卡機已連接，且卡片已正確插入。"


def card_services(live: LiveApp) -> LocalServices:
    method = live.app[METHODS]["card"]
    assert isinstance(method, CardMethod)
    assert method.services is not None, "the app did not start the HiPKI simulator"
    return method.services


@pytest_asyncio.fixture(loop_scope="session")
async def popups(
    context: BrowserContext, watch: PageWatch, live: LiveApp
) -> AsyncIterator[list[Page]]:
    """Popups the login page opens. Their script errors and CSP violations fail the test."""
    opened: list[Page] = []
    # The simulator's popup page links no favicon, so Chromium requests /favicon.ico and gets 404.
    favicon = re.escape(card_services(live).component_url + "/favicon.ico")
    watch.allow(rf"status of 404 \(Not Found\) \({favicon}\)$")

    def on_page(popup: Page) -> None:
        opened.append(popup)
        watch.attach(popup)

    context.on("page", on_page)
    yield opened
    context.remove_listener("page", on_page)


async def sign_in(page: Page, live: LiveApp, pin: str) -> None:
    """Open the card tab, type the PIN and click 登入 (the click opens the component popup)."""
    await page.goto(live.url + "/")
    await page.click("#tab-card")
    await page.fill("#card-pin", pin)
    await page.click("#card-submit")


async def test_card_login_reaches_the_portal(page: Page, live: LiveApp, popups: list[Page]) -> None:
    pin = live.settings.card.simulator_pin
    sent_to_site: list[Request] = []
    page.on("request", lambda request: sent_to_site.append(request))
    responder = card_services(live).responder

    async with page.expect_popup() as popup_info:
        await sign_in(page, live, pin)
    popup = await popup_info.value
    assert popup.url == card_services(live).component_url + "/popupForm"

    await page.wait_for_url("**/ebas/portal")
    await expect(page.locator(".greeting")).to_have_text("王小明，您好。")
    await expect(page.locator("dl.details")).to_contain_text("自然人憑證")
    assert responder.ocsp_requests >= 1  # revocation was checked at the certificate's AIA

    ours = [request for request in sent_to_site if request.url.startswith(live.url)]
    assert any(request.url.endswith("/api/card/challenge") for request in ours)
    assert any(request.url.endswith("/api/logins") for request in ours)
    for request in ours:
        assert pin not in (request.post_data or ""), f"the PIN reached the server: {request.url}"


async def test_wrong_pin_shows_the_wrong_pin_message(
    page: Page, live: LiveApp, popups: list[Page]
) -> None:
    logins: list[Request] = []
    page.on("request", lambda r: logins.append(r) if r.url.endswith("/api/logins") else None)

    await sign_in(page, live, "000000")

    message = page.locator("#card-message")
    await expect(message).to_have_attribute("data-key", "wrong_pin")
    await expect(message).to_have_text(WRONG_PIN)
    await expect(page.locator("#card-pin")).to_have_value("")
    assert popups, "the page did not open the component popup"
    assert logins == []  # the failed signature was not posted
    assert page.url == live.url + "/"


async def test_revoked_certificate_is_rejected(
    page: Page, live: LiveApp, popups: list[Page]
) -> None:
    services = card_services(live)
    services.responder.revoke(services.token.holder.certificate.serial_number)

    await sign_in(page, live, live.settings.card.simulator_pin)

    message = page.locator("#card-message")
    await expect(message).to_have_attribute("data-key", "revoked")
    await expect(message).to_have_text(MESSAGES["revoked"])
    assert services.responder.ocsp_requests >= 1
    assert page.url == live.url + "/"


async def test_missing_card_shows_no_card_help(
    page: Page, live: LiveApp, popups: list[Page]
) -> None:
    async with aiohttp.ClientSession() as http:
        url = card_services(live).component_url + "/simulator/card"
        response = await http.post(url, json={"present": False})
        assert response.status == 200

    await sign_in(page, live, live.settings.card.simulator_pin)

    message = page.locator("#card-message")
    await expect(message).to_have_attribute("data-key", "no_card")
    await expect(message).to_have_text(NO_CARD)
    await expect(page.locator("#card-help")).to_have_class(
        "method-links card-help card-help--highlight"
    )
    for link_id, text in (
        ("card-help-first", "首次登入與Windows使用"),
        ("card-help-driver", "驅動程式"),
        ("card-help-crossplatform", "MAC及Linux跨平台網站元件"),
    ):
        await expect(page.locator(f"#{link_id}")).to_have_text(text)
