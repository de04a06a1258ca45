"""The product in moi mode, in headless Chromium, against the fake MOI SP API server.

Nothing of the embedded authority runs: the app polls the fake as it would poll MOI's UAT host,
and the fake plays the person's phone. The QR test reads the code from a screenshot with
zxing-cpp and has the fake approve exactly the ticket the code carries.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import zxingcpp
from PIL import Image
from playwright.async_api import Page, Response, expect

from push import ticket as ticket_codec
from server.demo import DEMO_IDS
from tests.e2e.conftest import ACTION_TIMEOUT_MS
from tests.fakes.fake_moi import FakeMoi, start_fake_moi
from tests.support.live import LiveApp, live_app

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

ACTIVE = DEMO_IDS["active"]
POLL_INTERVAL = 1.0  # seconds; the smallest twfido.poll_interval, so results show up quickly
QR_LINK_TEXT = "沒收到推播通知？手動掃描QRCode進行驗證！"


@pytest_asyncio.fixture(loop_scope="session")
async def moi() -> AsyncIterator[tuple[str, FakeMoi]]:
    url, fake, runner = await start_fake_moi()
    yield url, fake
    await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="session")
async def moi_live(moi: tuple[str, FakeMoi], tmp_path: Path) -> AsyncIterator[LiveApp]:
    url, fake = moi
    settings = {
        "twfido": {
            "mode": "moi",
            "api_url": url,
            "sp_service_id": fake.sp_service_id,
            "aes_key": base64.b64encode(fake.aes_key).decode(),
            "poll_interval": POLL_INTERVAL,
        }
    }
    async with live_app(tmp_path / "data", settings) as running:
        yield running


def is_login_start(response: Response) -> bool:
    return response.request.method == "POST" and response.url.endswith("/api/logins")


async def start_login(page: Page, live: LiveApp) -> tuple[dict[str, Any], str]:
    """Open the page and sign in with ACTIVE. Return the start response and the code shown."""
    await page.goto(live.url + "/")
    await page.locator("#id-number").fill(ACTIVE)
    async with page.expect_response(is_login_start) as started:
        await page.locator("#mobile-submit").click()
    response = await started.value
    assert response.status == 201, await response.text()
    code = page.locator("#verification-code")
    await expect(code).to_have_text(re.compile(r"^\d{2}$"))
    return await response.json(), (await code.text_content() or "").strip()


async def decode_shown_qr(page: Page) -> str:
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


async def test_moi_push_login_reaches_portal(
    page: Page, moi_live: LiveApp, moi: tuple[str, FakeMoi]
) -> None:
    _, fake = moi
    fake.script(ACTIVE, outcome="manual")

    login, code = await start_login(page, moi_live)
    assert code == login["verification_code"]
    push = fake.calls_to("requestAthOrSignPush")[0]
    assert push.body["hint"] == f"全國主計網(eBAS)登入，驗證碼 {code}"

    (sp_ticket_id,) = fake.transactions
    fake.approve(sp_ticket_id)  # the person approves on the phone

    await expect_portal(page)
    assert fake.calls_to("getAthOrSignResult")[-1].error_code == "0"


async def test_moi_qr_login_reaches_portal(
    page: Page, moi_live: LiveApp, moi: tuple[str, FakeMoi]
) -> None:
    _, fake = moi
    fake.script(ACTIVE, outcome="manual")

    login, _ = await start_login(page, moi_live)
    assert login["push_status"] == "sent"
    await page.get_by_role("button", name=QR_LINK_TEXT).click()  # no push arrived on the phone
    scanned = await decode_shown_qr(page)

    issued = fake.calls_to("getSpTicket")
    assert len(issued) == 1
    assert issued[0].body["op_mode"] == "I-SCAN"
    sp_ticket_id = ticket_codec.decode(scanned).sp_ticket_id
    assert fake.transactions[sp_ticket_id].sp_ticket == scanned
    fake.approve(sp_ticket_id)  # the phone app scanned this code and the person approved

    await expect_portal(page)
    assert len(fake.transactions) == 2  # the push, still unanswered, and the QR ticket


async def test_moi_undelivered_push_shows_the_qr_code_at_once(
    page: Page, moi_live: LiveApp, moi: tuple[str, FakeMoi]
) -> None:
    _, fake = moi
    fake.script(ACTIVE, outcome="manual", push_fails=True)

    login, _ = await start_login(page, moi_live)
    assert login["push_status"] == "not_delivered"
    scanned = await decode_shown_qr(page)
    await expect(page.locator("#status-message")).to_contain_text("QR Code")

    fake.approve(ticket_codec.decode(scanned).sp_ticket_id)

    await expect_portal(page)
