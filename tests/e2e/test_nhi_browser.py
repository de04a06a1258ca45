"""健保卡 logins in headless Chromium, with the card-component simulator the app starts.

The page reads the card over the simulator's WebSocket (GetBasic, GetRandom, H_Sign), so these
tests run the whole NHI method: Big5 basic data, the registered password, the NHI rule.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Page, expect

from server.errors import CardNotRegistered, CardPasswordMismatch
from server.methods.nhi import NhiMethod
from server.web.ebas import NO_ACCOUNT_MESSAGE
from server.web.keys import METHODS
from tests.support.browser import PageWatch
from tests.support.live import LiveApp, free_port, live_app

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

WANG_CARD = "000011112222"  # 王小明, registered with nhi1234, has an eBAS account
LIN_CARD = "000033334444"  # 林美玉, registered with nhi5678, no eBAS account
UNREGISTERED_CARD = "000055556666"
# From static/js/methods/nhi.js.
MISSING_COMPONENT = "無法連線至健保卡元件。請確認已安裝並啟動健保卡元件，再重新登入。"
# Rejected logins return 4xx and an unreachable component fails its WebSocket. Chromium logs both
# as console errors.
FAILED_REQUEST = r"Failed to load resource: the server responded with a status of 4\d\d"
FAILED_SOCKET = r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/echo' failed"


def nhi_method(live: LiveApp) -> NhiMethod:
    method = live.app[METHODS]["nhi"]
    assert isinstance(method, NhiMethod)
    return method


async def insert_card(live: LiveApp, card_number: str | None) -> None:
    simulator = nhi_method(live).simulator
    assert simulator is not None, "the app did not start the NHI card simulator"
    async with aiohttp.ClientSession() as http:
        response = await http.post(simulator.control_url, json={"card_number": card_number})
        assert response.status == 200, await response.text()


async def sign_in(page: Page, live: LiveApp, password: str) -> None:
    """Open the NHI tab, type the registered password, submit and wait for the login response."""
    await page.goto(live.url + "/")
    await page.click("#tab-nhi")
    await page.fill("#nhi-password", password)
    async with page.expect_response("**/api/logins"):
        await page.click("#nhi-submit")


async def test_nhi_card_login_reaches_the_portal(page: Page, live: LiveApp) -> None:
    await insert_card(live, WANG_CARD)
    await sign_in(page, live, "nhi1234")

    await page.wait_for_url("**/ebas/portal")
    await expect(page.locator(".greeting")).to_have_text("王小明，您好。")
    await expect(page.locator("dl.details")).to_contain_text("健保卡")


async def test_card_read_shows_masked_number_and_big5_name(
    page: Page, live: LiveApp, watch: PageWatch
) -> None:
    watch.allow(FAILED_REQUEST)
    await insert_card(live, WANG_CARD)
    await sign_in(page, live, "not-the-password")

    await expect(page.locator("#nhi-card-info")).to_have_text("健保卡卡號 0000****2222　王小明")


async def test_card_without_account_opens_default_site(page: Page, live: LiveApp) -> None:
    await insert_card(live, LIN_CARD)
    await sign_in(page, live, "nhi5678")

    await page.wait_for_url("**/ebas/default")
    await expect(page.locator("[role=alert] .alert-title")).to_have_text(NO_ACCOUNT_MESSAGE)


async def test_wrong_registered_password_shows_the_mismatch_message(
    page: Page, live: LiveApp, watch: PageWatch
) -> None:
    watch.allow(FAILED_REQUEST)
    await insert_card(live, WANG_CARD)
    await sign_in(page, live, "nhi0000")

    left = live.settings.nhi.max_failures - 1
    minutes = live.settings.nhi.suspend_seconds // 60
    await expect(page.locator("#nhi-message")).to_have_text(
        f"{CardPasswordMismatch.message}再錯 {left} 次，此卡的登入將暫停 {minutes} 分鐘。"
    )
    await expect(page.locator("#nhi-password")).to_have_value("")
    assert page.url == live.url + "/"


async def test_three_wrong_passwords_suspend_the_card(
    page: Page, live: LiveApp, watch: PageWatch
) -> None:
    watch.allow(FAILED_REQUEST)
    await insert_card(live, WANG_CARD)
    message = page.locator("#nhi-message")
    await page.goto(live.url + "/")
    await page.click("#tab-nhi")
    for _ in range(live.settings.nhi.max_failures):
        await page.fill("#nhi-password", "nhi0000")
        async with page.expect_response("**/api/logins"):
            await page.click("#nhi-submit")
    max_failures = live.settings.nhi.max_failures
    suspended = f"健保卡註冊密碼錯誤已達 {max_failures} 次，此卡的登入已暫停，請於 "
    await expect(message).to_contain_text(suspended)

    # The right password is rejected while the card is suspended.
    await page.evaluate("document.getElementById('nhi-message').textContent = ''")
    await page.fill("#nhi-password", "nhi1234")
    async with page.expect_response("**/api/logins"):
        await page.click("#nhi-submit")
    await expect(message).to_contain_text(suspended)
    assert page.url == live.url + "/"


async def test_unregistered_card_shows_its_own_message(
    page: Page, live: LiveApp, watch: PageWatch
) -> None:
    watch.allow(FAILED_REQUEST)
    await insert_card(live, UNREGISTERED_CARD)
    await sign_in(page, live, "nhi1234")

    await expect(page.locator("#nhi-message")).to_have_text(CardNotRegistered.message)
    await expect(page.locator("#nhi-card-info")).to_contain_text("0000****6666")


async def expect_missing_component(page: Page, live: LiveApp) -> None:
    await page.goto(live.url + "/")
    await page.click("#tab-nhi")
    await page.fill("#nhi-password", "nhi1234")
    await page.click("#nhi-submit")

    await expect(page.locator("#nhi-message")).to_have_text(MISSING_COMPONENT)
    help_box = page.locator("#nhi-help-install")
    await expect(help_box).to_be_visible()
    await expect(help_box.locator("h3")).to_have_text("安裝健保卡元件")
    await expect(page.locator("#nhi-card-info")).to_be_hidden()


async def test_stopped_component_shows_the_install_help(
    page: Page, live: LiveApp, watch: PageWatch
) -> None:
    watch.allow(FAILED_SOCKET)
    simulator = nhi_method(live).simulator
    assert simulator is not None
    await simulator.stop()

    await expect_missing_component(page, live)


@pytest_asyncio.fixture(loop_scope="session")
async def live_without_component(tmp_path: Path) -> AsyncIterator[LiveApp]:
    """An app that points the page at a component on a loopback port with no listener."""
    closed = f"ws://127.0.0.1:{free_port()}/echo"
    overrides = {"nhi": {"simulator": "off", "component_url": closed}}
    async with live_app(tmp_path / "data", overrides) as running:
        yield running


async def test_closed_component_port_shows_install_help(
    page: Page, live_without_component: LiveApp, watch: PageWatch
) -> None:
    watch.allow(FAILED_SOCKET)
    assert nhi_method(live_without_component).simulator is None

    await expect_missing_component(page, live_without_component)
